//! How many AWS calls the paths that run all the time make, counted on the wire by the request
//! recorder over scripted responses: `status` (the dashboard polls it every 15 s) when no
//! release is unfinished, the dashboard's read of the release history, and a standard deploy
//! (three services, migrations). The counts are asserted per operation, so a call that comes
//! back fails here.

use std::collections::BTreeMap;

use kaapi_core::engine::Engine;
use kaapi_core::release::Outcome;
use kaapi_core::release_history::KnownReleases;
use kaapi_ecs::EcsEngine;
use kaapi_testkit::aws_record::{Call, Recorder as Wire};

use crate::scenarios::{deploy, fast_tuning, setup, Setup};
use crate::support::Recorder;

/// Calls per `service:Operation`.
fn per_operation(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in calls {
        *counts
            .entry(format!("{}:{}", call.service, call.operation))
            .or_insert(0) += 1;
    }
    counts
}

fn expected(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// A fresh engine over the same fake, each request recorded: a new `kaapi-deploy` process,
/// nothing cached.
pub(crate) fn recorded_engine(s: &Setup, wire: &Wire) -> EcsEngine {
    EcsEngine::with_clients(
        s.target.clone(),
        s.fake.recorded_clients(wire),
        fast_tuning(),
        Some(s.builder.clone()),
    )
}

async fn first_release(s: &Setup) {
    let report = deploy(&s.engine, "abc1234", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
}

#[tokio::test]
async fn status_without_an_unfinished_release_reads_neither_the_lock_nor_the_tags_apart() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    let wire = Wire::new();
    let engine = recorded_engine(&s, &wire);
    // What `kaapi-deploy status` asks: the status, then the scaling events it prints.
    let report = engine.status().await.expect("status");
    assert_eq!(report.services.len(), 3);
    engine.scaling_events().await.expect("scaling events");
    let counts = per_operation(&wire.calls());
    // 13 before: the lock was read (dynamodb:GetItem) although nothing was unfinished, and the
    // scaling events took one ecs:ListTagsForResource per service.
    assert_eq!(
        counts,
        expected(&[
            // The history read that finds nothing unfinished; the newest release's revision
            // it describes is the web service's, which the status needs anyway (cached).
            ("ecs:ListTaskDefinitions", 1),
            ("ecs:DescribeTaskDefinition", 3),
            // With the services' tags: the scaling events come with it.
            ("ecs:DescribeServices", 1),
            ("ecs:ListTasks", 3),
            ("monitoring:GetMetricData", 1),
        ]),
        "{:#?}",
        wire.calls()
    );
    assert_eq!(wire.calls().len(), 9);
}

#[tokio::test]
async fn the_dashboard_reads_finished_releases_once() {
    let s = setup(fast_tuning(), "");
    for commit in ["aaa1111", "bbb2222", "ccc3333"] {
        let report = deploy(&s.engine, commit, &Recorder::default()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    let wire = Wire::new();
    let engine = recorded_engine(&s, &wire);
    let mut known = KnownReleases::default();
    // The first poll reads the whole history, which every poll did before: every listed
    // revision described (50 at most), one per release and the service's first revision,
    // which no release made.
    let first = known.refresh(&engine).await.expect("first read").len();
    assert_eq!(first, 3);
    let full = wire.calls();
    assert_eq!(
        per_operation(&full),
        expected(&[
            ("ecs:ListTaskDefinitions", 1),
            ("ecs:DescribeTaskDefinition", 4)
        ]),
        "{full:#?}"
    );
    // The next poll, with nothing new: the listing shows no new revision, and every release
    // it has is finished.
    let numbers: Vec<u64> = known
        .refresh(&engine)
        .await
        .expect("second read")
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(numbers, vec![3, 2, 1]);
    let second = &wire.calls()[full.len()..];
    assert_eq!(
        per_operation(second),
        expected(&[("ecs:ListTaskDefinitions", 1)]),
        "{second:#?}"
    );
}

#[tokio::test]
async fn before_the_first_release_the_dashboard_describes_a_revision_no_release_made_once() {
    let s = setup(fast_tuning(), "");
    let wire = Wire::new();
    let engine = recorded_engine(&s, &wire);
    let mut known = KnownReleases::default();
    assert!(known.refresh(&engine).await.expect("first read").is_empty());
    assert!(known
        .refresh(&engine)
        .await
        .expect("second read")
        .is_empty());
    // The service's first revision, registered before kaapi, is described by the first read
    // only: a revision carries its release tags from its registration or never.
    assert_eq!(
        per_operation(&wire.calls()),
        expected(&[
            ("ecs:ListTaskDefinitions", 2),
            ("ecs:DescribeTaskDefinition", 1)
        ]),
        "{:#?}",
        wire.calls()
    );
}

#[tokio::test]
async fn a_deploy_reads_the_scaling_events_with_the_services_it_describes() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    let wire = Wire::new();
    let engine = recorded_engine(&s, &wire);
    let report = deploy(&engine, "def5678", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let mut counts = per_operation(&wire.calls());
    // Polls depend on how long the scripted rollouts and the migration task take.
    let polls = counts.remove("ecs:DescribeServices").unwrap_or(0);
    let task_polls = counts.remove("ecs:DescribeTasks").unwrap_or(0);
    assert!(polls >= 2 && task_polls >= 1, "{polls} {task_polls}");
    // 29 calls before: three ecs:ListTagsForResource (one per service, for the scaling events)
    // and a second history read.
    assert_eq!(
        counts,
        expected(&[
            ("dynamodb:PutItem", 1),
            ("dynamodb:DeleteItem", 1),
            // One history read under the lock: nothing to settle, and the current release
            // (each was read on its own before, one call of each more).
            ("ecs:ListTaskDefinitions", 1),
            ("ecs:DescribeTaskDefinition", 3),
            ("ecr:GetAuthorizationToken", 1),
            ("ecr:DescribeImages", 2),
            ("logs:DescribeLogGroups", 1),
            ("ecs:RegisterTaskDefinition", 3),
            ("ecs:RunTask", 1),
            ("logs:FilterLogEvents", 1),
            ("ecs:UpdateService", 3),
            ("ecs:TagResource", 1),
        ]),
        "{:#?}",
        wire.calls()
    );
}
