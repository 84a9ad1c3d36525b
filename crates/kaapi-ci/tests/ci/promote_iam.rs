//! IAM as ECR enforces it on a promotion, which neither the local registry nor moto do: every
//! registry request a real promote from staging to production sends (against Debian's
//! docker-registry standing in for the account's ECR registry) and the ECR login (against moto)
//! are mapped to the IAM action ECR authorizes them as, on the repository they address, and
//! evaluated against the policy `infra policy production` generates. A request without a
//! mapping, or one the policy denies, fails the test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kaapi_aws::registry::RegistryClient;
use kaapi_ci::promote::{promote_image, target_repository};
use kaapi_core::config::{LoadedConfig, ResolvedEnvironment};
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta};
use kaapi_infra::conformance::authorizations::ApiCall;
use kaapi_infra::conformance::registry::registry_authorizations;
use kaapi_infra::conformance::{kaapi_config, refusals, request_refusals};
use kaapi_infra::iam_eval::Request;
use kaapi_infra::policy::{deploy_policy, Scope};
use kaapi_testkit::aws_record::Recorder;
use kaapi_testkit::{registry, Service};

use crate::promote::{push_image, LocalImages};

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "123456789012";

/// The Kaapi-shaped config (staging on `main`, production promoting it), with each
/// environment's images in `registries` (staging's, production's) when given.
fn write_config(dir: &Path, registries: Option<[&str; 2]>) -> LoadedConfig {
    let mut text = kaapi_config(REGION, ACCOUNT, ["kaapi-deploy"; 2]);
    if let Some([staging, production]) = registries {
        for (environment, host) in [("staging", staging), ("production", production)] {
            let header = format!("[environments.{environment}]\n");
            text = text.replacen(&header, &format!("{header}registry = \"{host}\"\n"), 1);
        }
    }
    std::fs::write(dir.join("local.env"), "SECRET_KEY=x\n").expect("write local.env");
    let path = dir.join("deploy.toml");
    std::fs::write(&path, text).expect("write deploy.toml");
    kaapi_core::config::load(&path).expect("the test config is valid")
}

fn resolve(loaded: &LoadedConfig, environment: &str) -> ResolvedEnvironment {
    ResolvedEnvironment::resolve(loaded.clone(), environment).expect("a test environment")
}

fn staging_release(staging: &ResolvedEnvironment, host: &str, digest: &str) -> Release {
    Release {
        number: 3,
        environment: "staging".to_owned(),
        image: ImageRef {
            reference: format!("{host}/{}@{digest}", staging.names().repository),
            digest: digest.to_owned(),
            tags: vec!["0123456789ab".to_owned()],
        },
        meta: ReleaseMeta {
            commit: "0123456789ab".to_owned(),
            version: Some("v1.2.3".to_owned()),
            author: "alice".to_owned(),
            created_at: chrono::Utc::now(),
        },
        revisions: vec![],
        outcome: Outcome::Succeeded,
        detail: None,
        rollback_of: None,
        schema_version: None,
    }
}

/// The registry requests (method, URL) a real promote from staging to production sends, with
/// staging's image pushed by the Docker CLI to `staging_registry`.
async fn promote_requests(
    staging_registry: &Service,
    production_registry: &Service,
) -> (ResolvedEnvironment, Vec<(String, String)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(
        dir.path(),
        Some([&staging_registry.host(), &production_registry.host()]),
    );
    let staging = resolve(&loaded, "staging");
    let production = resolve(&loaded, "production");
    let mut cleanup = LocalImages(Vec::new());
    let digest = push_image(
        staging_registry,
        &staging.names().repository,
        "0123456789ab",
        &mut cleanup,
    );

    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let client = RegistryClient::new()
        .expect("client")
        .observed(Arc::new(move |method, url| {
            record
                .lock()
                .expect("requests")
                .push((method.to_string(), url.to_owned()));
        }));
    let target = target_repository(production.config(), "production", None)
        .await
        .expect("production's repository")
        .expect("production has a registry");
    let release = staging_release(&staging, &staging_registry.host(), &digest);
    let promoted = promote_image(&client, &release, Some(&target), None)
        .await
        .expect("promote");
    assert_eq!(promoted.digest, digest);
    assert!(promoted.copy.is_some(), "the image was copied");
    let requests = seen.lock().expect("requests").clone();
    (production, requests)
}

/// What ECR authorizes for each request, the registry it addresses named by `accounts`
/// (loopback host → the account and region whose ECR registry it stands for).
fn authorized(
    requests: &[(String, String)],
    accounts: &HashMap<String, (&str, &str)>,
) -> Result<Vec<(String, Request)>, String> {
    let mut out = Vec::new();
    for (method, url) in requests {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        let (account, region) = accounts
            .get(host)
            .ok_or_else(|| format!("{method} {url}: a registry no environment uses"))?;
        let arn = |name: &str| format!("arn:aws:ecr:{region}:{account}:repository/{name}");
        let requests = registry_authorizations(method, url, &arn)?;
        out.extend(requests.into_iter().map(|r| (format!("{method} {url}"), r)));
    }
    Ok(out)
}

/// The generated policy without `action`.
fn without_action(policy: &serde_json::Value, action: &str) -> serde_json::Value {
    let mut policy = policy.clone();
    for statement in policy["Statement"].as_array_mut().expect("statements") {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != action);
        }
    }
    policy
}

fn actions(requests: &[(String, Request)]) -> Vec<&str> {
    let mut actions: Vec<&str> = requests.iter().map(|(_, r)| r.action.as_str()).collect();
    actions.sort_unstable();
    actions.dedup();
    actions
}

#[tokio::test]
async fn the_generated_policy_allows_every_request_a_promote_within_the_registry_sends() {
    // Staging and production share the account's registry: the client mounts the blobs.
    let shared = registry();
    let (production, requests) = promote_requests(&shared, &shared).await;
    let accounts = HashMap::from([(shared.host(), (ACCOUNT, REGION))]);
    let authorized = authorized(&requests, &accounts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        actions(&authorized),
        [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:InitiateLayerUpload",
            "ecr:PutImage",
        ],
        "{requests:#?}"
    );
    let policy = deploy_policy(&production, &Scope::new(REGION, ACCOUNT));
    let problems = request_refusals(&authorized, &policy);
    assert!(problems.is_empty(), "on ECR:\n{}", problems.join("\n"));

    // Not vacuous: without ecr:PutImage the promote is refused, naming the request.
    let problems = request_refusals(&authorized, &without_action(&policy, "ecr:PutImage"));
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p.contains("ecr:PutImage")),
        "{problems:#?}"
    );
}

#[tokio::test]
async fn the_generated_policy_allows_every_request_a_promote_uploading_the_blobs_sends() {
    // Two local registries stand for the one ECR registry of the account, as when blob
    // mounting is off: the client downloads each blob from staging and uploads it.
    let staging = registry();
    let production = registry();
    let (target, requests) = promote_requests(&staging, &production).await;
    let accounts = HashMap::from([
        (staging.host(), (ACCOUNT, REGION)),
        (production.host(), (ACCOUNT, REGION)),
    ]);
    let authorized = authorized(&requests, &accounts).unwrap_or_else(|e| panic!("{e}"));
    let recorded = actions(&authorized);
    for expected in [
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
    ] {
        assert!(recorded.contains(&expected), "no {expected}: {requests:#?}");
    }
    let policy = deploy_policy(&target, &Scope::new(REGION, ACCOUNT));
    let problems = request_refusals(&authorized, &policy);
    assert!(problems.is_empty(), "on ECR:\n{}", problems.join("\n"));

    // Staging's role may not write production's repository.
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), Some([&staging.host(), &production.host()]));
    let staging_policy = deploy_policy(&resolve(&loaded, "staging"), &Scope::new(REGION, ACCOUNT));
    let refused = request_refusals(&authorized, &staging_policy);
    assert!(
        refused.iter().any(|p| p.contains("ecr:PutImage")),
        "{refused:#?}"
    );
}

#[tokio::test]
async fn the_generated_policy_allows_the_ecr_login_of_a_promote() {
    let moto = kaapi_testkit::moto();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), None);
    let production = resolve(&loaded, "production");
    let wire = Recorder::new();
    target_repository(
        production.config(),
        "production",
        Some(&wire.sdk_config(&sdk)),
    )
    .await
    .expect("ECR login")
    .expect("production's ECR repository");

    let calls = wire.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.service == "ecr" && c.operation == "GetAuthorizationToken"),
        "{calls:#?}"
    );
    let api: Vec<ApiCall<'_>> = calls
        .iter()
        .map(|c| ApiCall {
            service: &c.service,
            operation: &c.operation,
            params: &c.params,
        })
        .collect();
    let scope = Scope::new(REGION, ACCOUNT);
    let problems = refusals(&api, &deploy_policy(&production, &scope), &scope);
    assert!(problems.is_empty(), "on AWS:\n{}", problems.join("\n"));
}
