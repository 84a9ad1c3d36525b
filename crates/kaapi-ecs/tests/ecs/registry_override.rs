//! With the environment's `registry` set, images are looked up on that registry (here a real
//! Debian `docker-registry` on loopback) with `HEAD /v2/<repo>/manifests/<ref>`: an image it
//! holds resolves to its digest, one it does not hold is refused. No AWS call is needed for it.

use crate::support::fake_aws::FakeAws;
use crate::support::{write_config, Recorder};
use chrono::Utc;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, EngineError, ImageSource};
use kaapi_core::release::ReleaseMeta;
use kaapi_ecs::{EcsEngine, Target, Tuning};

/// sha256 of the two bytes `{}`: an empty image config.
const EMPTY_CONFIG: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Uploads an empty-config image as `repo:tag` through the distribution API; returns the
/// digest the registry reports for the manifest.
async fn upload(base: &str, repo: &str, tag: &str) -> String {
    let http = reqwest::Client::new();
    let started = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(started.status(), 202);
    let location = started
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload location")
        .to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{location}{separator}digest={EMPTY_CONFIG}"))
        .header("content-type", "application/octet-stream")
        .body("{}")
        .send()
        .await
        .expect("put blob");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"{EMPTY_CONFIG}"}},"layers":[]}}"#
    );
    let put = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(manifest)
        .send()
        .await
        .expect("put manifest");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    put.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .expect("manifest digest")
        .to_owned()
}

#[tokio::test]
async fn images_are_resolved_and_refused_on_the_overriding_registry() {
    let registry = kaapi_testkit::registry();
    let host = format!("127.0.0.1:{}", registry.port);
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), &format!("registry = \"{host}\""));
    // Scripted AWS, only to check below that ECR is never asked.
    let fake = FakeAws::kaapi_staging();
    let engine = EcsEngine::with_clients(
        Target::from(ResolvedEnvironment::resolve(loaded.clone(), "staging").expect("staging")),
        fake.clients(),
        Tuning::default(),
        None,
    );
    let digest = upload(&format!("http://{host}"), "kaapi-staging-repo", "abc1234").await;
    let meta = ReleaseMeta {
        commit: "abc1234".to_owned(),
        version: None,
        author: "alice".to_owned(),
        created_at: Utc::now(),
    };
    let progress = Recorder::default();
    let image = engine
        .prepare_image(
            &ImageSource::Existing("abc1234".to_owned()),
            &meta,
            &progress,
        )
        .await
        .expect("the tag resolves");
    assert_eq!(image.digest, digest);
    assert_eq!(
        image.reference,
        format!("{host}/kaapi-staging-repo@{digest}")
    );
    let by_digest = engine
        .prepare_image(&ImageSource::Existing(digest.clone()), &meta, &progress)
        .await
        .expect("the digest resolves");
    assert_eq!(by_digest.digest, digest);
    let missing = engine
        .prepare_image(
            &ImageSource::Existing("nosuchtag".to_owned()),
            &meta,
            &progress,
        )
        .await
        .expect_err("refused");
    assert!(matches!(missing, EngineError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains(&host), "{missing}");
    assert_eq!(
        fake.count("ecr:"),
        0,
        "no ECR call with an overriding registry"
    );
    drop(registry);
}
