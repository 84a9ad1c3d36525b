//! `prune` on ECS over scripted AWS responses: after three releases, `--keep 1` deregisters
//! release 1's revisions only; `--dry-run` changes nothing; the image all releases share stays.

use std::collections::HashSet;

use kaapi_core::engine::{Engine, LockOwner};
use kaapi_core::prune;
use kaapi_core::release::Outcome;

use crate::scenarios::{deploy, fast_tuning, setup};
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
