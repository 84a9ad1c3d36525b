//! Adopting a `docker-compose.yml`: services built from the backend become services (the one
//! publishing a port with a health check is the web service), image-only services become
//! accessories, a `profiles` one-off built from the backend (prestart) becomes the migrations
//! command, and per-service `environment` values become the local environment's values.

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

use super::render::is_plain_command;
use crate::config::is_valid_name;

/// A compose file that cannot be adopted: file, line (when known), key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ComposeError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeHealth {
    pub path: Option<String>,
    pub command: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// A valid service name (`celery_worker` → `celery-worker`).
    pub name: String,
    pub command: Option<Vec<String>>,
    /// Container port, for the web service.
    pub port: Option<u16>,
    pub health: Option<ComposeHealth>,
    /// Named volumes, `NAME:/path`.
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeAccessory {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: IndexMap<String, String>,
    pub secrets: Vec<String>,
    pub volumes: Vec<String>,
    pub ports: Vec<String>,
    pub health: Option<ComposeHealth>,
}

/// What `init` takes from a compose file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeShape {
    pub file: String,
    /// The web service first, then the others in the file's order.
    pub services: Vec<ComposeService>,
    pub migrations: Option<Vec<String>>,
    pub accessories: Vec<ComposeAccessory>,
    /// Values of the application services' `environment`, for the local environment.
    pub local_env: IndexMap<String, String>,
    /// What was left out and why, written as comments.
    pub notes: Vec<String>,
}

impl ComposeShape {
    pub fn web(&self) -> Option<&ComposeService> {
        self.services.iter().find(|s| s.port.is_some())
    }
}

/// Reads compose text. `example` holds `.env.example`'s values (for `${VAR}`), `secrets` the
/// names init treats as secrets.
pub fn parse_compose(
    file: &str,
    text: &str,
    example: &IndexMap<String, String>,
    secrets: &[String],
) -> Result<ComposeShape, ComposeError> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| ComposeError {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        key: "(document)".to_owned(),
        message: e.to_string(),
    })?;
    let reader = Reader { file, text };
    let services = match root.get("services") {
        Some(Value::Mapping(services)) => services,
        _ => return Err(reader.error(&["services"], "the file has no `services:` mapping")),
    };
    let mut shape = ComposeShape {
        file: file.to_owned(),
        ..Default::default()
    };
    let app_images: Vec<&str> = services
        .values()
        .filter(|s| s.get("build").is_some())
        .filter_map(|s| s.get("image").and_then(Value::as_str))
        .collect();
    let mut app_services = Vec::new();
    for (key, service) in services {
        let raw = key.as_str().unwrap_or_default();
        let Value::Mapping(service) = service else {
            return Err(reader.error(&["services", raw], "a service must be a mapping"));
        };
        let name = service_name(raw);
        let image = service.get("image").and_then(Value::as_str);
        let built =
            service.get("build").is_some() || image.is_some_and(|i| app_images.contains(&i));
        let command = reader.command(&["services", raw, "command"], service.get("command"))?;
        let health = reader.health(
            &["services", raw, "healthcheck"],
            service.get("healthcheck"),
        )?;
        let ports = reader.ports(&["services", raw, "ports"], service.get("ports"))?;
        let env = reader.environment(
            &["services", raw, "environment"],
            service.get("environment"),
        )?;
        if built {
            let one_off = service
                .get("profiles")
                .and_then(Value::as_sequence)
                .is_some_and(|p| !p.is_empty());
            if one_off {
                if shape.migrations.is_none() {
                    if command.is_none() {
                        return Err(reader.error(
                            &["services", raw, "command"],
                            "a one-off service needs a command to become the migrations command",
                        ));
                    }
                    shape.migrations = command;
                } else {
                    shape.notes.push(format!("`{raw}`: another one-off service; only the first becomes the migrations command"));
                }
            } else {
                let volumes = named_volumes(&mut shape.notes, raw, service);
                app_services.push((name, command, ports, health, volumes));
            }
            for (k, v) in env {
                add_local_value(&mut shape, k, v, example, secrets);
            }
        } else {
            let Some(image) = image else {
                return Err(reader.error(
                    &["services", raw, "image"],
                    "a service is neither built (`build:`) nor has an `image:`",
                ));
            };
            shape.accessories.push(accessory(
                &mut shape.notes,
                raw,
                name,
                image,
                command,
                env,
                ports,
                health,
                service,
                example,
                secrets,
            ));
        }
    }
    let web = app_services
        .iter()
        .position(|(_, _, ports, health, _)| !ports.is_empty() && health.is_some());
    for (index, (name, command, ports, health, volumes)) in app_services.into_iter().enumerate() {
        let is_web = Some(index) == web;
        if !is_web && !ports.is_empty() {
            shape.notes.push(format!("`{name}` publishes a port but has no health check; it runs as a background service"));
        }
        let service = ComposeService {
            name,
            command,
            port: if is_web {
                ports.first().map(|(_, c)| *c)
            } else {
                None
            },
            health: if is_web { health.map(web_health) } else { None },
            volumes,
        };
        if is_web {
            shape.services.insert(0, service);
        } else {
            shape.services.push(service);
        }
    }
    Ok(shape)
}

#[allow(clippy::too_many_arguments)]
fn accessory(
    notes: &mut Vec<String>,
    raw: &str,
    name: String,
    image: &str,
    command: Option<Vec<String>>,
    env: Vec<(String, String)>,
    ports: Vec<(Option<u16>, u16)>,
    health: Option<ComposeHealth>,
    service: &Mapping,
    example: &IndexMap<String, String>,
    secrets: &[String],
) -> ComposeAccessory {
    let mut accessory = ComposeAccessory {
        name,
        image: image.to_owned(),
        command,
        env: IndexMap::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        ports: ports
            .iter()
            .map(|(h, c)| h.map_or_else(|| c.to_string(), |h| format!("{h}:{c}")))
            .collect(),
        health,
    };
    for (key, value) in env {
        match reference(&value) {
            Some(var) if var == key && secrets.contains(&var) => accessory.secrets.push(var),
            Some(var) => match example.get(&var) {
                Some(known) if !secrets.contains(&var) => {
                    accessory.env.insert(key, known.clone());
                }
                _ => notes.push(format!(
                    "`{raw}`: {key} takes ${{{var}}}, which init cannot resolve; set it by hand"
                )),
            },
            None => {
                accessory.env.insert(key, value.replace("$$", "$"));
            }
        }
    }
    accessory.volumes = named_volumes(notes, raw, service);
    accessory
}

/// A service's named volumes as `NAME:/path`; bind mounts are left out (with a note).
fn named_volumes(notes: &mut Vec<String>, raw: &str, service: &Mapping) -> Vec<String> {
    let mut volumes = Vec::new();
    for volume in service
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(text) = volume.as_str() else {
            continue;
        };
        let mut parts = text.split(':');
        let (source, target) = (parts.next().unwrap_or_default(), parts.next());
        let source = service_name(source);
        match target {
            Some(target) if is_valid_name(&source) && target.starts_with('/') => {
                volumes.push(format!("{source}:{target}"));
            }
            _ => notes.push(format!(
                "`{raw}`: volume `{text}` is not a named volume; left out"
            )),
        }
    }
    volumes
}

/// Only the path of a web health check is kept: the check runs from outside, over HTTP.
fn web_health(health: ComposeHealth) -> ComposeHealth {
    ComposeHealth {
        command: None,
        ..health
    }
}

/// `${NAME}`, `${NAME?msg}`, `${NAME:-default}`, `$NAME` when that is the whole value.
fn reference(value: &str) -> Option<String> {
    let inner = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'))?;
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn add_local_value(
    shape: &mut ComposeShape,
    key: String,
    value: String,
    example: &IndexMap<String, String>,
    secrets: &[String],
) {
    if secrets.contains(&key) || reference(&value).is_some() || shape.local_env.contains_key(&key) {
        return;
    }
    if is_localhost(&value) {
        shape
            .notes
            .push(format!("{key}: `{value}` is a localhost host; not written"));
        return;
    }
    if example.get(&key) == Some(&value) {
        return;
    }
    shape.local_env.insert(key, value);
}

pub fn is_localhost(value: &str) -> bool {
    matches!(value.trim(), "localhost" | "127.0.0.1" | "::1")
}

/// A valid name from a compose name (`celery_worker` → `celery-worker`).
fn service_name(raw: &str) -> String {
    raw.to_ascii_lowercase().replace(['_', '.'], "-")
}

struct Reader<'a> {
    file: &'a str,
    text: &'a str,
}

impl Reader<'_> {
    fn error(&self, path: &[&str], message: impl Into<String>) -> ComposeError {
        ComposeError {
            file: self.file.to_owned(),
            line: line_of(self.text, path),
            key: path.join("."),
            message: message.into(),
        }
    }

    fn command(
        &self,
        path: &[&str],
        value: Option<&Value>,
    ) -> Result<Option<Vec<String>>, ComposeError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            // `$$` is compose's escape for a `$` the container's shell sees.
            Some(Value::String(line)) => shlex::split(&line.replace("$$", "$"))
                .map(Some)
                .ok_or_else(|| self.error(path, "unbalanced quotes")),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|i| {
                    scalar(i)
                        .map(|a| a.replace("$$", "$"))
                        .ok_or_else(|| self.error(path, "every element must be a string"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.error(path, "a command is a string or a list of strings")),
        }
    }

    fn environment(
        &self,
        path: &[&str],
        value: Option<&Value>,
    ) -> Result<Vec<(String, String)>, ComposeError> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Mapping(map)) => Ok(map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v)?)))
                .collect()),
            Some(Value::Sequence(items)) => Ok(items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|i| i.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()),
            Some(_) => Err(self.error(path, "environment is a mapping or a list of KEY=value")),
        }
    }

    /// `(host port, container port)` of each entry.
    fn ports(
        &self,
        path: &[&str],
        value: Option<&Value>,
    ) -> Result<Vec<(Option<u16>, u16)>, ComposeError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let Some(items) = value.as_sequence() else {
            return Err(self.error(path, "ports is a list"));
        };
        items
            .iter()
            .map(|item| {
                let parsed = match item {
                    Value::Mapping(m) => m.get("target").and_then(Value::as_u64).map(|target| {
                        let published = m.get("published").and_then(|p| scalar(p)?.parse().ok());
                        (published, target)
                    }),
                    other => scalar(other).and_then(|text| {
                        let text = text.split('/').next().unwrap_or_default().to_owned();
                        let parts: Vec<&str> = text.split(':').collect();
                        let container = parts.last()?.parse().ok()?;
                        let host = (parts.len() >= 2)
                            .then(|| parts[parts.len() - 2].parse().ok())
                            .flatten();
                        Some((host, container))
                    }),
                };
                parsed
                    .and_then(|(h, c)| {
                        Some((
                            h.and_then(|h: u64| u16::try_from(h).ok()),
                            u16::try_from(c).ok()?,
                        ))
                    })
                    .ok_or_else(|| {
                        self.error(
                            path,
                            format!("cannot read port {}", scalar(item).unwrap_or_default()),
                        )
                    })
            })
            .collect()
    }

    fn health(
        &self,
        path: &[&str],
        value: Option<&Value>,
    ) -> Result<Option<ComposeHealth>, ComposeError> {
        let Some(Value::Mapping(map)) = value else {
            return Ok(None);
        };
        if map.get("disable").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let mut test_path = path.to_vec();
        test_path.push("test");
        let command = match map.get("test") {
            Some(Value::String(text)) => Some(shell(text)),
            Some(Value::Sequence(items)) => {
                let items: Vec<String> = items.iter().filter_map(scalar).collect();
                match items.split_first() {
                    Some((kind, rest)) if kind == "CMD" => Some(rest.to_vec()),
                    Some((kind, rest)) if kind == "CMD-SHELL" => Some(shell(&rest.join(" "))),
                    Some((kind, _)) if kind == "NONE" => return Ok(None),
                    _ => {
                        return Err(self
                            .error(&test_path, "a test list starts with CMD, CMD-SHELL or NONE"))
                    }
                }
            }
            _ => return Err(self.error(&test_path, "a health check needs `test`")),
        };
        let http_path = command.as_ref().and_then(|argv| {
            argv.iter().find_map(|a| {
                let url = a
                    .split_whitespace()
                    .find(|w| w.starts_with("http://") || w.starts_with("https://"))?;
                let rest = url.split_once("://")?.1;
                Some(rest.find('/').map_or("/".to_owned(), |i| {
                    rest[i..].trim_end_matches(['\'', '"']).to_owned()
                }))
            })
        });
        let duration = |key: &str| {
            map.get(key)
                .and_then(scalar)
                .filter(|d| humantime::parse_duration(d).is_ok())
        };
        Ok(Some(ComposeHealth {
            path: http_path,
            command,
            interval: duration("interval"),
            timeout: duration("timeout"),
            retries: map
                .get("retries")
                .and_then(Value::as_u64)
                .and_then(|r| u32::try_from(r).ok()),
            start_period: duration("start_period"),
        }))
    }
}

/// A `CMD-SHELL` line: split into words when it needs no shell, else run by `/bin/sh -c`
/// (with compose's `$$` escape undone).
fn shell(text: &str) -> Vec<String> {
    let text = text.replace("$$", "$");
    if is_plain_command(&text) {
        shlex::split(&text).unwrap_or_default()
    } else {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), text]
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// 1-based line of a nested key (or of its nearest parent), found by reading the keys in
/// order, each after the previous.
fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for key in path {
        let index = lines.iter().enumerate().skip(from).find_map(|(i, l)| {
            let trimmed = l.trim_start().trim_start_matches("- ");
            let name = trimmed.split(':').next()?.trim().trim_matches(['"', '\'']);
            (name == *key && trimmed.contains(':')).then_some(i)
        });
        // A missing key points at its nearest parent.
        let Some(index) = index else {
            break;
        };
        found = Some(index + 1);
        from = index + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const KAAPI_COMPOSE: &str = r#"services:
  db:
    image: postgres:16
    restart: always
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $${POSTGRES_USER} -d $${POSTGRES_DB}"]
      interval: 10s
      retries: 5
      start_period: 30s
      timeout: 10s
    volumes:
      - app-db-data:/var/lib/postgresql/data/pgdata
      - ./init.sql:/docker-entrypoint-initdb.d/init.sql
    env_file:
      - .env
    environment:
      - PGDATA=/var/lib/postgresql/data/pgdata
      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD?Variable not set}
      - POSTGRES_USER=${POSTGRES_USER?Variable not set}
      - POSTGRES_DB=${POSTGRES_DB?Variable not set}
  redis:
    image: redis:7
    ports:
      - "6379:6379"
  adminer:
    image: adminer
    ports:
      - 8080:8080
  prestart:
    build:
      context: ./backend
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    profiles: ["prestart"]
    command: bash scripts/prestart.sh
    environment:
      - POSTGRES_SERVER=db
  backend:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    build:
      context: ./backend
    ports:
      - "8000:80"
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:80/api/v1/utils/health/"]
      interval: 10s
      timeout: 5s
      retries: 5
    environment:
      - POSTGRES_SERVER=db
      - REDIS_HOST=redis
      - SECRET_KEY=${SECRET_KEY?Variable not set}
      - DOMAIN=localhost
  celery_worker:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    command: ["celery", "-A", "app.celery.celery_app", "worker", "--loglevel=info"]
    environment:
      RABBITMQ_HOST: rabbitmq
  celery_flower:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    command: celery -A app.celery.celery_app flower --port=5555
    ports:
      - "5555:5555"
"#;

    fn example() -> IndexMap<String, String> {
        [
            ("POSTGRES_USER", "postgres"),
            ("POSTGRES_DB", "app"),
            ("POSTGRES_SERVER", "localhost"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn kaapi_compose_becomes_services_accessories_migrations_and_local_values() {
        let secrets = vec!["POSTGRES_PASSWORD".to_owned(), "SECRET_KEY".to_owned()];
        let shape = parse_compose("docker-compose.yml", KAAPI_COMPOSE, &example(), &secrets)
            .expect("adoptable");
        let names: Vec<&str> = shape.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["backend", "celery-worker", "celery-flower"]);
        let web = shape.web().expect("web");
        assert_eq!(web.port, Some(80));
        assert_eq!(
            web.health.as_ref().and_then(|h| h.path.as_deref()),
            Some("/api/v1/utils/health/")
        );
        assert_eq!(
            shape.migrations.as_deref(),
            Some(&["bash".to_owned(), "scripts/prestart.sh".to_owned()][..])
        );
        let accessories: Vec<&str> = shape.accessories.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(accessories, ["db", "redis", "adminer"]);
        let db = &shape.accessories[0];
        assert_eq!(db.secrets, ["POSTGRES_PASSWORD"]);
        assert_eq!(db.env["POSTGRES_USER"], "postgres");
        assert_eq!(db.env["PGDATA"], "/var/lib/postgresql/data/pgdata");
        assert_eq!(db.volumes, ["app-db-data:/var/lib/postgresql/data/pgdata"]);
        assert_eq!(
            db.health.as_ref().and_then(|h| h.command.clone()),
            Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                "pg_isready -U ${POSTGRES_USER} -d ${POSTGRES_DB}".to_owned()
            ])
        );
        assert_eq!(shape.accessories[1].ports, ["6379:6379"]);
        assert_eq!(shape.local_env["POSTGRES_SERVER"], "db");
        assert_eq!(shape.local_env["REDIS_HOST"], "redis");
        assert_eq!(shape.local_env["RABBITMQ_HOST"], "rabbitmq");
        assert!(
            !shape.local_env.contains_key("SECRET_KEY"),
            "secrets are never written"
        );
        assert!(
            !shape.local_env.contains_key("DOMAIN"),
            "localhost is not written"
        );
        assert!(
            shape.notes.iter().any(|n| n.contains("init.sql")),
            "{:?}",
            shape.notes
        );
    }

    #[test]
    fn unreadable_compose_names_file_line_and_key() {
        let broken = "services:\n  db:\n    image: [unclosed\n";
        let error = parse_compose("docker-compose.yml", broken, &IndexMap::new(), &[])
            .expect_err("bad yaml");
        assert_eq!(error.file, "docker-compose.yml");
        assert!(error.line.is_some(), "{error}");
        let bad_ports = "services:\n  web:\n    build: .\n    ports: 8000\n";
        let error = parse_compose("docker-compose.yml", bad_ports, &IndexMap::new(), &[])
            .expect_err("bad ports");
        assert_eq!(
            error.to_string(),
            "docker-compose.yml:4: `services.web.ports`: ports is a list"
        );
        let no_image = "services:\n  db:\n    restart: always\n";
        let error = parse_compose("c.yml", no_image, &IndexMap::new(), &[]).expect_err("no image");
        assert!(
            error
                .to_string()
                .starts_with("c.yml:2: `services.db.image`"),
            "{error}"
        );
    }
}
