//! `run --release N` on ECS: the one-off task runs release N's revision of the service, not
//! the serving release's (scripted AWS responses record every RunTask).

use kaapi_core::engine::{Engine, EngineError, TaskOn};
use kaapi_core::release::Outcome;
use kaapi_ecs::EcsEngine;

use crate::scenarios::{deploy, fast_tuning, setup};
use crate::support::Recorder;

#[tokio::test]
async fn a_task_on_an_older_release_runs_that_releases_revision() {
    let s = setup(fast_tuning(), "");
    for commit in ["aaa1111", "bbb2222"] {
        let report = deploy(&s.engine, commit, &Recorder::default()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    let releases = s.engine.releases().await.expect("releases");
    let revision_of = |number: u64| {
        releases
            .iter()
            .find(|r| r.number == number)
            .and_then(|r| r.revision_of("backend"))
            .map(|r| r.revision.clone())
            .unwrap_or_else(|| panic!("release {number} has a backend revision: {releases:?}"))
    };
    let (first, serving) = (revision_of(1), revision_of(2));
    assert_ne!(first, serving);
    let release_1 = releases.iter().find(|r| r.number == 1).expect("release 1");

    let before = s.fake.count("ecs:RunTask");
    let command = vec![
        "alembic".to_owned(),
        "downgrade".to_owned(),
        "0002".to_owned(),
    ];
    let exit = s
        .engine
        .run_task(
            TaskOn::Release(release_1),
            "backend",
            &command,
            &Recorder::default(),
        )
        .await
        .expect("the task runs");
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    let run: Vec<String> = s
        .fake
        .calls()
        .iter()
        .filter_map(|c| c.strip_prefix("ecs:RunTask ").map(str::to_owned))
        .skip(before)
        .collect();
    assert_eq!(run, std::slice::from_ref(&first), "{:?}", s.fake.calls());

    // Pruned: release 1's revision is deregistered, and ECS runs no new task of it. A new
    // `run` (a fresh engine, as a new process has) says so without calling RunTask.
    s.engine
        .prune(0, false, &Recorder::default())
        .await
        .expect("prune");
    let fresh = EcsEngine::with_clients(s.target.clone(), s.fake.clients(), fast_tuning(), None);
    let before = s.fake.count("ecs:RunTask");
    let refused = fresh
        .run_task(
            TaskOn::Release(release_1),
            "backend",
            &command,
            &Recorder::default(),
        )
        .await;
    match refused {
        Err(EngineError::NotFound { message }) => {
            assert!(
                message.contains(&first) && message.contains("deregistered (pruned)"),
                "{message}"
            );
        }
        other => panic!("a pruned revision must be refused: {other:?}"),
    }
    assert_eq!(s.fake.count("ecs:RunTask"), before);
}
