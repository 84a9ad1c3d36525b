//! What a deploy would change, engine-independent: each engine describes what every service
//! runs now and what it would run ([`ServiceView`]); [`diff`] compares the two. Variable and
//! secret values are compared but never leave this module: changes name them only.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// What one service runs, as far as a deploy can change it. Not serializable: `env` and
/// `secrets` hold values (or secret references) that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub service: String,
    /// Image digest (ECS) or local image ID (docker).
    pub image: String,
    pub command: Option<Vec<String>>,
    /// Plain variables, by name.
    pub env: BTreeMap<String, String>,
    /// Secrets by name, with whatever identifies the value (a `valueFrom` ARN, a fingerprint).
    pub secrets: BTreeMap<String, String>,
    pub replicas: u32,
    pub port: Option<u16>,
    /// The health check in one readable line (path or command, timings).
    pub health: Option<String>,
    pub cpu: Option<u32>,
    pub memory_mib: Option<u32>,
}

impl fmt::Debug for ServiceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceView")
            .field("service", &self.service)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("replicas", &self.replicas)
            .field("port", &self.port)
            .field("health", &self.health)
            .field("cpu", &self.cpu)
            .field("memory_mib", &self.memory_mib)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    fn sign(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        }
    }
}

/// One difference between what runs and what would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub service: String,
    pub kind: ChangeKind,
    /// `service`, `image`, `command`, `variable NAME`, `secret NAME`, `replicas`, `port`,
    /// `health check`, `cpu`, `memory`.
    pub field: String,
    /// Before and after, for fields whose values may be shown (never variables or secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind.sign(), self.service, self.field)?;
        match (&self.before, &self.after) {
            (Some(before), Some(after)) => write!(f, ": {before} -> {after}"),
            (None, Some(after)) => write!(f, ": {after}"),
            (Some(before), None) => write!(f, ": {before}"),
            (None, None) => Ok(()),
        }
    }
}

/// The changes from `now` (what runs) to `next` (what a deploy would run), services in the
/// order of `next`, then removed ones.
pub fn diff(now: &[ServiceView], next: &[ServiceView]) -> Vec<Change> {
    let mut changes = Vec::new();
    for after in next {
        match now.iter().find(|b| b.service == after.service) {
            Some(before) => service_changes(before, after, &mut changes),
            None => changes.push(Change {
                service: after.service.clone(),
                kind: ChangeKind::Added,
                field: "service".to_owned(),
                before: None,
                after: Some(format!("{} replica(s) of {}", after.replicas, after.image)),
            }),
        }
    }
    for before in now {
        if !next.iter().any(|a| a.service == before.service) {
            changes.push(Change {
                service: before.service.clone(),
                kind: ChangeKind::Removed,
                field: "service".to_owned(),
                before: None,
                after: None,
            });
        }
    }
    changes
}

fn service_changes(before: &ServiceView, after: &ServiceView, out: &mut Vec<Change>) {
    let service = &after.service;
    let mut shown = |field: &str, b: Option<String>, a: Option<String>| {
        if b == a {
            return;
        }
        let kind = match (&b, &a) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        out.push(Change {
            service: service.clone(),
            kind,
            field: field.to_owned(),
            before: b,
            after: a,
        });
    };
    shown(
        "image",
        Some(before.image.clone()),
        Some(after.image.clone()),
    );
    shown(
        "command",
        before.command.as_ref().map(|c| c.join(" ")),
        after.command.as_ref().map(|c| c.join(" ")),
    );
    shown(
        "replicas",
        Some(before.replicas.to_string()),
        Some(after.replicas.to_string()),
    );
    shown(
        "port",
        before.port.map(|p| p.to_string()),
        after.port.map(|p| p.to_string()),
    );
    shown("health check", before.health.clone(), after.health.clone());
    shown(
        "cpu",
        before.cpu.map(|c| c.to_string()),
        after.cpu.map(|c| c.to_string()),
    );
    shown(
        "memory",
        before.memory_mib.map(|m| format!("{m} MiB")),
        after.memory_mib.map(|m| format!("{m} MiB")),
    );
    named_changes(service, "variable", &before.env, &after.env, out);
    named_changes(service, "secret", &before.secrets, &after.secrets, out);
}

/// Added, removed and changed names of two maps; values stay out of the result.
fn named_changes(
    service: &str,
    what: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    out: &mut Vec<Change>,
) {
    let names = before
        .keys()
        .chain(after.keys().filter(|k| !before.contains_key(*k)));
    for name in names {
        let kind = match (before.get(name), after.get(name)) {
            (Some(b), Some(a)) if b == a => continue,
            (Some(_), Some(_)) => ChangeKind::Changed,
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
        };
        out.push(Change {
            service: service.to_owned(),
            kind,
            field: format!("{what} {name}"),
            before: None,
            after: None,
        });
    }
}

/// What one accessory (a backing service of the local engine) runs, as far as a deploy can
/// change it. Not serializable: `env` holds values (secrets included) that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessoryView {
    pub name: String,
    /// The image as configured (accessories are not built: `postgres:16`).
    pub image: String,
    pub command: Option<Vec<String>>,
    /// Every variable, secrets included, by name.
    pub env: BTreeMap<String, String>,
    /// `127.0.0.1:HOST->CONTAINER` (`auto` for a free host port).
    pub ports: Vec<String>,
    /// `volume:/path`.
    pub volumes: Vec<String>,
}

impl fmt::Debug for AccessoryView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessoryView")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("ports", &self.ports)
            .field("volumes", &self.volumes)
            .finish()
    }
}

/// The changes a deploy would make to the accessories: `now` are those that have a container,
/// `next` those the config runs here. Each change names `accessory NAME`; variables by name only.
pub fn accessory_diff(now: &[AccessoryView], next: &[AccessoryView]) -> Vec<Change> {
    let mut changes = Vec::new();
    for after in next {
        let service = format!("accessory {}", after.name);
        let Some(before) = now.iter().find(|b| b.name == after.name) else {
            changes.push(Change {
                service,
                kind: ChangeKind::Added,
                field: "container".to_owned(),
                before: None,
                after: Some(after.image.clone()),
            });
            continue;
        };
        let mut shown = |field: &str, b: Option<String>, a: Option<String>| {
            if b != a {
                changes.push(Change {
                    service: service.clone(),
                    kind: ChangeKind::Changed,
                    field: field.to_owned(),
                    before: b,
                    after: a,
                });
            }
        };
        let list = |items: &[String]| Some(items.join(", ")).filter(|s| !s.is_empty());
        shown(
            "image",
            Some(before.image.clone()),
            Some(after.image.clone()),
        );
        shown(
            "command",
            before.command.as_ref().map(|c| c.join(" ")),
            after.command.as_ref().map(|c| c.join(" ")),
        );
        shown("ports", list(&before.ports), list(&after.ports));
        shown("volumes", list(&before.volumes), list(&after.volumes));
        named_changes(&service, "variable", &before.env, &after.env, &mut changes);
    }
    changes
}

/// What `plan` shows: the image before and after, the changes, the migrations a deploy runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployPreview {
    pub environment: String,
    /// The release that serves now.
    pub current_release: Option<u64>,
    pub image_before: Option<String>,
    pub image_after: String,
    pub changes: Vec<Change>,
    /// The migrations command a deploy would run first (when there is anything to deploy).
    pub migrations: Option<Vec<String>>,
}

impl DeployPreview {
    pub fn unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The image of the first service (every service runs the release's one image).
pub fn main_image(views: &[ServiceView]) -> Option<String> {
    views.first().map(|v| v.image.clone())
}

#[cfg(test)]
mod tests {
    fn accessory(image: &str, password: &str) -> AccessoryView {
        AccessoryView {
            name: "db".to_owned(),
            image: image.to_owned(),
            command: None,
            env: [("POSTGRES_PASSWORD".to_owned(), password.to_owned())].into(),
            ports: vec!["127.0.0.1:auto->5432".to_owned()],
            volumes: vec!["db:/var/lib/postgresql/data".to_owned()],
        }
    }

    #[test]
    fn accessories_show_new_ones_and_changes_by_name_never_values() {
        let added = accessory_diff(&[], &[accessory("postgres:16", "a")]);
        assert_eq!(added.len(), 1);
        assert_eq!(
            added[0].to_string(),
            "+ accessory db: container: postgres:16"
        );

        let same = accessory_diff(
            &[accessory("postgres:16", "a")],
            &[accessory("postgres:16", "a")],
        );
        assert!(same.is_empty(), "{same:?}");

        let changed = accessory_diff(
            &[accessory("postgres:16", "old-secret")],
            &[accessory("postgres:17", "new-secret")],
        );
        let lines: Vec<String> = changed.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ accessory db: image: postgres:16 -> postgres:17",
                "~ accessory db: variable POSTGRES_PASSWORD"
            ]
        );
        assert!(changed.iter().all(|c| c.kind == ChangeKind::Changed));
        assert!(!format!("{changed:?}").contains("secret"), "{changed:?}");
    }

    use super::*;

    fn view(service: &str) -> ServiceView {
        ServiceView {
            service: service.to_owned(),
            image: "sha256:aaa".to_owned(),
            command: Some(vec!["/app".to_owned(), "serve".to_owned()]),
            env: BTreeMap::from([("LOG_LEVEL".to_owned(), "info".to_owned())]),
            secrets: BTreeMap::from([("SECRET_KEY".to_owned(), "ref-1".to_owned())]),
            replicas: 2,
            port: Some(8000),
            health: Some("GET /health".to_owned()),
            cpu: None,
            memory_mib: Some(256),
        }
    }

    #[test]
    fn equal_views_have_no_changes() {
        let now = vec![view("web"), view("worker")];
        assert!(diff(&now, &now.clone()).is_empty());
    }

    #[test]
    fn variables_and_secrets_are_named_never_valued() {
        let now = vec![view("web")];
        let mut next = now.clone();
        next[0]
            .env
            .insert("LOG_LEVEL".to_owned(), "debug-value".to_owned());
        next[0]
            .env
            .insert("NEW_VAR".to_owned(), "x-value".to_owned());
        next[0].secrets.remove("SECRET_KEY");
        next[0]
            .secrets
            .insert("API_TOKEN".to_owned(), "ref-2".to_owned());
        let changes = diff(&now, &next);
        let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ web: variable LOG_LEVEL",
                "+ web: variable NEW_VAR",
                "- web: secret SECRET_KEY",
                "+ web: secret API_TOKEN",
            ]
        );
        let json = serde_json::to_string(&changes).expect("json");
        assert!(!json.contains("value"), "{json}");
        assert!(!json.contains("ref-"), "{json}");
        assert!(!format!("{next:?}").contains("debug-value"));
    }

    #[test]
    fn image_replicas_health_and_services_are_shown_with_values() {
        let now = vec![view("web"), view("flower")];
        let mut next = vec![view("web"), view("worker")];
        next[0].image = "sha256:bbb".to_owned();
        next[0].replicas = 3;
        next[0].health = None;
        let lines: Vec<String> = diff(&now, &next).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ web: image: sha256:aaa -> sha256:bbb",
                "~ web: replicas: 2 -> 3",
                "- web: health check: GET /health",
                "+ worker: service: 2 replica(s) of sha256:aaa",
                "- flower: service",
            ]
        );
    }
}
