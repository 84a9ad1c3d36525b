//! Sorting the variables of `.env.example` into plain values, secrets and optional ones.

use indexmap::IndexMap;

use crate::envfile::is_placeholder;

/// Variables an app runs without (integrations, and AWS keys the ECS task role replaces).
const KNOWN_OPTIONAL: [&str; 8] = [
    "OPENAI_API_KEY",
    "SENTRY_DSN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SMTP_PASSWORD",
    "SMTP_USER",
    "SMTP_HOST",
];
const OPTIONAL_PREFIXES: [&str; 2] = ["LANGFUSE_", "LOCAL_CREDENTIALS_"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    /// Written into `[env]` with the example's value.
    pub plain: IndexMap<String, String>,
    /// Listed in `secrets`.
    pub secrets: Vec<String>,
    /// Listed in `variables.optional`.
    pub optional: Vec<String>,
}

/// Whether a name says its value is secret (`SECRET_KEY`, `*_PASSWORD`, `*_KEY`, `*_DSN`,
/// `*_TOKEN`, …).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["_PASSWORD", "_KEY", "_DSN", "_TOKEN", "_SECRET"]
        .iter()
        .any(|suffix| upper.ends_with(suffix))
        || [
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "TOKEN",
            "PRIVATE",
            "CREDENTIAL",
        ]
        .iter()
        .any(|word| upper.contains(word))
}

fn known_optional(name: &str) -> bool {
    KNOWN_OPTIONAL.contains(&name) || OPTIONAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Optional: known integrations, and anything the example leaves empty. Secret: a secret name,
/// a placeholder value (`changethis`), or a URL with credentials in it. The rest is plain.
pub fn classify(example: &IndexMap<String, String>) -> Variables {
    let mut out = Variables::default();
    for (name, value) in example {
        if known_optional(name) || value.trim().is_empty() {
            out.optional.push(name.clone());
        } else if looks_secret(name) || is_placeholder(value) || has_credentials(value) {
            out.secrets.push(name.clone());
        } else {
            out.plain.insert(name.clone(), value.clone());
        }
    }
    out
}

/// `scheme://user:password@host` carries a password.
fn has_credentials(value: &str) -> bool {
    value
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .is_some_and(|authority| authority.contains(':') && authority.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_kaapi_variables() {
        let example: IndexMap<String, String> = [
            ("DOMAIN", "localhost"),
            ("SECRET_KEY", "changethis"),
            ("FIRST_SUPERUSER", "superuser@example.com"),
            ("FIRST_SUPERUSER_PASSWORD", "changethis"),
            ("POSTGRES_PASSWORD", "postgres"),
            ("SENTRY_DSN", ""),
            ("AWS_ACCESS_KEY_ID", ""),
            ("RABBITMQ_PASSWORD", "guest"),
            ("REDIS_PASSWORD", ""),
            ("CELERY_WORKER_CONCURRENCY", ""),
            ("OPENAI_API_KEY", ""),
            ("DATABASE_URL", "postgres://u:p@db/app"),
            ("API_BASE_URL", "http://localhost:8000"),
            ("GITHUB_TOKEN", "x1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let v = classify(&example);
        assert_eq!(
            v.secrets,
            [
                "SECRET_KEY",
                "FIRST_SUPERUSER_PASSWORD",
                "POSTGRES_PASSWORD",
                "RABBITMQ_PASSWORD",
                "DATABASE_URL",
                "GITHUB_TOKEN"
            ]
        );
        assert_eq!(
            v.optional,
            [
                "SENTRY_DSN",
                "AWS_ACCESS_KEY_ID",
                "REDIS_PASSWORD",
                "CELERY_WORKER_CONCURRENCY",
                "OPENAI_API_KEY"
            ]
        );
        assert_eq!(
            v.plain.keys().collect::<Vec<_>>(),
            ["DOMAIN", "FIRST_SUPERUSER", "API_BASE_URL"]
        );
    }
}
