//! A scripted engine for tests of everything above the engines (the pipeline, CI): it keeps
//! releases in memory like a real engine would, records every call, and answers the steps
//! (image, migrations, rollouts, verification) from a script, succeeding where the script is
//! silent.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use kaapi_core::diagnosis::Diagnosis;
use kaapi_core::engine::{
    Engine, EngineError, EngineResult, ImageSource, LockOwner, LockToken, LogLine, LogQuery,
    RolloutOutcome, StatusReport, TaskExit, TaskOn,
};
use kaapi_core::progress::Progress;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};

#[derive(Debug, Default)]
pub struct Script {
    /// `Err(message)` makes prepare_image fail; `None` builds [`NEW_DIGEST`].
    pub image: Option<Result<ImageRef, String>>,
    /// `None`: every one-off task exits 0.
    pub migration_exit: Option<TaskExit>,
    /// Outcomes of successive roll_out calls (deploy, then rollback); `Completed` once empty.
    pub rollouts: VecDeque<RolloutOutcome>,
    /// `None`: verification passes.
    pub verify: Option<Result<(), String>>,
    /// When set, acquire_lock fails as if someone held the lock.
    pub locked_by: Option<String>,
    /// Never finish a rollout (to test interruption).
    pub hang_rollout: bool,
    /// Never finish a one-off task (to test interruption).
    pub hang_task: bool,
    /// What one-off tasks print, by command line (`alembic current` → `0002 (head)`).
    pub task_output: Vec<(String, String)>,
    /// Command lines whose one-off task exits 1 (a failing downgrade).
    pub failing_tasks: Vec<String>,
    /// What diagnose answers; when not empty, each diagnose call is recorded as
    /// `diagnose N`.
    pub diagnoses: Vec<Diagnosis>,
    /// The environment's `[retention] keep` (`None`: deploys do not prune).
    pub retention: Option<usize>,
    /// `Err(message)` makes prune fail; otherwise it removes nothing.
    pub prune: Option<Result<(), String>>,
}

/// The digest prepare_image gives when the script names no image.
pub const NEW_DIGEST: &str = "sha256:new";

pub struct FakeEngine {
    pub environment: String,
    pub script: Mutex<Script>,
    pub releases: Mutex<Vec<Release>>,
    pub calls: Mutex<Vec<String>>,
    locked: Mutex<bool>,
}

impl FakeEngine {
    pub fn new(environment: &str, script: Script) -> Self {
        Self {
            environment: environment.to_owned(),
            script: Mutex::new(script),
            releases: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            locked: Mutex::new(false),
        }
    }

    /// Adds a release that already served (history before the test's deploy).
    pub fn with_release(self, number: u64, digest: &str, commit: &str, outcome: Outcome) -> Self {
        let release = Release {
            number,
            environment: self.environment.clone(),
            image: image(digest),
            meta: ReleaseMeta {
                commit: commit.to_owned(),
                version: None,
                author: "earlier".to_owned(),
                created_at: chrono::Utc::now(),
            },
            revisions: vec![],
            outcome,
            detail: None,
            rollback_of: None,
            schema_version: None,
        };
        self.releases.lock().expect("releases").push(release);
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    /// The outcome release `number` has now.
    pub fn outcome_of(&self, number: u64) -> Option<Outcome> {
        self.releases
            .lock()
            .expect("releases")
            .iter()
            .find(|r| r.number == number)
            .map(|r| r.outcome)
    }

    /// Whether the deploy lock is held now.
    pub fn is_locked(&self) -> bool {
        *self.locked.lock().expect("lock")
    }

    fn call(&self, what: String) {
        self.calls.lock().expect("calls").push(what);
    }
}

pub fn image(digest: &str) -> ImageRef {
    ImageRef {
        reference: format!("127.0.0.1:5000/kaapi-repo@{digest}"),
        digest: digest.to_owned(),
        tags: vec![],
    }
}

#[async_trait]
impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn environment(&self) -> &str {
        &self.environment
    }

    async fn acquire_lock(&self, owner: &LockOwner, _: &dyn Progress) -> EngineResult<LockToken> {
        self.call(format!("acquire_lock {}", owner.holder));
        if let Some(holder) = self.script.lock().expect("script").locked_by.clone() {
            return Err(EngineError::Locked {
                environment: self.environment.clone(),
                holder,
                since: chrono::Utc::now(),
            });
        }
        *self.locked.lock().expect("lock") = true;
        Ok(LockToken {
            environment: self.environment.clone(),
            id: "lock-1".to_owned(),
        })
    }

    async fn release_lock(&self, token: &LockToken) -> EngineResult<()> {
        self.call(format!("release_lock {}", token.id));
        *self.locked.lock().expect("lock") = false;
        Ok(())
    }

    async fn force_unlock(&self) -> EngineResult<()> {
        self.call("force_unlock".to_owned());
        Ok(())
    }

    async fn prepare_image(
        &self,
        source: &ImageSource,
        meta: &ReleaseMeta,
        _: &dyn Progress,
    ) -> EngineResult<ImageRef> {
        self.call(format!("prepare_image {source:?} {}", meta.commit));
        // An existing image pinned by digest is used as is, as a real engine would.
        if let ImageSource::Existing(reference) = source {
            if let Some((_, digest)) = reference.split_once('@') {
                return Ok(ImageRef {
                    reference: reference.clone(),
                    digest: digest.to_owned(),
                    tags: vec![],
                });
            }
        }
        match self.script.lock().expect("script").image.clone() {
            Some(Ok(image)) => Ok(image),
            Some(Err(message)) => Err(EngineError::failed(message)),
            None => Ok(image(NEW_DIGEST)),
        }
    }

    async fn register_release(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        rollback_of: Option<u64>,
        _: &dyn Progress,
    ) -> EngineResult<Release> {
        let mut releases = self.releases.lock().expect("releases");
        let number = releases.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        self.call(format!("register_release {number} {}", image.digest));
        let release = Release {
            number,
            environment: self.environment.clone(),
            image: image.clone(),
            meta: meta.clone(),
            revisions: vec![ServiceRevision {
                service: "backend".to_owned(),
                revision: format!("backend:{number}"),
            }],
            outcome: Outcome::InProgress,
            detail: None,
            rollback_of,
            schema_version: None,
        };
        releases.push(release.clone());
        Ok(release)
    }

    async fn run_task(
        &self,
        on: TaskOn<'_>,
        service: &str,
        command: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<TaskExit> {
        let on = match on {
            TaskOn::Release(release) => format!("release {}", release.number),
            TaskOn::Image(image) => format!("image {}", image.digest),
        };
        let line = command.join(" ");
        self.call(format!("run_task {on} {service} {line}"));
        let (hang, exit, output) = {
            let script = self.script.lock().expect("script");
            let output = script
                .task_output
                .iter()
                .find(|(c, _)| *c == line)
                .map(|(_, o)| o.clone());
            let exit = if script.failing_tasks.contains(&line) {
                Some(TaskExit {
                    exit_code: 1,
                    reason: None,
                    diagnosis: None,
                })
            } else {
                script.migration_exit.clone()
            };
            (script.hang_task, exit, output)
        };
        for printed in output.iter().flat_map(|o| o.lines()) {
            progress.output(service, printed);
        }
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(exit.unwrap_or(TaskExit {
            exit_code: 0,
            reason: None,
            diagnosis: None,
        }))
    }

    async fn diagnose(&self, release: &Release, _progress: &dyn Progress) -> Vec<Diagnosis> {
        let diagnoses = self.script.lock().expect("script").diagnoses.clone();
        if !diagnoses.is_empty() {
            self.call(format!("diagnose {}", release.number));
        }
        diagnoses
    }

    async fn stop_tasks(&self) -> EngineResult<()> {
        self.call("stop_tasks".to_owned());
        Ok(())
    }

    async fn roll_out(&self, release: &Release, _: &dyn Progress) -> EngineResult<RolloutOutcome> {
        self.call(format!("roll_out {}", release.number));
        let (hang, outcome) = {
            let mut script = self.script.lock().expect("script");
            (script.hang_rollout, script.rollouts.pop_front())
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(outcome.unwrap_or(RolloutOutcome::Completed))
    }

    async fn verify(&self, _: &dyn Progress) -> EngineResult<Result<(), String>> {
        self.call("verify".to_owned());
        Ok(self
            .script
            .lock()
            .expect("script")
            .verify
            .clone()
            .unwrap_or(Ok(())))
    }

    async fn record(
        &self,
        number: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> EngineResult<()> {
        self.call(format!("record {number} {outcome}"));
        let mut releases = self.releases.lock().expect("releases");
        let release = releases
            .iter_mut()
            .find(|r| r.number == number)
            .ok_or_else(|| EngineError::not_found(format!("no release {number}")))?;
        release.outcome = outcome;
        release.detail = detail.map(str::to_owned);
        Ok(())
    }

    async fn record_schema_version(&self, number: u64, version: &str) -> EngineResult<()> {
        self.call(format!("record_schema_version {number} {version}"));
        let mut releases = self.releases.lock().expect("releases");
        let release = releases
            .iter_mut()
            .find(|r| r.number == number)
            .ok_or_else(|| EngineError::not_found(format!("no release {number}")))?;
        release.schema_version = Some(version.to_owned());
        Ok(())
    }

    fn retention(&self) -> Option<usize> {
        self.script.lock().expect("script").retention
    }

    async fn prune(
        &self,
        keep: usize,
        dry_run: bool,
        _: &dyn Progress,
    ) -> EngineResult<kaapi_core::prune::PruneReport> {
        self.call(format!("prune keep {keep}"));
        if let Some(Err(message)) = self.script.lock().expect("script").prune.clone() {
            return Err(EngineError::failed(message));
        }
        Ok(kaapi_core::prune::PruneReport {
            environment: self.environment.clone(),
            dry_run,
            kept_releases: Vec::new(),
            removed: Vec::new(),
        })
    }

    async fn releases(&self) -> EngineResult<Vec<Release>> {
        let mut releases = self.releases.lock().expect("releases").clone();
        releases.sort_by_key(|r| std::cmp::Reverse(r.number));
        Ok(releases)
    }

    async fn status(&self) -> EngineResult<StatusReport> {
        Err(EngineError::failed("status is not scripted"))
    }

    async fn logs(&self, _: &LogQuery, _: &(dyn Fn(LogLine) + Send + Sync)) -> EngineResult<()> {
        Err(EngineError::failed("logs are not scripted"))
    }
}
