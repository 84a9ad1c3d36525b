//! Deploy notifications: `[notifications]` in deploy.toml (or per environment) lists webhooks,
//! each in a format (Slack, Discord, generic JSON) with its URL read from a variable of the
//! deployer's environment, never written in the config. This module is pure: the notice of a
//! deploy or rollback and the body each format posts. The CLI sends them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;
use crate::config::ResolvedEnvironment;
use crate::pipeline::DeployReport;
use crate::release::{Outcome, ReleaseMeta};

/// How long one post may take when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Discord refuses a message longer than this.
const DISCORD_MAX: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Bound on each post (default 5s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

impl NotificationsConfig {
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(DEFAULT_TIMEOUT, Duration::from)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub format: WebhookFormat,
    /// The variable (in the deployer's environment, e.g. a GitHub Actions secret) that holds
    /// the webhook URL.
    pub url_env: VariableName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    Slack,
    Discord,
    Json,
}

/// The name of an environment variable; a URL here is refused, so that no webhook URL (a
/// secret) is ever written in deploy.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VariableName(String);

impl VariableName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VariableName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if name.contains("://") {
            return Err("url_env names the variable that holds the webhook URL, not the URL itself (a secret): e.g. url_env = \"SLACK_WEBHOOK_URL\"".to_owned());
        }
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Self(name))
        } else {
            Err(format!("`{name}` is not a variable name; use letters, digits and `_`, e.g. SLACK_WEBHOOK_URL"))
        }
    }
}

impl From<VariableName> for String {
    fn from(name: VariableName) -> Self {
        name.0
    }
}

/// The notifications of `target`: the environment's own `notifications`, else the shared one.
pub fn for_environment(target: &ResolvedEnvironment) -> Option<&NotificationsConfig> {
    target
        .env()
        .notifications
        .as_ref()
        .or(target.config().notifications.as_ref())
        .filter(|n| !n.webhooks.is_empty())
}

/// What happened, for people and for the generic JSON format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// `deploy` or `rollback`.
    pub action: String,
    pub environment: String,
    pub outcome: Outcome,
    pub release: Option<u64>,
    pub image: Option<String>,
    pub commit: String,
    pub version: Option<String>,
    pub author: String,
    pub duration_seconds: f64,
    pub message: String,
    /// The first failed replica's diagnosis in one line, on failure.
    pub diagnosis: Option<String>,
    /// Where it ran (CI run URL), when known.
    pub url: Option<String>,
}

impl Notice {
    pub fn of(action: &str, report: &DeployReport, meta: &ReleaseMeta, url: Option<&str>) -> Self {
        Self {
            action: action.to_owned(),
            environment: report.environment.clone(),
            outcome: report.outcome,
            release: report.release,
            image: report.image.as_ref().map(|i| i.digest.clone()),
            commit: meta.commit.clone(),
            version: meta.version.clone(),
            author: meta.author.clone(),
            duration_seconds: report.total_seconds,
            message: report.message.clone(),
            diagnosis: report.diagnosis.first().map(|d| d.one_line()),
            url: url.map(str::to_owned),
        }
    }

    /// A deploy or rollback that is starting (outcome `in_progress`, no release yet).
    pub fn started(action: &str, environment: &str, meta: &ReleaseMeta, url: Option<&str>) -> Self {
        Self {
            action: action.to_owned(),
            environment: environment.to_owned(),
            outcome: Outcome::InProgress,
            release: None,
            image: None,
            commit: meta.commit.clone(),
            version: meta.version.clone(),
            author: meta.author.clone(),
            duration_seconds: 0.0,
            message: format!("{action} of {environment} started"),
            diagnosis: None,
            url: url.map(str::to_owned),
        }
    }

    /// One line of headline: `✅ staging: deploy of release 4 succeeded`.
    pub fn headline(&self) -> String {
        let mark = match self.outcome {
            Outcome::Succeeded => "✅",
            Outcome::RolledBack => "↩️",
            Outcome::InProgress => "🚀",
            _ => "❌",
        };
        let what = match self.release {
            Some(n) => format!("{} of release {n}", self.action),
            None => self.action.clone(),
        };
        let outcome = match self.outcome {
            Outcome::Succeeded => "succeeded".to_owned(),
            Outcome::RolledBack => "failed and was rolled back".to_owned(),
            Outcome::FailedMigration => "failed in its migrations".to_owned(),
            Outcome::InProgress => "started".to_owned(),
            other => other.to_string(),
        };
        format!("{mark} {}: {what} {outcome}", self.environment)
    }

    /// The text for chat formats: headline, facts, message and diagnosis.
    pub fn text(&self) -> String {
        let mut lines = vec![self.headline()];
        let mut facts = vec![format!("commit {}", self.commit)];
        if let Some(version) = &self.version {
            facts.push(format!("version {version}"));
        }
        facts.push(format!("by {}", self.author));
        facts.push(format!("in {:.0}s", self.duration_seconds));
        lines.push(facts.join(" · "));
        if let Some(image) = &self.image {
            lines.push(format!("image {image}"));
        }
        lines.push(self.message.clone());
        if let Some(diagnosis) = &self.diagnosis {
            lines.push(format!("why: {diagnosis}"));
        }
        if let Some(url) = &self.url {
            lines.push(url.clone());
        }
        lines.join("\n")
    }
}

/// The JSON body `format` posts for `notice`.
pub fn body(format: WebhookFormat, notice: &Notice) -> serde_json::Value {
    match format {
        WebhookFormat::Slack => serde_json::json!({ "text": notice.text() }),
        WebhookFormat::Discord => {
            let mut text = notice.text();
            if text.chars().count() > DISCORD_MAX {
                text = text.chars().take(DISCORD_MAX - 1).collect::<String>() + "…";
            }
            serde_json::json!({ "content": text })
        }
        WebhookFormat::Json => serde_json::json!({ "kaapi_deploy": notice }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(outcome: Outcome, diagnosis: Option<&str>) -> Notice {
        Notice {
            action: "deploy".into(),
            environment: "staging".into(),
            outcome,
            release: Some(4),
            image: Some("sha256:abc".into()),
            commit: "0123456789ab".into(),
            version: Some("v1.2.3".into()),
            author: "alice".into(),
            duration_seconds: 42.4,
            message: "rollout failed: backend replica exited".into(),
            diagnosis: diagnosis.map(str::to_owned),
            url: None,
        }
    }

    #[test]
    fn a_start_is_announced_with_who_and_what() {
        let meta = ReleaseMeta {
            commit: "0123456789ab".into(),
            version: Some("v1.2.3".into()),
            author: "alice".into(),
            created_at: chrono::Utc::now(),
        };
        let started = Notice::started("deploy", "staging", &meta, Some("https://ci/run/1"));
        assert_eq!(started.headline(), "🚀 staging: deploy started");
        let text = started.text();
        assert!(text.contains("commit 0123456789ab"), "{text}");
        assert!(text.contains("version v1.2.3"), "{text}");
        assert!(text.contains("by alice"), "{text}");
        assert!(text.contains("https://ci/run/1"), "{text}");
        let json = body(WebhookFormat::Json, &started);
        assert_eq!(json["kaapi_deploy"]["outcome"], "in_progress");
    }

    #[test]
    fn chat_formats_carry_every_fact() {
        let n = notice(
            Outcome::RolledBack,
            Some("backend (x): out of memory (exit 137)"),
        );
        let slack = body(WebhookFormat::Slack, &n);
        let text = slack["text"].as_str().expect("slack text");
        for part in [
            "staging: deploy of release 4 failed and was rolled back",
            "commit 0123456789ab",
            "version v1.2.3",
            "by alice",
            "in 42s",
            "sha256:abc",
            "why: backend (x): out of memory",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let discord = body(WebhookFormat::Discord, &n);
        assert_eq!(discord["content"].as_str(), Some(text));
    }

    #[test]
    fn discord_messages_stay_under_its_limit() {
        let long = "x".repeat(5000);
        let discord = body(
            WebhookFormat::Discord,
            &notice(Outcome::Failed, Some(&long)),
        );
        let content = discord["content"].as_str().expect("content");
        assert!(content.chars().count() <= DISCORD_MAX);
    }

    #[test]
    fn the_json_format_is_the_notice_itself() {
        let json = body(WebhookFormat::Json, &notice(Outcome::Succeeded, None));
        assert_eq!(json["kaapi_deploy"]["outcome"], "succeeded");
        assert_eq!(json["kaapi_deploy"]["release"], 4);
        assert_eq!(json["kaapi_deploy"]["environment"], "staging");
    }

    #[test]
    fn a_url_in_url_env_is_refused_without_repeating_it() {
        let error =
            VariableName::try_from("https://hooks.slack.com/services/T0/B0/secret".to_owned())
                .expect_err("a URL is not a variable name");
        assert!(!error.contains("hooks.slack.com"), "{error}");
        assert!(VariableName::try_from("SLACK_WEBHOOK_URL".to_owned()).is_ok());
        assert!(VariableName::try_from("has space".to_owned()).is_err());
    }
}
