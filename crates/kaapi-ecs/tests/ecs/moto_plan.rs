//! `plan` on ECS against moto: what the live services run (their task definitions and desired
//! counts) against what a deploy would register, and a deploy of what already runs that
//! registers nothing.

use chrono::Utc;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{self, DeployPlan, PreviewPlan};
use kaapi_core::plan::{diff, ChangeKind};
use kaapi_core::release::ReleaseMeta;
use kaapi_ecs::{AwsClients, EcsEngine, Target};

use crate::moto_contract::{prerequisites, tuning, CLUSTER, MANIFEST, REPO};
use crate::support::moto::Moto;
use crate::support::{write_config, Recorder};

fn meta() -> ReleaseMeta {
    ReleaseMeta {
        commit: "abc1234".to_owned(),
        version: None,
        author: "alice".to_owned(),
        created_at: Utc::now(),
    }
}

fn engine(dir: &std::path::Path, extra: &str, clients: &AwsClients) -> EcsEngine {
    let loaded = write_config(dir, extra);
    let target = Target::from(ResolvedEnvironment::resolve(loaded, "staging").expect("staging"));
    EcsEngine::with_clients(target, clients.clone(), tuning(), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_compares_live_task_definitions_with_the_next_revision() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let clients = AwsClients::from_sdk_config(moto.sdk_config().await);
    prerequisites(&moto, &clients).await;
    kaapi_testkit::moto::create_lock_table(&moto.sdk_config().await, "kaapi-staging-deploy-lock")
        .await;
    clients
        .ecr
        .put_image()
        .repository_name(REPO)
        .image_tag("abc1234")
        .image_manifest(MANIFEST)
        .send()
        .await
        .expect("put image");
    let engine = engine(dir.path(), "", &clients);
    let progress = Recorder::default();
    let preview_plan = PreviewPlan {
        image: ImageSource::Existing("abc1234".to_owned()),
        meta: meta(),
        migrations: None,
    };

    // The hand-made services run `:latest` with no variables: everything differs, by name.
    let preview = pipeline::preview(&engine, &preview_plan, &progress)
        .await
        .expect("preview");
    assert!(preview
        .image_before
        .as_deref()
        .is_some_and(|i| i.ends_with(":latest")));
    assert!(preview.image_after.starts_with("sha256:"), "{preview:?}");
    let lines: Vec<String> = preview.changes.iter().map(ToString::to_string).collect();
    for line in [
        "+ backend: variable PROJECT_NAME",
        "+ backend: variable ENVIRONMENT",
        "+ backend: secret SECRET_KEY",
        "+ worker: command: celery -A app.worker worker",
    ] {
        assert!(
            lines.iter().any(|l| l == line),
            "missing `{line}` in {lines:#?}"
        );
    }
    assert!(engine.releases().await.expect("releases").is_empty());

    // Register the release and point the services at it, as a completed rollout would.
    let image = engine
        .prepare_image(&preview_plan.image, &preview_plan.meta, &progress)
        .await
        .expect("image");
    let release = engine
        .register_release(&image, &meta(), None, &progress)
        .await
        .expect("register");
    for (service, ecs_name) in [
        ("backend", "kaapi-staging-service"),
        ("worker", "kaapi-staging-worker-service"),
        ("flower", "kaapi-staging-flower-service"),
    ] {
        clients
            .ecs
            .update_service()
            .cluster(CLUSTER)
            .service(ecs_name)
            .task_definition(&release.revision_of(service).expect("revision").revision)
            .send()
            .await
            .expect("update service");
    }
    engine
        .record(
            release.number,
            kaapi_core::release::Outcome::Succeeded,
            None,
        )
        .await
        .expect("record");

    // A fresh engine (no cached services) sees nothing to change …
    let engine = self::engine(dir.path(), "", &clients);
    let now = engine.running_services().await.expect("running");
    let next = engine.planned_services(&image).await.expect("planned");
    assert_eq!(now.len(), 3);
    assert_eq!(diff(&now, &next), Vec::new(), "{now:?}\n{next:?}");

    // … so a deploy of the same image registers nothing.
    let plan = DeployPlan {
        image: ImageSource::Existing("abc1234".to_owned()),
        meta: meta(),
        owner: LockOwner {
            holder: "alice@laptop".to_owned(),
            url: None,
        },
        migrations: None,
        force: false,
        services: Vec::new(),
    };
    let report = pipeline::deploy(&engine, &plan, &progress, std::future::pending())
        .await
        .expect("deploy");
    assert!(report.unchanged, "{report:?}");
    assert_eq!(report.release, Some(release.number));
    assert_eq!(engine.releases().await.expect("releases").len(), 1);

    // A config change shows alone: the worker's count.
    let engine = self::engine(dir.path(), "replicas = { worker = 2 }", &clients);
    let preview = pipeline::preview(&engine, &preview_plan, &progress)
        .await
        .expect("preview");
    let changes: Vec<(String, ChangeKind, String)> = preview
        .changes
        .iter()
        .map(|c| (c.service.clone(), c.kind, c.to_string()))
        .collect();
    assert_eq!(
        changes,
        [(
            "worker".to_owned(),
            ChangeKind::Changed,
            "~ worker: replicas: 1 -> 2".to_owned()
        )]
    );
}
