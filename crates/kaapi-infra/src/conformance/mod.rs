//! Conformance with the rules AWS enforces and the emulator does not: the generated policy
//! must allow every request the tool makes, and the generated trust must accept every token
//! GitHub sends the generated workflows. Built for tests only (this crate's and, with the
//! `conformance` feature, other crates' tests that record the requests the engine makes).

pub mod authorizations;
pub mod definitions;
#[cfg(test)]
mod policy_tests;
pub mod registry;
#[cfg(test)]
mod trust_tests;

#[cfg(test)]
use kaapi_core::config::{LoadedConfig, ResolvedEnvironment};

use authorizations::{authorizations, ApiCall};
use definitions::Definitions;

use crate::iam_eval::{evaluate, Decision, Request};
use crate::policy::Scope;

/// Every problem with `calls` under `policy`, one line each: a call without a mapping, a request
/// AWS's IAM definitions do not have (action, resource type, condition key), a request the
/// policy does not allow (with the statement closest to allowing it).
pub fn refusals(calls: &[ApiCall<'_>], policy: &serde_json::Value, scope: &Scope) -> Vec<String> {
    let mut problems = Vec::new();
    let mut requests = Vec::new();
    for call in calls {
        match authorizations(call, scope) {
            Ok(authorized) => {
                requests.extend(authorized.into_iter().map(|r| (call.to_string(), r)))
            }
            Err(e) => problems.push(e),
        }
    }
    problems.extend(request_refusals(&requests, policy));
    problems.sort();
    problems.dedup();
    problems
}

/// Every problem with `requests` (each labelled with the call it authorizes) under `policy`:
/// a request AWS's IAM definitions do not have, a request the policy does not allow.
pub fn request_refusals(requests: &[(String, Request)], policy: &serde_json::Value) -> Vec<String> {
    let definitions = Definitions::load();
    let mut problems = Vec::new();
    for (call, request) in requests {
        if let Some(problem) = definitions.problem(request) {
            problems.push(format!("{call}: {problem}"));
        }
        match evaluate(policy, request) {
            Ok(Decision::Allowed { .. }) => {}
            Ok(decision) => problems.push(format!("denied: {request} → {decision:?}")),
            Err(e) => problems.push(format!("{request}: {e}")),
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[cfg(test)]
pub const REGION: &str = "eu-west-1";
#[cfg(test)]
pub const ACCOUNT: &str = "123456789012";
#[cfg(test)]
pub const REPOSITORY: &str = "kaapi-org/kaapi-backend";

/// A Kaapi-shaped deploy.toml for tests: web and worker, Postgres, Redis, RabbitMQ, staging
/// on `main` with secrets in SSM, production on `v*` tags promoting staging's image with secrets
/// in Secrets Manager; each assumes its deploy role (one role may serve both).
pub fn kaapi_config(region: &str, account: &str, roles: [&str; 2]) -> String {
    let [staging_role, production_role] = roles;
    format!(
        r#"app = "kaapi"
secrets = ["SECRET_KEY", "FIRST_SUPERUSER_PASSWORD"]

[image]
context = "."

[services.web]
port = 8000
command = "fastapi run app/main.py --port 8000"

[services.worker]
command = "celery -A app.worker worker"

[env]
POSTGRES_SERVER = "db.internal"
REDIS_URL = "redis://cache.internal:6379/0"
RABBITMQ_HOST = "mq.internal"
PROJECT_NAME = "Kaapi"

[environments.staging]
engine = "ecs"
region = "{region}"
role_arn = "arn:aws:iam::{account}:role/{staging_role}"
trigger = {{ branch = "main" }}
secrets_from = {{ ssm = "/kaapi/staging/" }}

[environments.production]
engine = "ecs"
region = "{region}"
role_arn = "arn:aws:iam::{account}:role/{production_role}"
trigger = {{ tags = "v*" }}
promote_from = "staging"
secrets_from = {{ secrets_manager = "kaapi/production/" }}
"#
    )
}

#[cfg(test)]
/// The example project's deploy.toml with ECS environments added next to its docker one.
fn example_config() -> String {
    let example = include_str!("../../../../examples/deploy.toml");
    format!(
        "{example}\n[environments.staging]\nengine = \"ecs\"\nregion = \"{REGION}\"\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/example-deploy\"\ntrigger = {{ branch = \"main\" }}\nsecrets_from = {{ ssm = \"/kaapi-example/staging/\" }}\n"
    )
}

#[cfg(test)]
/// `environment` of a test config.
pub(crate) fn resolve(loaded: &LoadedConfig, environment: &str) -> ResolvedEnvironment {
    ResolvedEnvironment::resolve(loaded.clone(), environment).expect("a test environment")
}

#[cfg(test)]
/// Each test config, loaded from a temporary directory, with its ECS environments.
pub(crate) fn configs(dir: &std::path::Path) -> Vec<(LoadedConfig, Vec<&'static str>)> {
    [
        (
            "kaapi",
            kaapi_config(REGION, ACCOUNT, ["kaapi-deploy"; 2]),
            vec!["staging", "production"],
        ),
        ("example", example_config(), vec!["staging"]),
    ]
    .into_iter()
    .map(|(name, text, environments)| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        // The example's env file and build context are looked up relative to the config.
        std::fs::write(sub.join("local.env"), "SECRET_KEY=x\n").expect("write local.env");
        let path = sub.join("deploy.toml");
        std::fs::write(&path, text).expect("write deploy.toml");
        let loaded = kaapi_core::config::load(&path).expect("the test config is valid");
        (loaded, environments)
    })
    .collect()
}
