//! The dashboard's copy of the release history over scripted AWS responses, read only by what
//! can have changed: a deploy run elsewhere (CI, another engine) appears, a release read in
//! progress shows its outcome once it ends, and the releases a prune deregisters leave the copy
//! at the next read.

use chrono::Utc;
use kaapi_core::engine::{Engine, LockOwner};
use kaapi_core::prune;
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_core::release_history::KnownReleases;
use kaapi_testkit::aws_record::Recorder as Wire;

use crate::call_counts::recorded_engine;
use crate::scenarios::{deploy, fast_tuning, setup};
use crate::support::Recorder;

fn owner() -> LockOwner {
    LockOwner {
        holder: "ci run 7".to_owned(),
        url: None,
    }
}

async fn read(known: &mut KnownReleases, engine: &dyn Engine) -> Vec<(u64, Outcome)> {
    known
        .refresh(engine)
        .await
        .expect("history read")
        .iter()
        .map(|r| (r.number, r.outcome))
        .collect()
}

#[tokio::test]
async fn new_releases_outcomes_and_pruned_releases_reach_the_dashboard() {
    let s = setup(fast_tuning(), "");
    let progress = Recorder::default();
    let report = deploy(&s.engine, "aaa1111", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let wire = Wire::new();
    let dashboard = recorded_engine(&s, &wire);
    let mut known = KnownReleases::default();
    assert_eq!(
        read(&mut known, &dashboard).await,
        vec![(1, Outcome::Succeeded)]
    );

    // CI registers release 2: the dashboard sees it in progress.
    let image = known.releases()[0].image.clone();
    let meta = ReleaseMeta {
        commit: "bbb2222".to_owned(),
        version: None,
        author: "ci".to_owned(),
        created_at: Utc::now(),
    };
    let token = s
        .engine
        .acquire_lock(&owner(), &progress)
        .await
        .expect("lock");
    let registered = s
        .engine
        .register_release(&image, &meta, None, &progress)
        .await
        .expect("register release 2");
    assert_eq!(registered.number, 2);
    assert_eq!(
        read(&mut known, &dashboard).await,
        vec![(2, Outcome::InProgress), (1, Outcome::Succeeded)]
    );

    // It ends: the next read describes release 2 again, and only it.
    s.engine
        .record(2, Outcome::RolledBack, Some("verification failed"))
        .await
        .expect("record");
    s.engine.release_lock(&token).await.expect("unlock");
    let before = wire.calls().len();
    assert_eq!(
        read(&mut known, &dashboard).await,
        vec![(2, Outcome::RolledBack), (1, Outcome::Succeeded)]
    );
    let calls: Vec<String> = wire.calls()[before..]
        .iter()
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    assert_eq!(
        calls,
        vec!["ecs:ListTaskDefinitions", "ecs:DescribeTaskDefinition"],
        "one listing, and release 2 read again"
    );
    assert_eq!(
        known.releases()[0].detail.as_deref(),
        Some("verification failed")
    );

    // Release 3, then a prune keeping one earlier release: release 1's revisions are
    // deregistered, and release 1 leaves the dashboard at the next read, not minutes later.
    let report = deploy(&s.engine, "ccc3333", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let pruned = prune::run(&s.engine, &owner(), 1, false, &progress)
        .await
        .expect("prune");
    assert!(
        pruned.kept_releases.len() < 3 && !pruned.removed.is_empty(),
        "{pruned:?}"
    );
    let numbers: Vec<u64> = read(&mut known, &dashboard)
        .await
        .iter()
        .map(|(number, _)| *number)
        .collect();
    assert_eq!(numbers, pruned.kept_releases, "no pruned release stays");
}
