//! [`EcsEngine`]: the `Engine` of an ECS environment, delegating each verb to its module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{
    Engine, EngineError, EngineResult, ExecRequest, ImageBuilder, ImageSource, LockOwner,
    LockToken, LogLine, LogQuery, RolloutOutcome, RunningTasks, StatusReport, TaskExit, TaskOn,
    Traffic,
};
use kaapi_core::plan::ServiceView;
use kaapi_core::progress::{Progress, Silent};
use kaapi_core::prune::{kept_releases, PruneReport};
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta};
use kaapi_core::release_history::HistoryRead;
use kaapi_core::scaling::{ScaleRequest, ScalingEvent};

use crate::aws::AwsClients;
use crate::error::engine_error;
use crate::session::Ctx;
use crate::target::Target;
use crate::tuning::Tuning;
use crate::{
    diagnose, exec, history, image, lock, logs, plan_view, prune, revisions, rollout, scale,
    settle, status, task, verify,
};

pub struct EcsEngine {
    ctx: Ctx,
    builder: Option<Arc<dyn ImageBuilder>>,
    /// Releases this engine has registered or read, by number (for `record`).
    known: Mutex<HashMap<u64, Release>>,
    /// Newest release number seen while holding the lock (saves a listing when registering).
    newest: Mutex<Option<u64>>,
    tasks: RunningTasks,
    /// The renewal of the deploy lock this engine holds.
    lease: Mutex<Option<lock::Lease>>,
    /// The services each `deploy --service` release rolls, by release number.
    only: Mutex<HashMap<u64, Vec<String>>>,
    /// The current release as read while taking the lock: while this engine holds it, the
    /// history stays as read, so the pipeline's look at the current release costs no call.
    current_at_lock: Mutex<Option<Release>>,
}

impl EcsEngine {
    /// The engine of `target`, with AWS clients from kaapi-aws's loader (the standard chain, or
    /// GitHub's OIDC role in CI). `builder` is the shared image build step (the Docker
    /// engine's); without it only `--image` deploys work.
    pub async fn connect(
        target: ResolvedEnvironment,
        builder: Option<Arc<dyn ImageBuilder>>,
    ) -> EngineResult<Self> {
        let shared = kaapi_aws::load(target.env(), None, &kaapi_aws::process_vars())
            .await
            .map_err(engine_error)?;
        Ok(Self::connect_with_config(target, builder, shared))
    }

    /// Like [`Self::connect`], with credentials and region from `shared` (CI's OIDC role).
    pub fn connect_with_config(
        target: ResolvedEnvironment,
        builder: Option<Arc<dyn ImageBuilder>>,
        shared: aws_config::SdkConfig,
    ) -> Self {
        Self::with_target_clients(target, builder, AwsClients::from_sdk_config(shared))
    }

    fn with_target_clients(
        target: ResolvedEnvironment,
        builder: Option<Arc<dyn ImageBuilder>>,
        clients: AwsClients,
    ) -> Self {
        let target = Target::from(target);
        let tuning = tuning_for(&target);
        Self::with_clients(target, clients, tuning, builder)
    }

    pub fn with_clients(
        target: Target,
        clients: AwsClients,
        tuning: Tuning,
        builder: Option<Arc<dyn ImageBuilder>>,
    ) -> Self {
        Self {
            ctx: Ctx::new(clients, target, tuning),
            builder,
            known: Mutex::new(HashMap::new()),
            newest: Mutex::new(None),
            tasks: RunningTasks::default(),
            lease: Mutex::new(None),
            only: Mutex::new(HashMap::new()),
            current_at_lock: Mutex::new(None),
        }
    }

    fn remember(&self, release: &Release) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(release.number, release.clone());
        }
        if let Ok(mut newest) = self.newest.lock() {
            if newest.is_none_or(|n| n < release.number) {
                *newest = Some(release.number);
            }
        }
    }

    /// Fails once a renewal found the deploy lock taken from us: another deploy may be changing
    /// the same services, so nothing more is changed.
    fn ensure_lock_held(&self) -> EngineResult<()> {
        let lost = self
            .lease
            .lock()
            .ok()
            .and_then(|held| held.as_ref().and_then(lock::Lease::lost));
        match lost {
            Some(lost) => Err(EngineError::failed(format!(
                "{lost}; stopped before changing anything more"
            ))),
            None => Ok(()),
        }
    }

    /// Settles what earlier deploys left unfinished from what ECS runs (see [`settle`]), saying
    /// so. Best effort: the history stays as it was when AWS does not answer. The history read
    /// comes first: when it shows no unfinished release, nothing more is read (the lock, the
    /// services). With [`Lock::Unknown`] a live deploy may hold the lock and be making the
    /// unfinished release, so it is read before settling. Returns the newest release when it is
    /// finished (nothing to settle), as read.
    async fn settle_unfinished(&self, lock: Lock, progress: &dyn Progress) -> Option<Release> {
        let result = match settle::head(&self.ctx, progress).await {
            Ok(head) if head.unfinished.is_empty() => return head.finished,
            Ok(_) if lock == Lock::Unknown && !self.lock_free().await => return None,
            Ok(head) => settle::settle(&self.ctx, &head.unfinished, progress).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(settled) => {
                for s in settled {
                    progress.warning(format!(
                        "release {} was left unfinished; recorded as {} from what ECS runs: {}",
                        s.number,
                        s.outcome.as_str(),
                        s.detail
                    ));
                }
            }
            Err(e) => progress.warning(format!("could not settle unfinished releases: {e}")),
        }
        None
    }

    /// Forgets the current release read while taking the lock: the history moved on (a new
    /// release, an outcome recorded) or the lock is gone.
    fn forget_current_at_lock(&self) {
        if let Ok(mut current) = self.current_at_lock.lock() {
            *current = None;
        }
    }

    /// The current release read while taking the lock, while this engine still holds it.
    fn current_under_lock(&self) -> Option<Release> {
        let held = self.lease.lock().ok().is_some_and(|lease| lease.is_some());
        if !held {
            return None;
        }
        self.current_at_lock.lock().ok().and_then(|c| c.clone())
    }

    /// Whether no live deploy holds the lock (none, or an expired one); `false` when unknown.
    async fn lock_free(&self) -> bool {
        match lock::read(&self.ctx).await {
            Ok(None) => true,
            Ok(Some(held)) => held.expires <= chrono::Utc::now(),
            Err(_) => false,
        }
    }

    async fn find_release(&self, number: u64) -> EngineResult<Release> {
        if let Some(hit) = self.known.lock().ok().and_then(|k| k.get(&number).cloned()) {
            return Ok(hit);
        }
        let found = history::walk(&self.ctx, &Silent, |r| r.number == number).await?;
        found
            .into_iter()
            .find(|r| r.number == number)
            .ok_or_else(|| EngineError::not_found(format!("there is no release {number}")))
    }

    /// Registers the next release: every service from `image` (or from the restored release
    /// `rollback_of`), except that with `keep = (only, current)` only `only` get new revisions.
    async fn register(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        rollback_of: Option<u64>,
        keep: Option<(&[String], &Release)>,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        self.ensure_lock_held()?;
        self.forget_current_at_lock();
        let newest = self.newest.lock().ok().and_then(|n| *n);
        let number = match newest {
            Some(n) => n + 1,
            None => history::next_number(&self.ctx, progress).await?,
        };
        let restored = match rollback_of {
            Some(of) => Some(self.find_release(of).await?),
            None => None,
        };
        let revisions = revisions::register_all(
            &self.ctx,
            image,
            meta,
            number,
            restored.as_ref(),
            keep,
            progress,
        )
        .await?;
        let release = Release {
            number,
            environment: self.ctx.target.environment().to_owned(),
            image: image.clone(),
            meta: meta.clone(),
            revisions,
            outcome: Outcome::InProgress,
            detail: None,
            rollback_of,
            schema_version: None,
        };
        self.remember(&release);
        Ok(release)
    }
}

/// What is known of the deploy lock when settling unfinished releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// This engine holds it, or has just removed it (`unlock --force`): no deploy is live.
    Ours,
    /// Not read yet: a live deploy may hold it.
    Unknown,
}

/// Timings from the config: `rollout_timeout` and `deregistration_delay` of the environment,
/// `migrations.timeout`.
pub fn tuning_for(target: &Target) -> Tuning {
    let mut tuning = Tuning::default();
    if let Some(timeout) = target.env().rollout_timeout {
        tuning.rollout_timeout = timeout.into();
    }
    if let Some(delay) = target.env().deregistration_delay {
        tuning.deregistration_delay = delay.into();
    }
    if let Some(timeout) = target.config().migrations.as_ref().and_then(|m| m.timeout) {
        tuning.task_timeout = timeout.into();
    }
    tuning
}

#[async_trait]
impl Engine for EcsEngine {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn environment(&self) -> &str {
        self.ctx.target.environment()
    }

    fn retention(&self) -> Option<usize> {
        self.ctx
            .target
            .resolved()
            .retention()
            .map(|keep| keep as usize)
    }

    fn url(&self) -> Option<String> {
        self.ctx.target.env().url.clone()
    }

    async fn acquire_lock(
        &self,
        owner: &LockOwner,
        progress: &dyn Progress,
    ) -> EngineResult<LockToken> {
        let (token, lease) = lock::acquire(&self.ctx, owner, progress).await?;
        if let Ok(mut held) = self.lease.lock() {
            *held = Some(lease);
        }
        // This deploy holds the lock: what earlier deploys left unfinished can be settled.
        let newest = self.settle_unfinished(Lock::Ours, progress).await;
        if let Some(newest) = &newest {
            // The newest release: the next one's number needs no read either.
            self.remember(newest);
        }
        if let Ok(mut current) = self.current_at_lock.lock() {
            *current = newest.filter(|r| r.outcome == Outcome::Succeeded);
        }
        Ok(token)
    }

    async fn release_lock(&self, token: &LockToken) -> EngineResult<()> {
        // Dropping the lease stops its renewal before the item goes.
        let lease = self.lease.lock().ok().and_then(|mut held| held.take());
        self.forget_current_at_lock();
        let lost = lease.as_ref().and_then(lock::Lease::lost);
        drop(lease);
        let released = lock::release(&self.ctx, token).await;
        match lost {
            Some(lost) => Err(EngineError::failed(lost)),
            None => released,
        }
    }

    async fn force_unlock(&self) -> EngineResult<()> {
        lock::force_unlock(&self.ctx).await?;
        // The release the removed lock's deploy was making is settled, not left in progress.
        self.settle_unfinished(Lock::Ours, &Silent).await;
        Ok(())
    }

    async fn prepare_image(
        &self,
        source: &ImageSource,
        meta: &ReleaseMeta,
        progress: &dyn Progress,
    ) -> EngineResult<ImageRef> {
        image::prepare(
            &self.ctx.clients,
            &self.ctx.target,
            self.builder.as_ref(),
            source,
            meta,
            progress,
        )
        .await
    }

    async fn register_release(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        rollback_of: Option<u64>,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        self.register(image, meta, rollback_of, None, progress)
            .await
    }

    async fn register_release_of(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        only: &[String],
        current: &Release,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        let release = self
            .register(image, meta, None, Some((only, current)), progress)
            .await?;
        if let Ok(mut rolled) = self.only.lock() {
            rolled.insert(release.number, only.to_vec());
        }
        Ok(release)
    }

    async fn scale(
        &self,
        requests: &[ScaleRequest],
        author: &str,
        progress: &dyn Progress,
    ) -> EngineResult<Vec<ScalingEvent>> {
        self.ensure_lock_held()?;
        let current = self.current_release().await?.ok_or_else(|| {
            EngineError::not_found(format!(
                "{} has no release yet; deploy before scaling",
                self.ctx.target.environment()
            ))
        })?;
        scale::scale(&self.ctx, current.number, requests, author, progress).await
    }

    async fn scaling_events(&self) -> EngineResult<Vec<ScalingEvent>> {
        scale::events(&self.ctx, &Silent).await
    }

    async fn run_task(
        &self,
        on: TaskOn<'_>,
        service: &str,
        command: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<TaskExit> {
        let revision = match on {
            TaskOn::Release(release) => release
                .revision_of(service)
                .map(|r| r.revision.clone())
                .ok_or_else(|| {
                    EngineError::not_found(format!(
                        "release {} has no revision of service `{service}`",
                        release.number
                    ))
                })?,
            TaskOn::Image(image) => {
                revisions::register_for_task(&self.ctx, service, image, progress)
                    .await?
                    .arn()
                    .to_owned()
            }
        };
        task::run_task(
            &self.ctx,
            &self.tasks,
            &revision,
            service,
            command,
            progress,
        )
        .await
    }

    async fn exec(&self, request: &ExecRequest<'_>) -> EngineResult<i64> {
        exec::run(&self.ctx, request).await
    }

    async fn prune(
        &self,
        keep: usize,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> EngineResult<PruneReport> {
        let releases = self.releases().await?;
        let current = releases
            .iter()
            .find(|r| r.outcome == Outcome::Succeeded)
            .map(|r| r.number);
        let kept = kept_releases(&releases, current, keep);
        let removed = prune::run(&self.ctx, &releases, &kept, dry_run, progress).await?;
        Ok(PruneReport {
            environment: self.ctx.target.environment().to_owned(),
            dry_run,
            kept_releases: kept.into_iter().rev().collect(),
            removed,
        })
    }

    async fn stop_tasks(&self) -> EngineResult<()> {
        task::stop_all(&self.ctx, &self.tasks).await
    }

    async fn roll_out(
        &self,
        release: &Release,
        progress: &dyn Progress,
    ) -> EngineResult<RolloutOutcome> {
        self.ensure_lock_held()?;
        let only = self
            .only
            .lock()
            .ok()
            .and_then(|rolled| rolled.get(&release.number).cloned());
        rollout::roll_out(&self.ctx, release, only.as_deref(), progress).await
    }

    async fn diagnose(
        &self,
        release: &Release,
        progress: &dyn Progress,
    ) -> Vec<kaapi_core::diagnosis::Diagnosis> {
        diagnose::diagnose_release(&self.ctx, release, progress).await
    }

    async fn verify(&self, progress: &dyn Progress) -> EngineResult<Result<(), String>> {
        Ok(verify::verify(&self.ctx, progress).await)
    }

    async fn record(
        &self,
        number: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> EngineResult<()> {
        self.forget_current_at_lock();
        let mut release = self.find_release(number).await?;
        history::record(&self.ctx, &release, outcome, detail, &Silent).await?;
        release.outcome = outcome;
        release.detail = detail.map(str::to_owned);
        self.remember(&release);
        Ok(())
    }

    async fn record_schema_version(&self, number: u64, version: &str) -> EngineResult<()> {
        let mut release = self.find_release(number).await?;
        history::record_schema_version(&self.ctx, &release, version, &Silent).await?;
        release.schema_version = Some(version.to_owned());
        self.remember(&release);
        Ok(())
    }

    async fn releases(&self) -> EngineResult<Vec<Release>> {
        let releases = history::walk(&self.ctx, &Silent, |_| false).await?;
        releases.iter().for_each(|r| self.remember(r));
        Ok(releases)
    }

    async fn releases_since(&self, seen: &[Release]) -> EngineResult<HistoryRead> {
        let read = history::changes_since(&self.ctx, seen, &Silent).await?;
        read.releases().iter().for_each(|r| self.remember(r));
        Ok(read)
    }

    async fn current_release(&self) -> EngineResult<Option<Release>> {
        if let Some(current) = self.current_under_lock() {
            return Ok(Some(current));
        }
        let walked = history::walk(&self.ctx, &Silent, |r| r.outcome == Outcome::Succeeded).await?;
        walked.iter().for_each(|r| self.remember(r));
        Ok(walked.into_iter().find(|r| r.outcome == Outcome::Succeeded))
    }

    async fn running_services(&self) -> EngineResult<Vec<ServiceView>> {
        plan_view::running(&self.ctx).await
    }

    async fn planned_services(&self, image: &ImageRef) -> EngineResult<Vec<ServiceView>> {
        plan_view::planned(&self.ctx, image).await
    }

    async fn status(&self) -> EngineResult<StatusReport> {
        self.settle_unfinished(Lock::Unknown, &Silent).await;
        status::status(&self.ctx, &Silent).await
    }

    async fn traffic(&self, window: std::time::Duration) -> EngineResult<Option<Traffic>> {
        crate::metrics::traffic(&self.ctx, window, &Silent)
            .await
            .map(Some)
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &(dyn Fn(LogLine) + Send + Sync),
    ) -> EngineResult<()> {
        logs::logs(&self.ctx, query, sink, &Silent).await
    }
}
