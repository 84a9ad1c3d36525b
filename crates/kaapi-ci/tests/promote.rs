//! Build once, promote: an image pushed by the Docker CLI to a real local registry
//! (Debian's docker-registry) is copied to another repository, and to another registry, by
//! digest; the production reference then resolves to exactly the staging digest.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kaapi_ci::promote::{promote_image, promote_release_to, release_for_commit};
use kaapi_ci::registry::{RegistryClient, Repository, MANIFEST_TYPES};
use kaapi_core::config::parse;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta};
use support::fake_engine::{FakeEngine, Script};
use support::services::{registry, Service};

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
struct LocalImages(Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Builds a small FROM scratch image with unique content, pushes it as `repo:tag` and returns
/// the digest the push reported.
fn push_image(registry: &Service, repo: &str, tag: &str, cleanup: &mut LocalImages) -> String {
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
