//! The pipeline's rules, proven over a scripted in-memory engine: the order of steps, what a
//! failure at each step changes, and that the lock is released on every path.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use kaapi_core::engine::{
    Engine, EngineError, EngineResult, ImageSource, LockOwner, LockToken, LogLine, LogQuery,
    RolloutOutcome, StatusReport, TaskExit,
};
use kaapi_core::pipeline::{self, DeployPlan};
use kaapi_core::progress::{Progress, Silent};
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};

#[derive(Default)]
struct Script {
    locked_by_other: bool,
    migration_exit: i64,
    /// Outcomes of successive roll_out calls (default Completed).
    rollouts: Vec<RolloutOutcome>,
    verify: Vec<Result<(), String>>,
    /// Never finish the rollout (to test interruption).
    hang_rollout: bool,
}

#[derive(Default)]
struct Fake {
    script: Mutex<Script>,
    calls: Mutex<Vec<String>>,
    releases: Mutex<Vec<Release>>,
    locked: Mutex<bool>,
}

impl Fake {
    fn with(script: Script) -> Self {
        Self {
            script: Mutex::new(script),
            ..Self::default()
        }
    }
    fn call(&self, name: String) {
        self.calls.lock().expect("calls").push(name);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }
    fn outcome_of(&self, number: u64) -> Option<Outcome> {
        self.releases
            .lock()
            .expect("releases")
            .iter()
            .find(|r| r.number == number)
            .map(|r| r.outcome)
    }
    fn seed_good_release(&self) {
        let image = image("sha256:old");
        let release = release(1, image, Outcome::Succeeded);
        self.releases.lock().expect("releases").push(release);
    }
}

fn image(digest: &str) -> ImageRef {
    ImageRef {
        reference: format!("repo@{digest}"),
        digest: digest.to_owned(),
        tags: vec![],
    }
}

fn meta() -> ReleaseMeta {
    ReleaseMeta {
        commit: "abc123".to_owned(),
        version: None,
        author: "tester".to_owned(),
        created_at: Utc::now(),
    }
}

fn release(number: u64, image: ImageRef, outcome: Outcome) -> Release {
    Release {
        number,
        environment: "local".to_owned(),
        image,
        meta: meta(),
        revisions: vec![ServiceRevision {
            service: "backend".to_owned(),
            revision: format!("app-backend:{number}"),
        }],
        outcome,
        detail: None,
        rollback_of: None,
    }
}

#[async_trait]
impl Engine for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn acquire_lock(&self, _: &LockOwner, _: &dyn Progress) -> EngineResult<LockToken> {
        self.call("lock".into());
        if self.script.lock().expect("script").locked_by_other {
            return Err(EngineError::Locked {
                environment: "local".into(),
                holder: "someone".into(),
                since: Utc::now(),
            });
        }
        *self.locked.lock().expect("lock") = true;
        Ok(LockToken {
            environment: "local".into(),
            id: "t".into(),
        })
    }
    async fn release_lock(&self, _: &LockToken) -> EngineResult<()> {
        self.call("unlock".into());
        *self.locked.lock().expect("lock") = false;
        Ok(())
    }
    async fn force_unlock(&self) -> EngineResult<()> {
        Ok(())
    }
    async fn prepare_image(
        &self,
        _: &ImageSource,
        _: &ReleaseMeta,
        _: &dyn Progress,
    ) -> EngineResult<ImageRef> {
        self.call("build".into());
        Ok(image("sha256:new"))
    }
    async fn register_release(
        &self,
        image: &ImageRef,
        _: &ReleaseMeta,
        rollback_of: Option<u64>,
        _: &dyn Progress,
    ) -> EngineResult<Release> {
        let mut releases = self.releases.lock().expect("releases");
        let number = releases.len() as u64 + 1;
        self.call(format!("register {number}"));
        let mut r = release(number, image.clone(), Outcome::InProgress);
        r.rollback_of = rollback_of;
        releases.push(r.clone());
        Ok(r)
    }
    async fn run_task(
        &self,
        release: &Release,
        service: &str,
        command: &[String],
        _: &dyn Progress,
    ) -> EngineResult<TaskExit> {
        self.call(format!(
            "task {} {service} {}",
            release.number,
            command.join(" ")
        ));
        Ok(TaskExit {
            exit_code: self.script.lock().expect("script").migration_exit,
            reason: None,
        })
    }
    async fn roll_out(&self, release: &Release, _: &dyn Progress) -> EngineResult<RolloutOutcome> {
        self.call(format!("rollout {}", release.number));
        let hang = self.script.lock().expect("script").hang_rollout;
        if hang {
            std::future::pending::<()>().await;
        }
        let mut script = self.script.lock().expect("script");
        Ok(if script.rollouts.is_empty() {
            RolloutOutcome::Completed
        } else {
            script.rollouts.remove(0)
        })
    }
    async fn verify(&self, _: &dyn Progress) -> EngineResult<Result<(), String>> {
        self.call("verify".into());
        let mut script = self.script.lock().expect("script");
        Ok(if script.verify.is_empty() {
            Ok(())
        } else {
            script.verify.remove(0)
        })
    }
    async fn record(
        &self,
        number: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> EngineResult<()> {
        self.call(format!("record {number} {outcome}"));
        let mut releases = self.releases.lock().expect("releases");
        if let Some(r) = releases.iter_mut().find(|r| r.number == number) {
            r.outcome = outcome;
            r.detail = detail.map(str::to_owned);
        }
        Ok(())
    }
    async fn releases(&self) -> EngineResult<Vec<Release>> {
        let mut all = self.releases.lock().expect("releases").clone();
        all.reverse();
        Ok(all)
    }
    async fn status(&self) -> EngineResult<StatusReport> {
        Err(EngineError::failed("not scripted"))
    }
    async fn logs(&self, _: &LogQuery, _: &(dyn Fn(LogLine) + Send + Sync)) -> EngineResult<()> {
        Ok(())
    }
}

fn plan() -> DeployPlan {
    DeployPlan {
        environment: "local".into(),
        image: ImageSource::Build,
        meta: meta(),
        owner: LockOwner {
            holder: "tester".into(),
            url: None,
        },
        migrations: Some(("backend".into(), vec!["migrate".into()])),
    }
}

async fn deploy(engine: &Fake) -> EngineResult<pipeline::DeployReport> {
    pipeline::deploy(engine, &plan(), &Silent, std::future::pending()).await
}

#[tokio::test]
async fn a_good_deploy_runs_every_step_in_order() {
    let engine = Fake::default();
    engine.seed_good_release();
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.serving, Some(2));
    assert_eq!(
        engine.calls(),
        [
            "lock",
            "build",
            "register 2",
            "task 2 backend migrate",
            "rollout 2",
            "verify",
            "record 2 succeeded",
            "unlock"
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
    let engine = Fake::with(Script {
        migration_exit: 3,
        ..Script::default()
    });
    engine.seed_good_release();
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::FailedMigration);
    assert_eq!(report.serving, Some(1));
    assert!(
        report.message.contains("exited with code 3"),
        "{}",
        report.message
    );
    assert!(!engine.calls().iter().any(|c| c.starts_with("rollout")));
    assert_eq!(engine.outcome_of(2), Some(Outcome::FailedMigration));
    assert_eq!(engine.calls().last().map(String::as_str), Some("unlock"));
}

#[tokio::test]
async fn a_failed_verification_rolls_back_to_the_last_good_release() {
    let engine = Fake::with(Script {
        verify: vec![Err("GET /health → 503".into())],
        ..Script::default()
    });
    engine.seed_good_release();
    let report = deploy(&engine).await.expect("deploy");
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.serving, Some(1));
    assert!(report.message.contains("503"), "{}", report.message);
    assert!(
        report.message.contains("release 1 serves"),
        "{}",
        report.message
    );
    assert!(engine.calls().contains(&"rollout 1".to_owned()));
    assert_eq!(engine.outcome_of(2), Some(Outcome::RolledBack));
}

#[tokio::test]
async fn a_platform_rollback_is_reported_as_a_failure() {
    let engine = Fake::with(Script {
        rollouts: vec![RolloutOutcome::Failed {
            reason: "circuit breaker tripped".into(),
            engine_rolled_back_to: Some("app-backend:1".into()),
        }],
        ..Script::default()
    });
    engine.seed_good_release();
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
    let engine = Fake::with(Script {
        rollouts: vec![RolloutOutcome::Failed {
            reason: "replica crashed".into(),
            engine_rolled_back_to: None,
        }],
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
    let engine = Fake::with(Script {
        locked_by_other: true,
        ..Script::default()
    });
    let error = deploy(&engine).await.expect_err("locked");
    assert!(error.to_string().contains("locked by someone"), "{error}");
    assert_eq!(engine.calls(), ["lock"]);
}

#[tokio::test]
async fn an_interrupted_deploy_releases_the_lock_and_is_recorded() {
    let engine = Fake::with(Script {
        hang_rollout: true,
        ..Script::default()
    });
    let interrupt = tokio::time::sleep(std::time::Duration::from_millis(50));
    let error = pipeline::deploy(&engine, &plan(), &Silent, interrupt)
        .await
        .expect_err("interrupted");
    assert!(error.to_string().contains("interrupted"), "{error}");
    assert_eq!(engine.outcome_of(1), Some(Outcome::Interrupted));
    assert!(!*engine.locked.lock().expect("lock"));
}

#[tokio::test]
async fn rollback_redeploys_the_previous_good_release_as_a_new_one() {
    let engine = Fake::default();
    engine.seed_good_release();
    deploy(&engine).await.expect("second deploy");
    let report = pipeline::rollback(&engine, "local", None, &plan().owner, &meta(), &Silent)
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
    let engine = Fake::with(Script {
        migration_exit: 1,
        ..Script::default()
    });
    engine.seed_good_release();
    deploy(&engine).await.expect("deploy");
    let error = pipeline::rollback(&engine, "local", Some(2), &plan().owner, &meta(), &Silent)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("never served"), "{error}");
    let error = pipeline::rollback(&engine, "local", Some(9), &plan().owner, &meta(), &Silent)
        .await
        .expect_err("unknown");
    assert!(error.to_string().contains("no release 9"), "{error}");
}
