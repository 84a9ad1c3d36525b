//! `scale` and `deploy --service` on ECS over scripted AWS responses: scaling sends
//! `UpdateService` with a desired count only (no new revision, no release), its event reads back
//! from the ECS service's tag, the next deploy keeps the scaled count until deploy.toml changes
//! it, and `deploy --service` updates only the named services.

use std::sync::Arc;

use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, LockOwner};
use kaapi_core::pipeline;
use kaapi_core::release::Outcome;
use kaapi_core::scaling::{parse_requests, ScalingEvent};
use kaapi_ecs::{EcsEngine, Target};

use crate::scenarios::{deploy, fast_tuning, plan, setup, Setup};
use crate::support::fake_aws::{FakeAws, DIGEST};
use crate::support::{write_config, Recorder, ScriptedBuilder};

const WORKER: &str = "kaapi-staging-worker-service";

fn owner() -> LockOwner {
    LockOwner {
        holder: "bob <bob@example.org>".to_owned(),
        url: None,
    }
}

async fn scale(engine: &EcsEngine, target: &Target, counts: &[&str]) -> Vec<ScalingEvent> {
    let counts: Vec<String> = counts.iter().map(|c| (*c).to_owned()).collect();
    let requests = parse_requests(target.resolved(), &counts).expect("valid requests");
    pipeline::scale(
        engine,
        &requests,
        &owner(),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect("scale")
}

/// The desired count the last UpdateService that named a task definition sent to `service`.
fn deployed_count(fake: &FakeAws, service: &str) -> Option<i32> {
    fake.state()
        .updates
        .iter()
        .rev()
        .find(|(name, td, _)| name == service && td.is_some())
        .and_then(|(_, _, desired)| *desired)
}

async fn first_release(s: &Setup) {
    let report = deploy(&s.engine, "aaa1111", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    s.fake.clear_calls();
    s.fake.state().updates.clear();
}

#[tokio::test]
async fn scale_sets_the_desired_count_only_and_the_next_deploy_keeps_it() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;

    let events = scale(&s.engine, &s.target, &["worker=3"]).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.release, event.service.as_str(), event.from, event.to),
        (1, "worker", 1, 3)
    );
    assert_eq!(event.config_replicas, 1);
    assert_eq!(
        s.fake.state().updates,
        vec![(WORKER.to_owned(), None, Some(3))],
        "one UpdateService with a desired count only"
    );
    assert_eq!(s.fake.count("ecs:RegisterTaskDefinition"), 0);
    assert!(!s.fake.lock_held(), "the deploy lock is released");
    assert_eq!(s.engine.releases().await.expect("releases").len(), 1);

    let recorded = s.engine.scaling_events().await.expect("scaling events");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let back = &recorded[0];
    assert_eq!(
        (back.release, back.service.as_str(), back.from, back.to),
        (1, "worker", 1, 3)
    );
    assert_eq!(back.config_replicas, 1);
    assert_eq!(back.author, "bob _bob@example.org_");
    assert_eq!(back.at.timestamp(), event.at.timestamp());

    let progress = Recorder::default();
    let report = deploy(&s.engine, "bbb2222", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(
        deployed_count(&s.fake, WORKER),
        Some(3),
        "the scaled count is kept"
    );
    assert_eq!(
        deployed_count(&s.fake, "kaapi-staging-service"),
        Some(1),
        "an unscaled service gets deploy.toml's count"
    );
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.contains("worker: keeps its scaled count 3")),
        "{:?}",
        progress.lines()
    );
}

#[tokio::test]
async fn a_deploy_takes_the_configs_count_once_deploy_toml_changed_it() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    scale(&s.engine, &s.target, &["worker=3"]).await;

    // The same environment, its deploy.toml now saying 2 workers.
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "replicas = { worker = 2 }");
    let target = ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
    let engine = EcsEngine::with_clients(
        Target::from(target),
        s.fake.clients(),
        fast_tuning(),
        Some(Arc::new(ScriptedBuilder::pushing_to(DIGEST, &s.fake))),
    );
    let progress = Recorder::default();
    let report = deploy(&engine, "bbb2222", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(deployed_count(&s.fake, WORKER), Some(2), "the config wins");
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.starts_with("warning: worker: deploy.toml changed its replicas from 1 to 2")),
        "{:?}",
        progress.lines()
    );
}

#[tokio::test]
async fn deploy_service_updates_only_the_named_service() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    let first = s
        .engine
        .current_release()
        .await
        .expect("releases")
        .expect("release 1");
    let live_backend = s.fake.live_revision("kaapi-staging-service");

    let mut only_worker = plan("bbb2222");
    only_worker.services = vec!["worker".to_owned()];
    let report = pipeline::deploy(
        &s.engine,
        &only_worker,
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect("the deploy runs to an outcome");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);

    let updated: Vec<String> = s
        .fake
        .state()
        .updates
        .iter()
        .map(|(name, _, _)| name.clone())
        .collect();
    assert_eq!(updated, vec![WORKER.to_owned()], "only the worker rolls");
    assert_eq!(
        s.fake.live_revision("kaapi-staging-service"),
        live_backend,
        "the web service still runs its revision"
    );

    let second = s
        .engine
        .current_release()
        .await
        .expect("releases")
        .expect("release 2");
    assert_eq!(second.number, 2);
    let revision = |release: &kaapi_core::release::Release, service: &str| {
        release
            .revision_of(service)
            .map(|r| r.revision.clone())
            .expect("a revision of each service")
    };
    assert_ne!(revision(&second, "worker"), revision(&first, "worker"));
    assert_eq!(
        s.fake.live_revision(WORKER),
        Some(revision(&second, "worker"))
    );
    assert_eq!(
        revision(&second, "flower"),
        revision(&first, "flower"),
        "the release records the revision flower keeps"
    );
    // Registered: the worker's revision; a copy of the web service's, which carries the release
    // record and is not rolled; the migrations' one-off revision of the new image. No flower.
    let calls = s.fake.calls();
    let registered: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.strip_prefix("ecs:RegisterTaskDefinition "))
        .collect();
    assert_eq!(
        registered,
        vec![
            "kaapi-staging-worker",
            "kaapi-staging-backend",
            "kaapi-staging-backend"
        ],
        "{calls:?}"
    );
}
