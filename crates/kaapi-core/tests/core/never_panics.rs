//! Arbitrary input never panics the config loader, the validator, the env-file parser, the
//! trigger resolver or the Dockerfile reader: random bytes, random edits of a valid config,
//! random env files.

use std::path::Path;

use kaapi_core::config::parse;
use kaapi_core::{envfile, scaffold, trigger};
use proptest::prelude::*;

const VALID: &str = r#"app = "kaapi"
secrets = ["SECRET_KEY"]
[image]
context = "backend"
[migrations]
command = "alembic upgrade head"
[services.backend]
port = 80
[services.backend.health]
path = "/api/v1/utils/health/"
interval = "10s"
timeout = "5s"
[services.worker]
command = ["celery", "worker"]
[env]
DOMAIN = "localhost"
[variables]
example = ".env.example"
optional = ["SENTRY_DSN"]
[environments.local]
engine = "docker"
secrets_from = { env_file = ".env" }
[environments.staging]
engine = "ecs"
region = "eu-west-1"
trigger = { branch = "main" }
secrets_from = { ssm = "/kaapi/staging/" }
[environments.production]
engine = "ecs"
region = "eu-west-1"
trigger = { tags = "v*" }
promote_from = "staging"
secrets_from = { ssm = "/kaapi/production/" }
names = { cluster = "c", services = { backend = "b" } }
"#;

/// Fragments that make edits likely to stay TOML-shaped and hit the validator.
const FRAGMENTS: &[&str] = &[
    "\n[services.x]\n",
    "port = 0",
    "port = 70000",
    "\"",
    "[",
    "]",
    "=",
    "\n",
    "#",
    "*",
    "refs/",
    "engine = \"k8s\"",
    "replicas = 0",
    "\"0s\"",
    "-1",
    "\u{feff}",
    "é",
    "\\",
    "{}",
    "[[a]]",
    "promote_from = \"production\"",
    "kind = \"worker\"",
    "'''",
    "\t",
    ".",
    "services",
];

fn mutate(base: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut text = base.to_owned();
    for &(at, delete, fragment) in edits {
        let mut start = at % (text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + delete % 12).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.replace_range(start..end, FRAGMENTS[fragment % FRAGMENTS.len()]);
    }
    text
}

fn exercise_config(text: &str) {
    match parse(Path::new("deploy.toml"), text) {
        Ok((config, _warnings)) => {
            for env in config.environments.keys() {
                let names = kaapi_core::naming::names(&config, env);
                assert!(!names.cluster.is_empty());
            }
            for git_ref in [
                "refs/heads/main",
                "refs/tags/v1.2.3",
                "refs/tags/x",
                "refs/pull/1/merge",
            ] {
                let _ = trigger::resolve(&config, git_ref);
            }
        }
        // Every failure renders to a message.
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

#[test]
fn the_unmutated_fixture_is_valid() {
    assert!(parse(Path::new("deploy.toml"), VALID).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise_config(&text);
        let _ = envfile::parse(&text);
        let _ = scaffold::parse_dockerfile(&text);
        let _ = scaffold::dependencies(Some(&text), &[&text]);
    }

    #[test]
    fn edited_configs_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6)) {
        exercise_config(&mutate(VALID, &edits));
    }

    #[test]
    fn env_files_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                "[A-Z_][A-Z0-9_]{0,8}=[ -~]{0,20}",
                "export [A-Za-z_]{1,6} ?= ?['\"]?[ -~]{0,12}",
                "#[ -~]{0,20}",
                "[ -~\t\u{feff}é]{0,30}",
            ],
            0..20,
        )
    ) {
        let text = lines.join("\n");
        if let Ok(entries) = envfile::parse_entries(&text) {
            for entry in entries.values() {
                prop_assert!(entry.line >= 1 && entry.line <= lines.len());
                let _ = envfile::is_placeholder(&entry.value);
            }
        }
    }

    #[test]
    fn trigger_patterns_never_panic(pattern in "[ -~é]{0,12}", name in "[ -~é]{0,16}") {
        let _ = trigger::validate_pattern(&pattern);
        let _ = trigger::pattern_matches(&pattern, &name);
    }
}
