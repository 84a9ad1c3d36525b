//! Build once, promote: an image pushed by the Docker CLI to a real local registry
//! (Debian's docker-registry) is copied to another repository, and to another registry, by
//! digest; the production reference then resolves to exactly the staging digest.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::VecDeque;

use kaapi_aws::registry::{RegistryClient, Repository, MANIFEST_TYPES};
use kaapi_ci::decide::{decide, CiDecision};
use kaapi_ci::github::{GithubContext, Vars};
use kaapi_ci::promote::{
    build_choice, promote_image, promote_release_to, promoted_choice, promotion_source,
    release_for_commit, target_repository,
};
use kaapi_ci::run::{run_ci, CiPlan};
use kaapi_core::config::parse;
use kaapi_core::engine::{ImageSource, LockOwner, RolloutOutcome};
use kaapi_core::pipeline::DeployPlan;
use kaapi_core::progress::Silent;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta};
use kaapi_testkit::fake_engine::{FakeEngine, Script};
use kaapi_testkit::{registry, Service};

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes the test's local image tags whatever happens.
pub(crate) struct LocalImages(pub(crate) Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Builds a small FROM scratch image with unique content, pushes it as `repo:tag` and returns
/// the digest the push reported.
pub(crate) fn push_image(
    registry: &Service,
    repo: &str,
    tag: &str,
    cleanup: &mut LocalImages,
) -> String {
    let dir = tempfile::tempdir().expect("build dir");
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    std::fs::write(
        dir.path().join("hello.txt"),
        format!("kaapi promote test {nonce}\n"),
    )
    .expect("write file");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n",
    )
    .expect("write Dockerfile");
    let reference = format!("{}/{repo}:{tag}", registry.host());
    cleanup.0.push(reference.clone());
    docker(&[
        "build",
        "-q",
        "-t",
        &reference,
        &dir.path().display().to_string(),
    ]);
    let pushed = docker(&["push", &reference]);
    pushed
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in the push output: {pushed}"))
        .to_owned()
}

/// The digest a registry reports for `repo:reference`, asked with plain HTTP (not our client).
async fn head_digest(registry: &Service, repo: &str, reference: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .head(format!(
            "{}/v2/{repo}/manifests/{reference}",
            registry.url()
        ))
        .header("Accept", MANIFEST_TYPES.join(", "))
        .send()
        .await
        .expect("HEAD manifest");
    if !response.status().is_success() {
        return None;
    }
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn staging_release(registry: &Service, digest: &str) -> Release {
    Release {
        number: 4,
        environment: "staging".to_owned(),
        image: ImageRef {
            reference: format!("{}/kaapi-staging-repo@{digest}", registry.host()),
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

#[tokio::test]
async fn promotion_within_a_registry_keeps_the_digest_and_mounts_the_blobs() {
    let registry = registry();
    let mut cleanup = LocalImages(Vec::new());
    let digest = push_image(
        &registry,
        "kaapi-staging-repo",
        "0123456789ab",
        &mut cleanup,
    );
    assert_eq!(head_digest(&registry, "kaapi-repo", "v1.2.3").await, None);

    let client = RegistryClient::new().expect("client");
    let target = Repository::new(&registry.host(), "kaapi-repo", None);
    let promoted = promote_image(
        &client,
        &staging_release(&registry, &digest),
        Some(&target),
        None,
    )
    .await
    .expect("promote");

    assert_eq!(
        promoted.reference,
        format!("{}/kaapi-repo@{digest}", registry.host())
    );
    let copy = promoted.copy.expect("something was copied");
    assert_eq!(
        (copy.mounted, copy.uploaded, copy.present),
        (2, 0, 0),
        "config and layer mounted"
    );
    for reference in ["v1.2.3", "0123456789ab", digest.as_str()] {
        assert_eq!(
            head_digest(&registry, "kaapi-repo", reference)
                .await
                .as_deref(),
            Some(digest.as_str()),
            "kaapi-repo:{reference}"
        );
    }
    // The Docker CLI itself can pull the promoted reference.
    let pulled = format!("{}/kaapi-repo@{digest}", registry.host());
    cleanup.0.push(pulled.clone());
    docker(&["pull", "-q", &pulled]);
}

#[tokio::test]
async fn promotion_across_registries_uploads_the_blobs_and_keeps_the_digest() {
    let staging = registry();
    let production = registry();
    let mut cleanup = LocalImages(Vec::new());
    let digest = push_image(&staging, "kaapi-staging-repo", "0123456789ab", &mut cleanup);
    let config_text = format!(
        r#"
app = "kaapi"
[image]
context = "."
[services.backend]
port = 8000
[environments.staging]
engine = "docker"
registry = "{}"
trigger = {{ branch = "main" }}
[environments.production]
engine = "docker"
registry = "{}"
trigger = {{ tags = "v*" }}
promote_from = "staging"
"#,
        staging.host(),
        production.host()
    );
    let config = parse(Path::new("deploy.toml"), &config_text)
        .expect("valid config")
        .0;

    // `ci` on tag v1.2.3 looks for staging's successful release of the same commit.
    let staging_engine = FakeEngine::new("staging", Script::default());
    staging_engine.releases.lock().expect("releases").extend([
        {
            let mut failed = staging_release(&staging, "sha256:00");
            failed.number = 5;
            failed.outcome = Outcome::RolledBack;
            failed
        },
        staging_release(&staging, &digest),
    ]);
    let release = release_for_commit(&staging_engine, "0123456789abcdef0123456789abcdef01234567")
        .await
        .expect("releases")
        .expect("staging built this commit");
    assert_eq!(
        release.number, 4,
        "the rolled-back release 5 is never promoted"
    );

    let promoted = promote_release_to(&config, "production", &release, &Default::default())
        .await
        .expect("promote");

    assert_eq!(
        promoted.reference,
        format!("{}/kaapi-repo@{digest}", production.host())
    );
    let copy = promoted.copy.expect("copied");
    assert_eq!((copy.mounted, copy.uploaded), (0, 2));
    assert_eq!(
        head_digest(&production, "kaapi-repo", "v1.2.3")
            .await
            .as_deref(),
        Some(digest.as_str())
    );

    // A second promotion finds every blob already there.
    let again = promote_release_to(&config, "production", &release, &Default::default())
        .await
        .expect("promote again");
    assert_eq!(again.copy.map(|c| (c.present, c.uploaded)), Some((2, 0)));
}

#[tokio::test]
async fn promoting_a_digest_the_registry_lacks_fails_clearly() {
    let registry = registry();
    let missing = format!("sha256:{}", "f".repeat(64));
    let client = RegistryClient::new().expect("client");
    let target = Repository::new(&registry.host(), "kaapi-repo", None);
    let error = promote_image(
        &client,
        &staging_release(&registry, &missing),
        Some(&target),
        None,
    )
    .await
    .expect_err("nothing to copy");
    let message = error.to_string();
    assert!(message.contains("404"), "{message}");
    assert!(message.contains(&missing), "{message}");
}

fn two_registry_config(staging: &Service, production: &Service) -> kaapi_core::config::Config {
    let text = format!(
        r#"
app = "kaapi"
[image]
context = "."
[services.backend]
port = 8000
[environments.staging]
engine = "docker"
registry = "{}"
trigger = {{ branch = "main" }}
[environments.production]
engine = "docker"
registry = "{}"
trigger = {{ tags = "v*" }}
promote_from = "staging"
"#,
        staging.host(),
        production.host()
    );
    parse(Path::new("deploy.toml"), &text)
        .expect("valid config")
        .0
}

#[tokio::test]
async fn a_version_tag_deploys_the_image_staging_built_for_the_same_commit() {
    let staging = registry();
    let production = registry();
    let mut cleanup = LocalImages(Vec::new());
    let digest = push_image(&staging, "kaapi-staging-repo", "0123456789ab", &mut cleanup);
    let config = two_registry_config(&staging, &production);
    let staging_engine = FakeEngine::new("staging", Script::default());
    staging_engine
        .releases
        .lock()
        .expect("releases")
        .push(staging_release(&staging, &digest));
    let out = tempfile::tempdir().expect("outputs dir");
    let vars: Vars = [
        ("GITHUB_REF", "refs/tags/v1.2.3".to_owned()),
        (
            "GITHUB_SHA",
            "0123456789abcdef0123456789abcdef01234567".to_owned(),
        ),
        ("GITHUB_ACTOR", "alice".to_owned()),
        (
            "GITHUB_OUTPUT",
            out.path().join("output").display().to_string(),
        ),
        (
            "GITHUB_STEP_SUMMARY",
            out.path().join("summary.md").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let ctx = GithubContext::from_vars(&vars).expect("context");

    let CiDecision::Deploy {
        environment,
        version,
    } = decide(&config, &ctx.git_ref)
    else {
        panic!("a release tag deploys");
    };
    assert_eq!(
        (environment.as_str(), version.as_deref()),
        ("production", Some("v1.2.3"))
    );
    let from = promotion_source(&config, &environment, true, false).expect("production promotes");
    assert_eq!(from, "staging");
    let (choice, _) = promoted_choice(
        &config,
        &environment,
        &from,
        &staging_engine,
        &ctx.sha,
        &vars,
    )
    .await
    .expect("promote staging's image");
    let production_engine = FakeEngine::new(
        "production",
        Script {
            rollouts: VecDeque::from([RolloutOutcome::Completed]),
            verify: Some(Ok(())),
            ..Script::default()
        },
    );
    let plan = CiPlan {
        plan: DeployPlan {
            image: choice.source.clone(),
            meta: ReleaseMeta {
                commit: ctx.short_sha(),
                version,
                author: ctx.actor.clone(),
                created_at: chrono::Utc::now(),
            },
            owner: LockOwner {
                holder: "ci".to_owned(),
                url: None,
            },
            migrations: None,
            force: false,
            services: Vec::new(),
        },
        image_origin: choice.origin.clone(),
    };

    let outcome = run_ci(
        &production_engine,
        &plan,
        &ctx,
        &Silent,
        std::future::pending(),
    )
    .await;

    assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    let production_reference = format!("{}/kaapi-repo@{digest}", production.host());
    assert_eq!(
        production_engine.calls()[1],
        format!("prepare_image Existing({production_reference:?}) 0123456789ab"),
        "no build: the promoted reference is deployed"
    );
    assert_eq!(
        head_digest(&production, "kaapi-repo", "v1.2.3")
            .await
            .as_deref(),
        Some(digest.as_str()),
        "the production tag resolves to exactly the staging digest"
    );
    let outputs = std::fs::read_to_string(out.path().join("output")).expect("outputs");
    assert!(
        outputs.lines().any(|l| l == format!("image={digest}")),
        "{outputs}"
    );
    let summary = std::fs::read_to_string(out.path().join("summary.md")).expect("summary");
    assert!(
        summary.contains(
            "| Image source | promoted from `staging` release 4 (same commit, same digest) |"
        ),
        "{summary}"
    );

    // --rebuild builds instead, and says so.
    assert_eq!(promotion_source(&config, "production", true, true), None);
    let rebuilt = build_choice(&config, "production", true, true);
    assert_eq!(rebuilt.source, ImageSource::Build);
    assert_eq!(rebuilt.origin, "rebuilt from this commit (--rebuild)");
}

#[tokio::test]
async fn a_tag_of_a_commit_staging_never_deployed_is_not_promoted() {
    let staging = registry();
    let production = registry();
    let config = two_registry_config(&staging, &production);
    let staging_engine = FakeEngine::new("staging", Script::default());
    staging_engine
        .releases
        .lock()
        .expect("releases")
        .push(staging_release(
            &staging,
            &format!("sha256:{}", "a".repeat(64)),
        ));

    let error = promoted_choice(
        &config,
        "production",
        "staging",
        &staging_engine,
        "fedcba9876543210fedcba9876543210fedcba98",
        &Vars::new(),
    )
    .await
    .expect_err("staging never deployed that commit");

    let message = error.to_string();
    assert!(message.contains("fedcba987654"), "{message}");
    assert!(message.contains("--rebuild"), "{message}");
}

// ECR targets, against moto: an ECS environment promotes into its account's ECR repository.

#[tokio::test]
async fn an_ecs_environment_promotes_into_its_ecr_repository() {
    let moto = kaapi_testkit::moto();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(moto.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let config = parse(
        Path::new("deploy.toml"),
        r#"
app = "kaapi"
[image]
context = "."
[services.backend]
port = 8000
[environments.production]
engine = "ecs"
region = "eu-west-1"
"#,
    )
    .expect("valid config")
    .0;

    let repository = target_repository(&config, "production", Some(&sdk))
        .await
        .expect("ECR login")
        .expect("an ECS environment always has a repository");

    assert_eq!(repository.name, "kaapi-repo");
    assert!(
        repository
            .host
            .ends_with(".dkr.ecr.eu-west-1.amazonaws.com")
            && !repository.host.contains("://"),
        "{}",
        repository.host
    );
    let auth = repository.auth.expect("basic credentials");
    assert_eq!(auth.username, "AWS");
    assert!(!auth.password.is_empty());
    assert!(
        !format!("{auth:?}").contains(&auth.password),
        "the password never shows in debug output"
    );
}

#[tokio::test]
async fn an_ecs_environment_without_aws_access_says_so() {
    let config = parse(
        Path::new("deploy.toml"),
        "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.backend]\nport = 8000\n[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\n",
    )
    .expect("valid config")
    .0;
    let error = target_repository(&config, "production", None)
        .await
        .expect_err("no AWS configuration");
    assert!(error.to_string().contains("needs AWS access"), "{error}");
}
