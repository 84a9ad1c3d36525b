//! Releases a deploy left unfinished, settled from what ECS runs: a deploy interrupted during
//! its rollout leaves its release `interrupted` while ECS goes on; `status` and the next deploy
//! record what ECS made of it, and leave it alone while another deploy holds the lock.

use std::time::Duration;

use kaapi_core::engine::{Engine, LockOwner};
use kaapi_core::pipeline;
use kaapi_core::release::{Outcome, Release};
use kaapi_ecs::EcsEngine;

use crate::scenarios::{deploy, fast_tuning, plan, setup, Setup};
use crate::support::fake_aws::Plan;
use crate::support::Recorder;

const SERVICES: [&str; 3] = [
    "kaapi-staging-service",
    "kaapi-staging-worker-service",
    "kaapi-staging-flower-service",
];

/// Release 1 succeeds; release 2's deploy is interrupted once ECS started every rollout, which
/// ECS then goes on with as `plans` say.
async fn interrupted_release_2(s: &Setup, plans: [Plan; 3]) {
    let first = deploy(&s.engine, "abc1234", &Recorder::default()).await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{}", first.message);
    for (service, plan) in SERVICES.iter().zip(plans) {
        s.fake.plan(service, plan);
    }
    s.fake.clear_calls();
    let fake = s.fake.clone();
    // Ctrl-C right after the last UpdateService: the rollouts are ECS's to finish.
    let ctrl_c = async move {
        while fake.count("ecs:UpdateService") < SERVICES.len() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let result = pipeline::deploy(&s.engine, &plan("def5678"), &Recorder::default(), ctrl_c).await;
    let error = result.expect_err("the deploy is interrupted");
    assert!(error.to_string().contains("interrupted"), "{error}");
    assert_eq!(release(&s.engine, 2).await.outcome, Outcome::Interrupted);
}

async fn release(engine: &EcsEngine, number: u64) -> Release {
    engine
        .releases()
        .await
        .expect("releases")
        .into_iter()
        .find(|r| r.number == number)
        .expect("the release is recorded")
}

fn complete(ms: u64) -> Plan {
    Plan::Complete(Duration::from_millis(ms))
}

#[tokio::test]
async fn status_records_an_interrupted_release_ecs_finished_as_succeeded() {
    let s = setup(fast_tuning(), "");
    interrupted_release_2(&s, [complete(300), complete(200), complete(200)]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.engine.status().await.expect("status");
    let settled = release(&s.engine, 2).await;
    assert_eq!(settled.outcome, Outcome::Succeeded);
    let detail = settled.detail.unwrap_or_default();
    assert!(
        detail.contains("ECS finished rolling out every service"),
        "{detail}"
    );
    // Settled once: the next look changes nothing more.
    s.fake.clear_calls();
    s.engine.status().await.expect("status");
    assert_eq!(s.fake.count("ecs:TagResource"), 0, "{:?}", s.fake.calls());
}

#[tokio::test]
async fn status_records_a_circuit_breaker_rollback_as_rolled_back() {
    let s = setup(fast_tuning(), "");
    interrupted_release_2(
        &s,
        [
            Plan::CircuitBreaker(Duration::from_millis(200)),
            complete(100),
            complete(100),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.engine.status().await.expect("status");
    let settled = release(&s.engine, 2).await;
    assert_eq!(settled.outcome, Outcome::RolledBack);
    let detail = settled.detail.unwrap_or_default();
    assert!(
        detail.contains("ECS rolled back backend to kaapi-staging-backend:"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_release_is_left_alone_while_another_deploy_holds_the_lock() {
    let s = setup(fast_tuning(), "");
    interrupted_release_2(&s, [complete(300), complete(300), complete(300)]).await;
    // Another deploy takes the lock while ECS still rolls out: nothing to settle yet.
    let other = EcsEngine::with_clients(s.target.clone(), s.fake.clients(), fast_tuning(), None);
    let owner = LockOwner {
        holder: "bob@ci (pid 7)".to_owned(),
        url: None,
    };
    let progress = Recorder::default();
    let token = other
        .acquire_lock(&owner, &progress)
        .await
        .expect("free lock");
    assert!(
        !progress.contains("left unfinished"),
        "{:?}",
        progress.lines()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.engine.status().await.expect("status");
    assert_eq!(release(&s.engine, 2).await.outcome, Outcome::Interrupted);
    other.release_lock(&token).await.expect("release");
    // The next deploy settles it before its own release, and says so.
    let progress = Recorder::default();
    let next = deploy(&s.engine, "fed9876", &progress).await;
    assert_eq!(next.outcome, Outcome::Succeeded, "{}", next.message);
    assert!(
        progress.contains("warning: release 2 was left unfinished; recorded as succeeded"),
        "{:?}",
        progress.lines()
    );
    assert_eq!(release(&s.engine, 2).await.outcome, Outcome::Succeeded);
    assert_eq!(next.release, Some(3));
}
