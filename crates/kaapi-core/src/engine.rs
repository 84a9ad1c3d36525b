//! The interface every engine (docker, ecs) implements, with ECS-shaped verbs. An engine value
//! is bound to one environment of one config. The pipeline (`pipeline.rs`) drives it; nothing
//! in the core does I/O except through this trait.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::diagnosis::Diagnosis;
use crate::plan::ServiceView;
use crate::progress::Progress;
use crate::release::{ImageRef, Outcome, Release, ReleaseMeta};
use crate::release_history::HistoryRead;

/// An engine failure: what went wrong and, where known, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Another deploy holds the environment's lock.
    #[error("environment `{environment}` is locked by {holder} since {since}; wait for it to finish, or run `kaapi-deploy unlock {environment} --force` if it is gone")]
    Locked {
        environment: String,
        holder: String,
        since: DateTime<Utc>,
    },
    /// The engine itself cannot be reached (no Docker daemon, no AWS credentials, …).
    #[error("{message}")]
    Unavailable { message: String },
    /// Something the user asked for does not exist (release number, service, image).
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    Failed { message: String },
}

impl EngineError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Who is deploying, written into the lock so a second deploy can say who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockOwner {
    /// e.g. `alice@laptop (pid 4242)` or `github-actions run 123`.
    pub holder: String,
    /// A link for people (CI run URL), when there is one.
    pub url: Option<String>,
}

/// Proof of holding a lock; given back to release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    pub environment: String,
    pub id: String,
}

/// Where the image of a deploy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Build the config's image from the working tree.
    Build,
    /// Deploy an image that already exists (`--image REF`).
    Existing(String),
}

/// What a one-off task runs on.
#[derive(Debug, Clone, Copy)]
pub enum TaskOn<'a> {
    /// The service's revision in a registered release (`run`, a deploy's migrations).
    Release(&'a Release),
    /// An image no release carries yet, with the service's revision in the release that serves
    /// now (or the config's settings when nothing serves): `migrate ENV` before a deploy.
    Image(&'a ImageRef),
}

/// The one-off tasks an engine started and has not seen end, by ID (container ID, task ARN), so
/// that [`Engine::stop_tasks`] can stop them after an interrupted step.
#[derive(Debug, Default)]
pub struct RunningTasks(std::sync::Mutex<std::collections::HashSet<String>>);

impl RunningTasks {
    pub fn insert(&self, id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            ids.insert(id.to_owned());
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            ids.remove(id);
        }
    }

    /// Every registered ID, forgetting them.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut ids| ids.drain().collect())
            .unwrap_or_default()
    }
}

/// How a one-off task (migrations, `run`) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskExit {
    pub exit_code: i64,
    /// Why it stopped, when the engine says more than the code (e.g. `TaskFailedToStart`).
    pub reason: Option<String>,
    /// Why it failed and its last lines, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// How a rollout ended, as the engine observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutOutcome {
    Completed,
    Failed {
        reason: String,
        /// Set when the platform already rolled back on its own (ECS circuit breaker), to what.
        engine_rolled_back_to: Option<String>,
    },
}

impl RolloutOutcome {
    pub fn completed(&self) -> bool {
        matches!(self, RolloutOutcome::Completed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub state: String,
    pub healthy: Option<bool>,
    pub release: Option<u64>,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEvent {
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub desired: u32,
    pub running: u32,
    pub healthy: u32,
    pub current_release: Option<u64>,
    pub previous_release: Option<u64>,
    /// Engine-specific rollout state (ECS deployments: `PRIMARY COMPLETED`, …).
    pub rollout: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
    pub events: Vec<StatusEvent>,
    /// Load-balancer request count and 5xx over the last period, where measured.
    pub requests: Option<u64>,
    pub errors_5xx: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub environment: String,
    pub engine: String,
    pub url: Option<String>,
    pub services: Vec<ServiceStatus>,
}

/// An environment's traffic over time, one sample per period, oldest first (for plots).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    pub period_secs: u64,
    pub samples: Vec<TrafficSample>,
}

/// What the environment's web traffic did during one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficSample {
    /// Start of the period.
    pub at: DateTime<Utc>,
    pub requests: u64,
    /// Server errors (5xx).
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// What `exec` runs, and where: a command in a running replica or task of a service.
#[derive(Debug, Clone, Copy)]
pub struct ExecRequest<'a> {
    pub service: &'a str,
    /// Which running replica or task, 1-based, oldest first.
    pub replica: usize,
    pub command: &'a [String],
    /// Attach stdin and allocate a TTY (the terminal is one).
    pub interactive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub at: Option<DateTime<Utc>>,
    /// Service and replica, e.g. `backend/1a2b3c`.
    pub source: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub service: Option<String>,
    pub since: Option<Duration>,
    pub follow: bool,
}

#[async_trait]
pub trait Engine: Send + Sync {
    /// Short engine name for messages: `docker`, `ecs`.
    fn name(&self) -> &'static str;

    /// The environment this engine is bound to.
    fn environment(&self) -> &str;

    /// Where the environment serves (local ingress URL, or the configured public URL).
    fn url(&self) -> Option<String> {
        None
    }

    /// Takes the environment's deploy lock, failing at once with [`EngineError::Locked`]
    /// when someone alive holds it; a stale lock (dead owner, expired) is taken over.
    async fn acquire_lock(
        &self,
        owner: &LockOwner,
        progress: &dyn Progress,
    ) -> EngineResult<LockToken>;
    async fn release_lock(&self, token: &LockToken) -> EngineResult<()>;
    /// Removes the lock whoever holds it (`unlock --force`).
    async fn force_unlock(&self) -> EngineResult<()>;

    /// Builds (and pushes where the environment has a registry) or resolves an existing image,
    /// returning it by digest.
    async fn prepare_image(
        &self,
        source: &ImageSource,
        meta: &ReleaseMeta,
        progress: &dyn Progress,
    ) -> EngineResult<ImageRef>;

    /// Starts the environment's accessories (backing services) that do not run yet, recreates
    /// the ones whose spec changed (saying so), and waits until every one is healthy; running,
    /// unchanged ones are left alone. An accessory that cannot start fails the call with the
    /// reason, before anything serving changes. Engines without accessories do nothing.
    async fn start_accessories(&self, _progress: &dyn Progress) -> EngineResult<()> {
        Ok(())
    }

    /// Whether the environment has accessories (the pipeline shows their phase only then).
    fn has_accessories(&self) -> bool {
        false
    }

    /// Registers an immutable revision of every service for `image` and records a new
    /// release (outcome in progress).
    async fn register_release(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        rollback_of: Option<u64>,
        progress: &dyn Progress,
    ) -> EngineResult<Release>;

    /// Runs `command` once as a one-off task of `service` on `on`, streaming its output, and
    /// waits for its exit. The task never outlives the call when it returns; when the call is
    /// dropped (interrupted), [`Engine::stop_tasks`] stops it.
    async fn run_task(
        &self,
        on: TaskOn<'_>,
        service: &str,
        command: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<TaskExit>;

    /// Stops and removes every one-off task this engine started that still runs (after an
    /// interrupted step).
    async fn stop_tasks(&self) -> EngineResult<()>;

    /// Rolls every service to its revision in `release` and waits for the rollout to finish.
    async fn roll_out(
        &self,
        release: &Release,
        progress: &dyn Progress,
    ) -> EngineResult<RolloutOutcome>;

    /// Why the replicas or tasks of `release` failed, after a failed rollout or verification:
    /// one [`Diagnosis`] per failed replica or task (exit, out-of-memory kill, health output,
    /// platform reasons and events, last log lines). Best effort: what cannot be read is left
    /// out, and it never fails the deploy.
    async fn diagnose(&self, _release: &Release, _progress: &dyn Progress) -> Vec<Diagnosis> {
        Vec::new()
    }

    /// Checks the web service's health path from outside; `Err` says what failed.
    async fn verify(&self, progress: &dyn Progress) -> EngineResult<Result<(), String>>;

    /// Stores how a release ended.
    async fn record(&self, number: u64, outcome: Outcome, detail: Option<&str>)
        -> EngineResult<()>;

    /// Stores the database schema version a release's code runs on (`[migrations]
    /// version_command`), read back as [`Release::schema_version`].
    async fn record_schema_version(&self, _number: u64, _version: &str) -> EngineResult<()> {
        Err(self.unsupported("recording schema versions"))
    }

    /// Every release, newest first.
    async fn releases(&self) -> EngineResult<Vec<Release>>;

    /// What can have changed in the history since a reader read `seen` (its releases, as this
    /// engine returned them): the releases it does not have and its unfinished ones read again.
    /// The default reads the whole history, for engines where that is cheap (the local one).
    async fn releases_since(&self, _seen: &[Release]) -> EngineResult<HistoryRead> {
        Ok(HistoryRead::Full(self.releases().await?))
    }

    /// The release that serves now (last one that succeeded), if any.
    async fn current_release(&self) -> EngineResult<Option<Release>> {
        Ok(self
            .releases()
            .await?
            .into_iter()
            .find(|r| r.outcome == Outcome::Succeeded))
    }

    /// What every service runs now: the current release's revisions with the live replica
    /// counts; empty when nothing is deployed. Read-only.
    async fn running_services(&self) -> EngineResult<Vec<ServiceView>> {
        Err(self.unsupported("planning"))
    }

    /// What every service would run if `image` were deployed now with today's config, without
    /// registering anything.
    async fn planned_services(&self, _image: &ImageRef) -> EngineResult<Vec<ServiceView>> {
        Err(self.unsupported("planning"))
    }

    /// The accessories that have a container now (`plan`); engines without accessories have none.
    async fn running_accessories(&self) -> EngineResult<Vec<crate::plan::AccessoryView>> {
        Ok(Vec::new())
    }

    /// The accessories the config runs in this environment (`plan`).
    async fn planned_accessories(&self) -> EngineResult<Vec<crate::plan::AccessoryView>> {
        Ok(Vec::new())
    }

    /// Runs a command in a running replica or task, attached to this process's stdout and
    /// stderr (and stdin when interactive), and returns its exit code.
    async fn exec(&self, _request: &ExecRequest<'_>) -> EngineResult<i64> {
        Err(self.unsupported("exec"))
    }

    /// How many earlier releases a successful deploy or rollback keeps when it prunes
    /// (`[retention] keep`); `None`: it does not prune.
    fn retention(&self) -> Option<usize> {
        None
    }

    /// Removes the images (and, where the engine has them, revisions and registry images) that
    /// no kept release needs (see [`crate::prune::kept_releases`]), never one a running replica
    /// or service uses; with `dry_run`, only lists them. The caller holds the deploy lock.
    async fn prune(
        &self,
        _keep: usize,
        _dry_run: bool,
        _progress: &dyn Progress,
    ) -> EngineResult<crate::prune::PruneReport> {
        Err(self.unsupported("prune"))
    }

    /// Registers a release (outcome in progress) in which only `only` get new revisions of
    /// `image`; every other service keeps its revision in `current` (`deploy --service`).
    async fn register_release_of(
        &self,
        _image: &ImageRef,
        _meta: &ReleaseMeta,
        _only: &[String],
        _current: &Release,
        _progress: &dyn Progress,
    ) -> EngineResult<Release> {
        Err(self.unsupported("deploy --service"))
    }

    /// Sets each requested service's replica count without a new release (the serving release
    /// keeps serving, only the difference starts or stops) and records one scaling event per
    /// service. The caller holds the deploy lock.
    async fn scale(
        &self,
        _requests: &[crate::scaling::ScaleRequest],
        _author: &str,
        _progress: &dyn Progress,
    ) -> EngineResult<Vec<crate::scaling::ScalingEvent>> {
        Err(self.unsupported("scale"))
    }

    /// Every scaling event of the environment, oldest first.
    async fn scaling_events(&self) -> EngineResult<Vec<crate::scaling::ScalingEvent>> {
        Ok(Vec::new())
    }

    /// The error of a verb this engine does not implement.
    fn unsupported(&self, what: &str) -> EngineError {
        EngineError::failed(format!(
            "the {} engine does not support {what}",
            self.name()
        ))
    }

    async fn status(&self) -> EngineResult<StatusReport>;

    /// The last `window` of traffic where the engine measures it outside the local agent (ECS:
    /// the load balancer's metrics in CloudWatch); `None` when it does not.
    async fn traffic(&self, _window: Duration) -> EngineResult<Option<Traffic>> {
        Ok(None)
    }

    /// Sends log lines to `sink` until done (or forever when following).
    async fn logs(
        &self,
        query: &LogQuery,
        sink: &(dyn Fn(LogLine) + Send + Sync),
    ) -> EngineResult<()>;
}

/// A locally built image, before any registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltImage {
    /// Docker image ID (`sha256:…`): the content address of the local image.
    pub id: String,
    /// Tags applied locally, e.g. `kaapi-local:3f2a1c0` (commit).
    pub tags: Vec<String>,
}

/// Registry credentials (ECR's GetAuthorizationToken gives these). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The shared build step: builds the config's image once, and pushes it to registries.
/// Implemented over the Docker Engine API (`kaapi-docker`); the ECS engine uses it too.
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Runs the pre-build command, builds the image (honouring `.dockerignore` and build args)
    /// and tags it with `tag` (the commit).
    async fn build(&self, tag: &str, progress: &dyn Progress) -> EngineResult<BuiltImage>;

    /// Pushes `image_id` as `repository:tag` for each tag and returns the manifest digest
    /// (`sha256:…`) the registry reports.
    async fn push(
        &self,
        image_id: &str,
        repository: &str,
        tags: &[String],
        auth: Option<&RegistryAuth>,
        progress: &dyn Progress,
    ) -> EngineResult<String>;
}
