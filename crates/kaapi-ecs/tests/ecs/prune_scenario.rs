//! `prune` on ECS over scripted AWS responses: after three releases, `--keep 1` deregisters
//! release 1's revisions only; `--dry-run` changes nothing; the image all releases share stays.
//! With `retention`, a deploy prunes after its rollout succeeded, never after a failed one.

use std::collections::HashSet;
use std::time::Duration;

use kaapi_core::engine::{Engine, LockOwner};
use kaapi_core::prune;
use kaapi_core::release::Outcome;

use crate::scenarios::{deploy, fast_tuning, setup};
use crate::support::fake_aws::Plan;
use crate::support::Recorder;

fn owner() -> LockOwner {
    LockOwner {
        holder: "prune test".to_owned(),
        url: None,
    }
}

#[tokio::test]
async fn prune_keeps_the_current_and_previous_releases_revisions() {
    let s = setup(fast_tuning(), "");
    let progress = Recorder::default();
    let mut revisions = Vec::new();
    for commit in ["aaa1111", "bbb2222", "ccc3333"] {
        let report = deploy(&s.engine, commit, &progress).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    for release in s.engine.releases().await.expect("releases") {
        revisions.push((release.number, release.revisions.clone()));
    }
    revisions.sort_by_key(|(n, _)| *n);
    assert_eq!(revisions.len(), 3);
    let first: HashSet<String> = revisions[0].1.iter().map(|r| r.revision.clone()).collect();

    s.fake.clear_calls();
    let listed = prune::run(&s.engine, &owner(), 1, true, &progress)
        .await
        .expect("dry run");
    assert_eq!(listed.kept_releases, vec![3, 2]);
    let listed_arns: HashSet<String> = listed.removed.iter().map(|p| p.id.clone()).collect();
    assert_eq!(listed_arns, first, "{listed:?}");
    assert_eq!(
        s.fake.count("ecs:DeregisterTaskDefinition"),
        0,
        "a dry run changes nothing"
    );

    let report = prune::run(&s.engine, &owner(), 1, false, &progress)
        .await
        .expect("prune");
    assert_eq!(report.removed, listed.removed);
    let deregistered: HashSet<String> = s
        .fake
        .calls()
        .iter()
        .filter_map(|c| c.strip_prefix("ecs:DeregisterTaskDefinition "))
        .map(str::to_owned)
        .collect();
    assert_eq!(deregistered, first);
    assert_eq!(
        s.fake.count("ecr:BatchDeleteImage"),
        0,
        "every release shares the one image the current release runs"
    );
    assert!(!s.fake.lock_held(), "the deploy lock is released");

    let left: Vec<u64> = s
        .engine
        .releases()
        .await
        .expect("releases")
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(left, vec![3, 2], "release 1's revisions are gone");
}

/// The task-definition ARNs of each release, by number.
async fn revisions_of(engine: &kaapi_ecs::EcsEngine, numbers: &[u64]) -> HashSet<String> {
    engine
        .releases()
        .await
        .expect("releases")
        .iter()
        .filter(|r| numbers.contains(&r.number))
        .flat_map(|r| r.revisions.iter().map(|v| v.revision.clone()))
        .collect()
}

#[tokio::test]
async fn deploys_prune_beyond_retention_after_a_successful_rollout_only() {
    let s = setup(fast_tuning(), "retention = { keep = 1 }");
    let progress = Recorder::default();
    for commit in ["aaa1111", "bbb2222"] {
        let report = deploy(&s.engine, commit, &progress).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
        let pruned = report.pruned.expect("a successful deploy prunes");
        assert!(pruned.removed.is_empty(), "{pruned:?}");
    }

    // Release 3 fails (ECS's circuit breaker rolls back): nothing is pruned, not even its own
    // revisions, which a prune would remove (it is neither current nor successful).
    s.fake.plan(
        "kaapi-staging-service",
        Plan::CircuitBreaker(Duration::from_millis(40)),
    );
    s.fake.clear_calls();
    let failed = deploy(&s.engine, "bad3333", &progress).await;
    assert_eq!(failed.outcome, Outcome::RolledBack, "{}", failed.message);
    assert_eq!(failed.pruned, None);
    assert_eq!(s.fake.count("ecs:DeregisterTaskDefinition"), 0);
    let stale = revisions_of(&s.engine, &[1, 3]).await;
    assert_eq!(stale.len(), 6, "three services, two releases: {stale:?}");

    // Release 4 succeeds: releases 4 and 2 stay; 1 and 3 go, after the rollout.
    s.fake.clear_calls();
    let report = deploy(&s.engine, "ccc4444", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let pruned = report.pruned.expect("a successful deploy prunes");
    assert_eq!(pruned.kept_releases, vec![4, 2]);
    let calls = s.fake.calls();
    let deregistered: HashSet<String> = calls
        .iter()
        .filter_map(|c| c.strip_prefix("ecs:DeregisterTaskDefinition "))
        .map(str::to_owned)
        .collect();
    // The backend service still lists its failed deployment of release 3, and a prune never
    // deregisters a revision a service lists: every other revision of releases 1 and 3 goes.
    let failed_backend: String = s
        .engine
        .releases()
        .await
        .expect("releases")
        .iter()
        .find(|r| r.number == 3)
        .and_then(|r| r.revisions.iter().find(|v| v.service == "backend"))
        .map(|v| v.revision.clone())
        .expect("release 3 has a backend revision");
    let expected: HashSet<String> = stale
        .iter()
        .filter(|arn| **arn != failed_backend)
        .cloned()
        .collect();
    assert_eq!(deregistered, expected);
    let last_update = calls
        .iter()
        .rposition(|c| c.starts_with("ecs:UpdateService"))
        .expect("the deploy rolled out");
    let first_deregister = calls
        .iter()
        .position(|c| c.starts_with("ecs:DeregisterTaskDefinition"))
        .expect("the deploy pruned");
    assert!(
        last_update < first_deregister,
        "prune runs after the rollout: {calls:#?}"
    );
    assert!(!s.fake.lock_held(), "the deploy lock is released");
}
