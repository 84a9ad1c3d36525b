//! The pipeline's rules, proven over a scripted in-memory engine: the order of steps, what a
//! failure at each step changes, and that the lock is released on every path.

use std::collections::VecDeque;

use chrono::Utc;
use kaapi_core::engine::{Engine, EngineResult, ImageSource, LockOwner, RolloutOutcome, TaskExit};
use kaapi_core::pipeline::{self, DeployPlan, MigratePlan, Migrations, RollbackPlan};
use kaapi_core::progress::{Event, Progress, Silent};
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_testkit::fake_engine::{FakeEngine, Script};

const LOCK: &str = "acquire_lock tester";
const UNLOCK: &str = "release_lock lock-1";
const BUILD: &str = "prepare_image Build abc123";

fn fake(script: Script) -> FakeEngine {
    FakeEngine::new("local", script)
}

/// An engine whose release 1 served.
fn with_good_release(script: Script) -> FakeEngine {
    fake(script).with_release(1, "sha256:old", "old", Outcome::Succeeded)
}

fn meta() -> ReleaseMeta {
    ReleaseMeta {
        commit: "abc123".to_owned(),
        version: None,
        author: "tester".to_owned(),
        created_at: Utc::now(),
    }
}

fn migrations() -> Migrations {
    Migrations {
        service: "backend".into(),
        command: vec!["migrate".into()],
        schema: None,
    }
}

fn rollback_plan(to: Option<u64>) -> RollbackPlan {
    RollbackPlan {
        to,
        meta: meta(),
        owner: plan().owner,
        schema: None,
        force: false,
    }
}

fn plan() -> DeployPlan {
    DeployPlan {
        image: ImageSource::Build,
        meta: meta(),
        owner: LockOwner {
            holder: "tester".into(),
            url: None,
        },
        migrations: Some(migrations()),
        force: false,
        services: Vec::new(),
    }
}

/// The end of every phase as the progress line reports it: `rollout ok`, `rollout failed`.
#[derive(Default)]
struct PhaseLines(std::sync::Mutex<Vec<String>>);

impl PhaseLines {
    fn finished(&self) -> Vec<String> {
        self.0.lock().map(|lines| lines.clone()).unwrap_or_default()
    }
}

impl Progress for PhaseLines {
    fn event(&self, event: Event) {
        if let Event::PhaseFinished { phase, ok, .. } = event {
            if let Ok(mut lines) = self.0.lock() {
                let verdict = if ok { "ok" } else { "failed" };
                lines.push(format!("{} {verdict}", phase.as_str()));
            }
        }
    }
}

async fn deploy(engine: &FakeEngine) -> EngineResult<pipeline::DeployReport> {
    pipeline::deploy(engine, &plan(), &Silent, std::future::pending()).await
}

#[tokio::test]
async fn a_good_deploy_runs_every_step_in_order() {
    let engine = with_good_release(Script::default());
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.serving, Some(2));
    assert_eq!(
        engine.calls(),
        [
            LOCK,
            BUILD,
            "register_release 2 sha256:new",
            "run_task release 2 backend migrate",
            "roll_out 2",
            "verify",
            "record 2 succeeded",
            UNLOCK
        ]
    );
    let phases: Vec<&str> = report.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        ["lock", "build", "register", "migrate", "rollout", "verify"]
    );
}

#[tokio::test]
async fn a_failed_migration_changes_nothing_that_serves() {
    let engine = with_good_release(Script {
        migration_exit: Some(TaskExit {
            exit_code: 3,
            reason: None,
            diagnosis: None,
        }),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::FailedMigration);
    assert_eq!(report.serving, Some(1));
    assert!(
        report.message.contains("exited with code 3"),
        "{}",
        report.message
    );
    assert!(!engine.calls().iter().any(|c| c.starts_with("roll_out")));
    assert_eq!(engine.outcome_of(2), Some(Outcome::FailedMigration));
    assert_eq!(engine.calls().last().map(String::as_str), Some(UNLOCK));
}

#[tokio::test]
async fn a_failed_verification_rolls_back_to_the_last_good_release() {
    let engine = with_good_release(Script {
        verify: Some(Err("GET /health → 503".into())),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.serving, Some(1));
    assert!(report.message.contains("503"), "{}", report.message);
    assert!(
        report.message.contains("release 1 serves"),
        "{}",
        report.message
    );
    assert!(engine.calls().contains(&"roll_out 1".to_owned()));
    assert_eq!(engine.outcome_of(2), Some(Outcome::RolledBack));
}

#[tokio::test]
async fn a_platform_rollback_is_reported_as_a_failure() {
    let engine = with_good_release(Script {
        rollouts: VecDeque::from([RolloutOutcome::Failed {
            reason: "circuit breaker tripped".into(),
            engine_rolled_back_to: Some("app-backend:1".into()),
        }]),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(
        report.message.contains("fake rolled back to app-backend:1"),
        "{}",
        report.message
    );
    assert!(!engine.calls().contains(&"verify".to_owned()));
}

#[tokio::test]
async fn a_failed_first_deploy_has_nothing_to_roll_back_to() {
    let engine = fake(Script {
        rollouts: VecDeque::from([RolloutOutcome::Failed {
            reason: "replica crashed".into(),
            engine_rolled_back_to: None,
        }]),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.serving, None);
    assert!(
        report.message.contains("no earlier release"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn a_held_lock_stops_the_deploy_before_anything_happens() {
    let engine = fake(Script {
        locked_by: Some("someone".into()),
        ..Script::default()
    });
    let error = deploy(&engine).await.expect_err("locked");
    assert!(error.to_string().contains("locked by someone"), "{error}");
    assert_eq!(engine.calls(), [LOCK]);
}

#[tokio::test]
async fn an_interrupted_deploy_releases_the_lock_and_is_recorded() {
    let engine = fake(Script {
        hang_rollout: true,
        ..Script::default()
    });
    let interrupt = tokio::time::sleep(std::time::Duration::from_millis(50));
    let error = pipeline::deploy(&engine, &plan(), &Silent, interrupt)
        .await
        .expect_err("interrupted");
    assert!(error.to_string().contains("interrupted"), "{error}");
    assert_eq!(engine.outcome_of(1), Some(Outcome::Interrupted));
    assert!(!engine.is_locked());
}

#[tokio::test]
async fn rollback_redeploys_the_previous_good_release_as_a_new_one() {
    let engine = with_good_release(Script::default());
    deploy(&engine).await.expect("second deploy");
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(None),
        &Silent,
        std::future::pending(),
    )
    .await
    .expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.release, Some(3));
    assert_eq!(
        report.image.as_ref().map(|i| i.digest.as_str()),
        Some("sha256:old")
    );
    let releases = engine.releases().await.expect("releases");
    assert_eq!(releases[0].rollback_of, Some(1));
}

#[tokio::test]
async fn rollback_to_a_release_that_never_served_is_refused() {
    let engine = with_good_release(Script {
        migration_exit: Some(TaskExit {
            exit_code: 1,
            reason: None,
            diagnosis: None,
        }),
        ..Script::default()
    });
    deploy(&engine).await.expect("deploy");
    let error = pipeline::rollback(
        &engine,
        &rollback_plan(Some(2)),
        &Silent,
        std::future::pending(),
    )
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("never served"), "{error}");
    let error = pipeline::rollback(
        &engine,
        &rollback_plan(Some(9)),
        &Silent,
        std::future::pending(),
    )
    .await
    .expect_err("unknown");
    assert!(error.to_string().contains("no release 9"), "{error}");
}

fn migrate_plan() -> MigratePlan {
    MigratePlan {
        meta: meta(),
        owner: plan().owner,
        migrations: migrations(),
    }
}

#[tokio::test]
async fn migrate_runs_on_the_built_image_under_the_lock_and_records_nothing() {
    let engine = with_good_release(Script::default());
    let exit = pipeline::migrate(&engine, &migrate_plan(), &Silent, std::future::pending())
        .await
        .expect("migrate");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(
        engine.calls(),
        [
            LOCK,
            BUILD,
            "run_task image sha256:new backend migrate",
            UNLOCK
        ]
    );
    assert_eq!(engine.releases().await.expect("releases").len(), 1);
}

#[tokio::test]
async fn an_interrupted_migration_stops_its_task_and_releases_the_lock() {
    let engine = fake(Script {
        hang_task: true,
        ..Script::default()
    });
    let interrupt = tokio::time::sleep(std::time::Duration::from_millis(50));
    let error = pipeline::migrate(&engine, &migrate_plan(), &Silent, interrupt)
        .await
        .expect_err("interrupted");
    assert!(error.to_string().contains("interrupted"), "{error}");
    assert_eq!(
        engine.calls(),
        [
            LOCK,
            BUILD,
            "run_task image sha256:new backend migrate",
            "stop_tasks",
            UNLOCK
        ]
    );
}

#[tokio::test]
async fn an_interrupted_rollback_is_recorded_and_releases_the_lock() {
    let engine = with_good_release(Script::default());
    deploy(&engine).await.expect("second deploy");
    engine.script.lock().expect("script").hang_rollout = true;
    let interrupt = tokio::time::sleep(std::time::Duration::from_millis(50));
    let error = pipeline::rollback(&engine, &rollback_plan(None), &Silent, interrupt)
        .await
        .expect_err("interrupted");
    assert!(error.to_string().contains("interrupted"), "{error}");
    assert_eq!(engine.outcome_of(3), Some(Outcome::Interrupted));
    assert!(!engine.is_locked());
}

#[tokio::test]
async fn a_failed_rollout_is_diagnosed_before_the_rollback_and_reported() {
    let diagnosis = kaapi_core::diagnosis::Facts {
        service: "backend".into(),
        replica: "app-backend-2-a".into(),
        reason: "backend: replica app-backend-2-a exited (code 137) while starting".into(),
        exit_code: Some(137),
        oom_killed: true,
        ..Default::default()
    }
    .diagnose();
    let engine = with_good_release(Script {
        rollouts: VecDeque::from([RolloutOutcome::Failed {
            reason: "replica crashed".into(),
            engine_rolled_back_to: None,
        }]),
        diagnoses: vec![diagnosis.clone()],
        ..Script::default()
    });
    let progress = PhaseLines::default();
    let report = pipeline::deploy(&engine, &plan(), &progress, std::future::pending())
        .await
        .expect("deploy");
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.diagnosis, vec![diagnosis]);
    // What the user reads: the rollout failed, the rollback that followed succeeded.
    let lines = progress.finished();
    assert!(lines.contains(&"rollout failed".to_owned()), "{lines:?}");
    assert!(lines.contains(&"rollback ok".to_owned()), "{lines:?}");
    let calls = engine.calls();
    let diagnosed = calls.iter().position(|c| c == "diagnose 2");
    let rolled_back = calls.iter().position(|c| c == "roll_out 1");
    assert!(
        diagnosed.is_some() && diagnosed < rolled_back,
        "diagnosed before the rollback: {calls:?}"
    );
    let rollout = report
        .phases
        .iter()
        .find(|p| p.phase == kaapi_core::progress::Phase::Rollout)
        .expect("rollout timed");
    assert!(!rollout.ok, "a rollout that failed is timed as failed");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["diagnosis"][0]["cause"], "out_of_memory");
}

#[tokio::test]
async fn a_failed_migration_carries_the_task_diagnosis() {
    let diagnosis = kaapi_core::diagnosis::Facts {
        service: "backend".into(),
        replica: "migrate".into(),
        reason: "exited with code 1".into(),
        exit_code: Some(1),
        logs: vec!["KeyError: 'DATABASE_URL'".into()],
        ..Default::default()
    }
    .diagnose();
    let engine = with_good_release(Script {
        migration_exit: Some(TaskExit {
            exit_code: 1,
            reason: None,
            diagnosis: Some(diagnosis.clone()),
        }),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::FailedMigration);
    assert_eq!(report.diagnosis, vec![diagnosis]);
}

/// Collects warnings, to check what a best-effort step said.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl Progress for Warnings {
    fn event(&self, event: Event) {
        if let Event::Warning { message } = event {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(message);
            }
        }
    }
}

#[tokio::test]
async fn a_good_deploy_prunes_beyond_retention_after_recording_under_the_lock() {
    let engine = with_good_release(Script {
        retention: Some(2),
        ..Script::default()
    });
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert!(report.pruned.is_some());
    let calls = engine.calls();
    assert_eq!(
        &calls[calls.len() - 3..],
        ["record 2 succeeded", "prune keep 2", UNLOCK]
    );
}

#[tokio::test]
async fn a_failed_prune_only_warns_and_the_deploy_stands() {
    let engine = with_good_release(Script {
        retention: Some(1),
        prune: Some(Err("registry unreachable".into())),
        ..Script::default()
    });
    let warnings = Warnings::default();
    let report = pipeline::deploy(&engine, &plan(), &warnings, std::future::pending())
        .await
        .expect("deploy");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.pruned, None);
    assert_eq!(engine.outcome_of(2), Some(Outcome::Succeeded));
    let said = warnings.0.lock().expect("warnings").join("\n");
    assert!(
        said.contains("automatic prune (retention keep = 1) failed: registry unreachable"),
        "{said}"
    );
    assert!(!engine.is_locked());
}

#[tokio::test]
async fn a_failed_or_unpruned_deploy_does_not_prune() {
    let failing = with_good_release(Script {
        retention: Some(1),
        verify: Some(Err("health answers 500".into())),
        ..Script::default()
    });
    let report = deploy(&failing).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(!failing.calls().iter().any(|c| c.starts_with("prune")));

    let no_retention = with_good_release(Script::default());
    deploy(&no_retention).await.expect("deploy");
    assert!(!no_retention.calls().iter().any(|c| c.starts_with("prune")));
}

#[tokio::test]
async fn a_good_rollback_prunes_beyond_retention() {
    let engine = with_good_release(Script {
        retention: Some(1),
        ..Script::default()
    })
    .with_release(2, "sha256:new", "new", Outcome::Succeeded);
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(None),
        &Silent,
        std::future::pending(),
    )
    .await
    .expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert!(report.pruned.is_some());
    assert!(engine.calls().contains(&"prune keep 1".to_owned()));
}
