//! The deploy pipeline as a sequence of steps over an [`Engine`]: lock, image, revisions,
//! migrations, rollout, verification, automatic rollback, record. The same for every engine.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::{select, Either};
use serde::Serialize;

use crate::config::CommandLine;
use crate::diagnosis::Diagnosis;
use crate::engine::{
    Engine, EngineError, EngineResult, ImageSource, LockOwner, RolloutOutcome, TaskExit, TaskOn,
};
use crate::plan::{accessory_diff, diff, main_image, Change, DeployPreview};
use crate::progress::{Event, Phase, Progress};
use crate::prune::PruneReport;
use crate::release::{ImageRef, Outcome, Release, ReleaseMeta};
use crate::schema::{self, SchemaCommands, SchemaRollback, SchemaStep};

/// Everything a deploy needs to know besides the engine (which is bound to the environment).
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub image: ImageSource,
    pub meta: ReleaseMeta,
    pub owner: LockOwner,
    pub migrations: Option<Migrations>,
    /// Deploy even when the image and every service's spec equal what serves now.
    pub force: bool,
    /// Only these services roll (`deploy --service`); the others keep their current revision.
    /// Empty: every service.
    pub services: Vec<String>,
}

/// The migrations step of a config: the service whose revision runs it, and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrations {
    pub service: String,
    pub command: Vec<String>,
    /// Reads (and records with each release) the database's schema version.
    pub schema: Option<SchemaCommands>,
}

impl Migrations {
    pub fn of(config: &crate::config::Config) -> Option<Self> {
        let migrations = config.migrations.as_ref()?;
        let service = config.migrations_service()?;
        let schema = migrations
            .version_command
            .as_ref()
            .map(|version| SchemaCommands {
                service: service.to_owned(),
                version: version.argv().to_vec(),
                downgrade: migrations
                    .downgrade_command
                    .as_ref()
                    .map(|c| c.argv().to_vec()),
            });
        Some(Self {
            service: service.to_owned(),
            command: migrations.command.argv().to_vec(),
            schema,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTiming {
    pub phase: Phase,
    /// When it started, in seconds after the command started.
    pub started_seconds: f64,
    pub seconds: f64,
    pub ok: bool,
}

/// What happened, for people (message) and machines (`--json`, CI outputs, benchmarks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployReport {
    pub environment: String,
    pub release: Option<u64>,
    pub image: Option<ImageRef>,
    pub outcome: Outcome,
    /// One sentence: what happened and, on failure, what failed and what serves now.
    pub message: String,
    /// The release serving traffic when the command ended.
    pub serving: Option<u64>,
    pub migration: Option<TaskExit>,
    pub phases: Vec<PhaseTiming>,
    pub total_seconds: f64,
    /// Set when nothing was deployed because nothing would change (no release registered).
    #[serde(default)]
    pub unchanged: bool,
    /// Why each failed replica or task failed, with its last lines (empty on success).
    pub diagnosis: Vec<Diagnosis>,
    /// What the automatic prune after a successful deploy or rollback removed (`[retention]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<PruneReport>,
    /// Set when a deploy's migrations changed the schema version and the deploy then rolled
    /// back automatically: whether the database was migrated back down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRollback>,
}

impl DeployReport {
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }
}

/// Collects phase timings and forwards events.
struct Timer<'a> {
    progress: &'a dyn Progress,
    created: Instant,
    phases: Mutex<Vec<PhaseTiming>>,
    /// Release registered so far (0 = none), so an interrupted deploy can still be recorded.
    registered: AtomicU64,
}

impl<'a> Timer<'a> {
    fn new(progress: &'a dyn Progress) -> Self {
        Self {
            progress,
            created: Instant::now(),
            phases: Mutex::new(Vec::new()),
            registered: AtomicU64::new(0),
        }
    }

    async fn phase<T, F>(&self, phase: Phase, work: F) -> EngineResult<T>
    where
        F: Future<Output = EngineResult<T>>,
    {
        self.judged_phase(phase, work, |_| true).await
    }

    /// A phase whose answer can itself say it failed (a rollout that ran and failed, a task
    /// that exited non-zero): `succeeded` judges it, so the phase line does not say "ok".
    async fn judged_phase<T, F>(
        &self,
        phase: Phase,
        work: F,
        succeeded: impl Fn(&T) -> bool,
    ) -> EngineResult<T>
    where
        F: Future<Output = EngineResult<T>>,
    {
        self.progress.event(Event::PhaseStarted { phase });
        let started = Instant::now();
        let result = work.await;
        let elapsed = started.elapsed();
        let ok = result.as_ref().is_ok_and(succeeded);
        self.progress
            .event(Event::PhaseFinished { phase, elapsed, ok });
        if let Ok(mut phases) = self.phases.lock() {
            phases.push(PhaseTiming {
                phase,
                started_seconds: started.duration_since(self.created).as_secs_f64(),
                seconds: elapsed.as_secs_f64(),
                ok,
            });
        }
        result
    }

    /// Marks the last run of `phase` as failed: a rollout or verification that ran but judged
    /// the release bad.
    fn mark_failed(&self, phase: Phase) {
        if let Ok(mut phases) = self.phases.lock() {
            if let Some(timing) = phases.iter_mut().rev().find(|t| t.phase == phase) {
                timing.ok = false;
            }
        }
    }

    fn ran(&self, phase: Phase) -> bool {
        self.phases
            .lock()
            .is_ok_and(|phases| phases.iter().any(|t| t.phase == phase))
    }

    fn timings(&self) -> Vec<PhaseTiming> {
        self.phases.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Runs `body` holding the environment's deploy lock: the lock is released on every path, and
/// when `interrupt` resolves first (Ctrl-C) the body is dropped, the one-off tasks it started are
/// stopped, the release it registered is recorded as interrupted, and the call fails saying so.
async fn with_lock<T>(
    engine: &dyn Engine,
    owner: &LockOwner,
    timer: &Timer<'_>,
    interrupt: impl Future<Output = ()>,
    body: impl Future<Output = EngineResult<T>>,
) -> EngineResult<T> {
    let progress = timer.progress;
    let token = timer
        .phase(Phase::Lock, engine.acquire_lock(owner, progress))
        .await?;
    let result = match select(Box::pin(body), Box::pin(interrupt)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), body)) => {
            drop(body);
            Err(interrupted(engine, timer).await)
        }
    };
    if let Err(e) = engine.release_lock(&token).await {
        progress.warning(format!("could not release the deploy lock: {e}"));
    }
    result
}

/// Runs a full deploy. `interrupt` resolves when the user asks to stop (Ctrl-C).
pub async fn deploy(
    engine: &dyn Engine,
    plan: &DeployPlan,
    progress: &dyn Progress,
    interrupt: impl Future<Output = ()>,
) -> EngineResult<DeployReport> {
    let started = Instant::now();
    let timer = Timer::new(progress);
    let body = deploy_locked(engine, plan, &timer);
    let mut report = with_lock(engine, &plan.owner, &timer, interrupt, body).await?;
    report.phases = timer.timings();
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn interrupted(engine: &dyn Engine, timer: &Timer<'_>) -> EngineError {
    if let Err(e) = engine.stop_tasks().await {
        timer
            .progress
            .warning(format!("could not stop the one-off task: {e}"));
    }
    let number = timer.registered.load(Ordering::SeqCst);
    if number > 0 {
        let _ = engine
            .record(
                number,
                Outcome::Interrupted,
                Some("interrupted by the user"),
            )
            .await;
    }
    let environment = engine.environment();
    EngineError::failed(format!(
        "`{environment}`: interrupted; run `kaapi-deploy status {environment}` to see what serves"
    ))
}

/// Where a deploy's migrations run: the new release's revision of their service, or, when
/// `--service` leaves that service at its old revision, the new image (never old code).
fn migrations_on<'a>(
    plan: &DeployPlan,
    migrations: &Migrations,
    release: &'a Release,
    image: Option<&'a ImageRef>,
) -> TaskOn<'a> {
    match image {
        Some(image)
            if !plan.services.is_empty() && !plan.services.contains(&migrations.service) =>
        {
            TaskOn::Image(image)
        }
        _ => TaskOn::Release(release),
    }
}

/// The accessories step, shown as a phase only for environments that have accessories.
async fn start_accessories(engine: &dyn Engine, timer: &Timer<'_>) -> EngineResult<()> {
    if !engine.has_accessories() {
        return Ok(());
    }
    timer
        .phase(Phase::Accessories, engine.start_accessories(timer.progress))
        .await
}

async fn deploy_locked(
    engine: &dyn Engine,
    plan: &DeployPlan,
    timer: &Timer<'_>,
) -> EngineResult<DeployReport> {
    let progress = timer.progress;
    let previous = engine.current_release().await?;
    if !plan.services.is_empty() && previous.is_none() {
        let environment = engine.environment();
        return Err(EngineError::failed(format!(
            "`{environment}` has no release yet and its first deploy rolls every service; run \
             `kaapi-deploy deploy {environment}` without --service"
        )));
    }
    let build_phase = match plan.image {
        ImageSource::Build => Phase::Build,
        ImageSource::Existing(_) => Phase::Push,
    };
    let image = timer
        .phase(
            build_phase,
            engine.prepare_image(&plan.image, &plan.meta, progress),
        )
        .await?;
    // Before the release exists: an accessory that cannot start stops the deploy here, with
    // nothing recorded and nothing serving changed.
    start_accessories(engine, timer).await?;
    if let (false, Some(current)) = (plan.force, &previous) {
        if let Some(report) = unchanged_report(engine, current, &image, progress).await {
            return Ok(report);
        }
    }
    let register = async {
        match &previous {
            Some(current) if !plan.services.is_empty() => {
                engine
                    .register_release_of(&image, &plan.meta, &plan.services, current, progress)
                    .await
            }
            _ => {
                engine
                    .register_release(&image, &plan.meta, None, progress)
                    .await
            }
        }
    };
    let release = timer.phase(Phase::Register, register).await?;
    timer.registered.store(release.number, Ordering::SeqCst);
    let mut report = DeployReport {
        environment: engine.environment().to_owned(),
        release: Some(release.number),
        image: Some(image),
        outcome: Outcome::InProgress,
        message: String::new(),
        serving: previous.as_ref().map(|r| r.number),
        migration: None,
        phases: Vec::new(),
        total_seconds: 0.0,
        unchanged: false,
        diagnosis: Vec::new(),
        pruned: None,
        schema: None,
    };

    if let Some(migrations) = &plan.migrations {
        let exit = timer
            .judged_phase(
                Phase::Migrate,
                engine.run_task(
                    migrations_on(plan, migrations, &release, report.image.as_ref()),
                    &migrations.service,
                    &migrations.command,
                    progress,
                ),
                |exit| exit.exit_code == 0,
            )
            .await;
        let exit = match exit {
            Ok(exit) => exit,
            Err(e) => {
                let detail = format!("migrations could not run: {e}");
                return finish(engine, &mut report, Outcome::FailedMigration, detail).await;
            }
        };
        report.migration = Some(exit.clone());
        if exit.exit_code != 0 {
            timer.mark_failed(Phase::Migrate);
            report.diagnosis = exit.diagnosis.clone().into_iter().collect();
            let reason = exit
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let detail = format!(
                "migrations exited with code {}{reason}; nothing serving was changed",
                exit.exit_code
            );
            return finish(engine, &mut report, Outcome::FailedMigration, detail).await;
        }
    }

    // The schema version is read on the new release while it rolls out: both only need the
    // migrations done, and the read is a container start of its own.
    let schema_read = async {
        match &plan.migrations {
            Some(migrations) => record_schema_version(engine, &release, migrations, progress).await,
            None => None,
        }
    };
    // The automatic rollback below needs the version the migrations left.
    let (rollout, schema_after) = futures_util::future::join(
        timer.judged_phase(
            Phase::Rollout,
            engine.roll_out(&release, progress),
            RolloutOutcome::completed,
        ),
        schema_read,
    )
    .await;
    let failure = match rollout {
        Ok(RolloutOutcome::Completed) => {
            match timer
                .judged_phase(Phase::Verify, engine.verify(progress), Result::is_ok)
                .await
            {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(format!("verification failed: {reason}")),
                Err(e) => Some(format!("verification could not run: {e}")),
            }
        }
        Ok(RolloutOutcome::Failed {
            reason,
            engine_rolled_back_to,
        }) => Some(match engine_rolled_back_to {
            Some(to) => format!(
                "rollout failed: {reason}; {} rolled back to {to}",
                engine.name()
            ),
            None => format!("rollout failed: {reason}"),
        }),
        Err(e) => Some(format!("rollout failed: {e}")),
    };

    let Some(failure) = failure else {
        report.serving = Some(release.number);
        let detail = format!("release {} is live", release.number);
        return finish_live(engine, &mut report, detail, progress).await;
    };

    timer.mark_failed(if timer.ran(Phase::Verify) {
        Phase::Verify
    } else {
        Phase::Rollout
    });
    progress.warning(failure.clone());
    // Before rolling back: the failed replicas or tasks may not outlive the rollback.
    report.diagnosis = engine.diagnose(&release, progress).await;
    let Some(previous) = previous else {
        let detail = format!("{failure}; there is no earlier release to roll back to");
        report.serving = None;
        return finish(engine, &mut report, Outcome::Failed, detail).await;
    };
    report.schema = match (&plan.migrations, &schema_after) {
        (Some(migrations), Some(after)) => {
            let on = migrations_on(plan, migrations, &release, report.image.as_ref());
            schema_before_rollback(engine, migrations, on, after, &release, &previous, timer).await
        }
        _ => None,
    };
    progress.info(format!("rolling back to release {}", previous.number));
    let restored = timer
        .judged_phase(
            Phase::Rollback,
            engine.roll_out(&previous, progress),
            RolloutOutcome::completed,
        )
        .await;
    match restored {
        Ok(RolloutOutcome::Completed) => {
            report.serving = Some(previous.number);
            let detail = format!(
                "{failure}; rolled back automatically, release {} serves{}",
                previous.number,
                schema_clause(&report)
            );
            finish(engine, &mut report, Outcome::RolledBack, detail).await
        }
        Ok(RolloutOutcome::Failed { reason, .. }) => {
            timer.mark_failed(Phase::Rollback);
            report.serving = None;
            let detail = format!(
                "{failure}; the rollback to release {} failed too: {reason}{}",
                previous.number,
                schema_clause(&report)
            );
            finish(engine, &mut report, Outcome::Failed, detail).await
        }
        Err(e) => {
            report.serving = None;
            let detail = format!(
                "{failure}; the rollback to release {} failed too: {e}{}",
                previous.number,
                schema_clause(&report)
            );
            finish(engine, &mut report, Outcome::Failed, detail).await
        }
    }
}

/// After a deploy's migrations: reads the database's schema version on the new release and
/// records it with the release; returns the version read. A failure only warns (the migrations
/// succeeded): the deploy goes on, and a later rollback to this release is unchecked.
async fn record_schema_version(
    engine: &dyn Engine,
    release: &Release,
    migrations: &Migrations,
    progress: &dyn Progress,
) -> Option<String> {
    let commands = migrations.schema.as_ref()?;
    let (version, recorded) = match schema::read_version(engine, release, commands, progress).await
    {
        Ok(version) => {
            progress.info(format!("database schema version: {version}"));
            let recorded = engine
                .record_schema_version(release.number, &version)
                .await
                .map_err(|e| e.to_string());
            (Some(version), recorded)
        }
        Err(e) => (None, Err(e.to_string())),
    };
    if let Err(e) = recorded {
        progress.warning(format!(
            "release {} has no schema version ({e}); a rollback to it will not be checked",
            release.number
        ));
    }
    version
}

/// Before a deploy's automatic rollback: when the deploy's migrations left the database at
/// another schema version (`after`) than the one `previous` ran on, runs the downgrade command
/// on the new code `on` (as `rollback` does), or warns when none is configured. Never stops
/// the rollback: the old code must serve again either way, even on a database ahead of it.
async fn schema_before_rollback(
    engine: &dyn Engine,
    migrations: &Migrations,
    on: TaskOn<'_>,
    after: &str,
    release: &Release,
    previous: &Release,
    timer: &Timer<'_>,
) -> Option<SchemaRollback> {
    let commands = migrations.schema.as_ref()?;
    let step = schema::decide(
        after,
        previous.schema_version.as_deref(),
        commands.downgrade.is_some(),
        false,
    );
    let rollback = match step {
        SchemaStep::Downgrade { from, to } => {
            let failure = downgrade(engine, commands, on, &from, &to, timer)
                .await
                .err();
            let rerun = rerun_downgrade(engine.environment(), commands, on, &to);
            SchemaRollback::downgraded(from, to, release.number, previous.number, failure, rerun)
        }
        SchemaStep::Refuse { database, target } => {
            SchemaRollback::not_configured(database, target, previous.number)
        }
        SchemaStep::RollBack | SchemaStep::Unchecked | SchemaStep::Forced { .. } => return None,
    };
    match rollback.downgrade {
        schema::DowngradeResult::Succeeded => timer.progress.info(rollback.message.clone()),
        _ => timer.progress.warning(rollback.message.clone()),
    }
    Some(rollback)
}

/// The `run` command that retries a downgrade on the code it ran on, when that is a release
/// (`run` cannot run an image no release carries).
fn rerun_downgrade(
    environment: &str,
    commands: &SchemaCommands,
    on: TaskOn<'_>,
    to: &str,
) -> Option<String> {
    let TaskOn::Release(release) = on else {
        return None;
    };
    let argv = CommandLine::new(commands.downgrade_to(to)?);
    Some(format!(
        "kaapi-deploy run {environment} --service {} --release {} -- {argv}",
        commands.service, release.number
    ))
}

/// The end of a rolled-back deploy's one-sentence result when the schema was involved.
fn schema_clause(report: &DeployReport) -> String {
    report
        .schema
        .as_ref()
        .map(|schema| format!("; {}", schema.summary()))
        .unwrap_or_default()
}

/// The report of a deploy that changes nothing, when `image` and today's config give exactly
/// what `current` runs; `None` when anything differs or the engine cannot tell (then it deploys).
async fn unchanged_report(
    engine: &dyn Engine,
    current: &Release,
    image: &ImageRef,
    progress: &dyn Progress,
) -> Option<DeployReport> {
    let changes = match compare(engine, image).await {
        Ok(changes) => changes,
        Err(e) => {
            progress.info(format!("cannot compare with what runs ({e}); deploying"));
            return None;
        }
    };
    if !changes.is_empty() {
        return None;
    }
    Some(DeployReport {
        environment: engine.environment().to_owned(),
        release: Some(current.number),
        image: Some(image.clone()),
        outcome: Outcome::Succeeded,
        message: format!(
            "nothing to deploy: release {} already runs image {} with the same settings (`deploy --force` deploys anyway)",
            current.number, image.digest
        ),
        serving: Some(current.number),
        migration: None,
        phases: Vec::new(),
        total_seconds: 0.0,
        unchanged: true,
        diagnosis: Vec::new(),
        pruned: None,
        schema: None,
    })
}

/// The changes deploying `image` with today's config would make to what runs now.
async fn compare(engine: &dyn Engine, image: &ImageRef) -> EngineResult<Vec<Change>> {
    let now = engine.running_services().await?;
    let next = engine.planned_services(image).await?;
    Ok(diff(&now, &next))
}

/// What `plan` needs besides the engine.
#[derive(Debug, Clone)]
pub struct PreviewPlan {
    pub image: ImageSource,
    pub meta: ReleaseMeta,
    pub migrations: Option<Migrations>,
}

/// What a deploy would change (`plan ENV`, `deploy --dry-run`): prepares the image (a cached
/// build; pushed where the environment has a registry, which changes nothing that runs), then
/// compares. Takes no lock, registers nothing, changes nothing that serves.
pub async fn preview(
    engine: &dyn Engine,
    plan: &PreviewPlan,
    progress: &dyn Progress,
) -> EngineResult<DeployPreview> {
    let image = engine
        .prepare_image(&plan.image, &plan.meta, progress)
        .await?;
    let current = engine.current_release().await?;
    let now = engine.running_services().await?;
    let next = engine.planned_services(&image).await?;
    let mut changes = diff(&now, &next);
    // Accessories are recreated by a deploy without a release: they do not run migrations.
    let migrations = plan
        .migrations
        .as_ref()
        .filter(|_| !changes.is_empty())
        .map(|m| m.command.clone());
    changes.extend(accessory_diff(
        &engine.running_accessories().await?,
        &engine.planned_accessories().await?,
    ));
    Ok(DeployPreview {
        environment: engine.environment().to_owned(),
        current_release: current.map(|r| r.number),
        image_before: main_image(&now),
        image_after: main_image(&next).unwrap_or_else(|| image.digest.clone()),
        changes,
        migrations,
    })
}

async fn finish(
    engine: &dyn Engine,
    report: &mut DeployReport,
    outcome: Outcome,
    detail: String,
) -> EngineResult<DeployReport> {
    if let Some(number) = report.release {
        let stored = if outcome == Outcome::Succeeded {
            None
        } else {
            Some(detail.as_str())
        };
        engine.record(number, outcome, stored).await?;
    }
    report.outcome = outcome;
    report.message = detail;
    Ok(report.clone())
}

/// Records a release that went live, then prunes beyond the environment's retention.
async fn finish_live(
    engine: &dyn Engine,
    report: &mut DeployReport,
    detail: String,
    progress: &dyn Progress,
) -> EngineResult<DeployReport> {
    finish(engine, report, Outcome::Succeeded, detail).await?;
    report.pruned = auto_prune(engine, progress).await;
    Ok(report.clone())
}

/// The automatic prune after a release went live (the caller holds the deploy lock). Best
/// effort: the release is live and recorded, so a failure only warns.
async fn auto_prune(engine: &dyn Engine, progress: &dyn Progress) -> Option<PruneReport> {
    let keep = engine.retention()?;
    match engine.prune(keep, false, progress).await {
        Ok(report) => Some(report),
        Err(e) => {
            progress.warning(format!(
                "automatic prune (retention keep = {keep}) failed: {e}; the deploy stands, \
                 `kaapi-deploy prune {}` retries it",
                engine.environment()
            ));
            None
        }
    }
}

/// Which release `rollback` goes back to: `--to N`, or the last good one before the current.
pub fn rollback_target(releases: &[Release], to: Option<u64>) -> Result<&Release, EngineError> {
    if let Some(number) = to {
        let release = releases
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| {
                EngineError::not_found(format!(
                    "there is no release {number}; `kaapi-deploy releases` lists them"
                ))
            })?;
        if release.outcome == Outcome::FailedMigration {
            return Err(EngineError::failed(format!(
                "release {number} failed its migrations and never served; pick another with `--to`"
            )));
        }
        return Ok(release);
    }
    let current = releases.iter().find(|r| r.outcome == Outcome::Succeeded);
    let Some(current) = current else {
        return Err(EngineError::not_found(
            "nothing serves yet, so there is nothing to roll back from",
        ));
    };
    releases
        .iter()
        .filter(|r| r.number < current.number && r.outcome == Outcome::Succeeded)
        .max_by_key(|r| r.number)
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "release {} is the only good release; there is nothing earlier to roll back to",
                current.number
            ))
        })
}

/// What `rollback` needs besides the engine.
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    /// `--to N`; the last good release before the current one when absent.
    pub to: Option<u64>,
    pub meta: ReleaseMeta,
    pub owner: LockOwner,
    /// The config's schema commands: the database's version is checked against the target's
    /// before anything changes. A rollback never runs the migrations command.
    pub schema: Option<SchemaCommands>,
    /// Roll back even when the database's schema version differs from the target's.
    pub force: bool,
}

/// Re-deploys an earlier release as a new one (`rollback [--to N]`), with the same zero-downtime
/// rollout and verification; if that fails, the release that served before serves again.
pub async fn rollback(
    engine: &dyn Engine,
    plan: &RollbackPlan,
    progress: &dyn Progress,
    interrupt: impl Future<Output = ()>,
) -> EngineResult<DeployReport> {
    let started = Instant::now();
    let timer = Timer::new(progress);
    let body = rollback_locked(engine, plan, &timer);
    let mut report = with_lock(engine, &plan.owner, &timer, interrupt, body).await?;
    report.phases = timer.timings();
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `scale ENV SERVICE=N…` under the deploy lock: no image, no release, no migrations.
pub async fn scale(
    engine: &dyn Engine,
    requests: &[crate::scaling::ScaleRequest],
    owner: &LockOwner,
    progress: &dyn Progress,
    interrupt: impl Future<Output = ()>,
) -> EngineResult<Vec<crate::scaling::ScalingEvent>> {
    let timer = Timer::new(progress);
    let body = engine.scale(requests, &owner.holder, progress);
    with_lock(engine, owner, &timer, interrupt, body).await
}

/// What `migrate` needs besides the engine.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    pub meta: ReleaseMeta,
    pub owner: LockOwner,
    pub migrations: Migrations,
}

/// Only the migrations (`migrate ENV`): builds the image of the working tree and runs the
/// migrations command on it as a one-off task, under the deploy lock. Nothing serving changes
/// and no release is recorded.
pub async fn migrate(
    engine: &dyn Engine,
    plan: &MigratePlan,
    progress: &dyn Progress,
    interrupt: impl Future<Output = ()>,
) -> EngineResult<TaskExit> {
    let timer = Timer::new(progress);
    let body = async {
        let image = timer
            .phase(
                Phase::Build,
                engine.prepare_image(&ImageSource::Build, &plan.meta, progress),
            )
            .await?;
        start_accessories(engine, &timer).await?;
        let migrations = &plan.migrations;
        timer
            .judged_phase(
                Phase::Migrate,
                engine.run_task(
                    TaskOn::Image(&image),
                    &migrations.service,
                    &migrations.command,
                    progress,
                ),
                |exit| exit.exit_code == 0,
            )
            .await
    };
    with_lock(engine, &plan.owner, &timer, interrupt, body).await
}

async fn rollback_locked(
    engine: &dyn Engine,
    plan: &RollbackPlan,
    timer: &Timer<'_>,
) -> EngineResult<DeployReport> {
    let progress = timer.progress;
    let releases = engine.releases().await?;
    let current = releases
        .iter()
        .find(|r| r.outcome == Outcome::Succeeded)
        .cloned();
    let target = rollback_target(&releases, plan.to)?.clone();
    progress.info(format!(
        "rolling back to release {} ({})",
        target.number, target.image.digest
    ));
    start_accessories(engine, timer).await?;
    if let (Some(commands), Some(current)) = (&plan.schema, &current) {
        check_schema(engine, plan, commands, current, &target, timer).await?;
    }
    let release = timer
        .phase(
            Phase::Register,
            engine.register_release(&target.image, &plan.meta, Some(target.number), progress),
        )
        .await?;
    timer.registered.store(release.number, Ordering::SeqCst);
    // The copy runs the target's code, so it needs the target's schema version.
    if let Some(version) = &target.schema_version {
        if let Err(e) = engine.record_schema_version(release.number, version).await {
            progress.warning(format!(
                "could not record schema version {version} with release {}: {e}",
                release.number
            ));
        }
    }
    let mut report = DeployReport {
        environment: engine.environment().to_owned(),
        release: Some(release.number),
        image: Some(target.image.clone()),
        outcome: Outcome::InProgress,
        message: String::new(),
        serving: current.as_ref().map(|r| r.number),
        migration: None,
        phases: Vec::new(),
        total_seconds: 0.0,
        unchanged: false,
        diagnosis: Vec::new(),
        pruned: None,
        schema: None,
    };
    let rollout = timer
        .judged_phase(
            Phase::Rollout,
            engine.roll_out(&release, progress),
            RolloutOutcome::completed,
        )
        .await;
    let failure = match rollout {
        Ok(RolloutOutcome::Completed) => {
            match timer
                .judged_phase(Phase::Verify, engine.verify(progress), Result::is_ok)
                .await
            {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(format!("verification failed: {reason}")),
                Err(e) => Some(format!("verification could not run: {e}")),
            }
        }
        Ok(RolloutOutcome::Failed { reason, .. }) => Some(format!("rollout failed: {reason}")),
        Err(e) => Some(format!("rollout failed: {e}")),
    };
    let Some(failure) = failure else {
        report.serving = Some(release.number);
        let detail = format!(
            "release {} (a copy of release {}) is live",
            release.number, target.number
        );
        return finish_live(engine, &mut report, detail, progress).await;
    };
    timer.mark_failed(if timer.ran(Phase::Verify) {
        Phase::Verify
    } else {
        Phase::Rollout
    });
    report.diagnosis = engine.diagnose(&release, progress).await;
    match current {
        Some(current) => {
            let restored = timer
                .judged_phase(
                    Phase::Rollback,
                    engine.roll_out(&current, progress),
                    RolloutOutcome::completed,
                )
                .await;
            let ok = matches!(restored, Ok(RolloutOutcome::Completed));
            if !ok {
                timer.mark_failed(Phase::Rollback);
            }
            report.serving = ok.then_some(current.number);
            let detail = if ok {
                format!("{failure}; release {} serves again", current.number)
            } else {
                format!("{failure}; restoring release {} failed too", current.number)
            };
            let outcome = if ok {
                Outcome::RolledBack
            } else {
                Outcome::Failed
            };
            finish(engine, &mut report, outcome, detail).await
        }
        None => finish(engine, &mut report, Outcome::Failed, failure).await,
    }
}

/// Before a rollback changes anything: reads the database's schema version on the release that
/// serves now (the target's older code may not even read a newer database) and compares it with
/// the version the target recorded; then downgrades, warns or refuses (see [`schema::decide`]).
async fn check_schema(
    engine: &dyn Engine,
    plan: &RollbackPlan,
    commands: &SchemaCommands,
    current: &Release,
    target: &Release,
    timer: &Timer<'_>,
) -> EngineResult<()> {
    let progress = timer.progress;
    let environment = engine.environment();
    let forced = format!(
        "kaapi-deploy rollback {environment} --to {} --force",
        target.number
    );
    let database = match schema::read_version(engine, current, commands, progress).await {
        Ok(version) => version,
        Err(e) if plan.force => {
            progress.warning(format!(
                "cannot read the database's schema version ({e}); --force: rolling back unchecked"
            ));
            return Ok(());
        }
        Err(e) => {
            return Err(EngineError::failed(format!(
                "cannot read the database's schema version on release {}: {e}; nothing was changed (`{forced}` rolls back without the check)",
                current.number
            )))
        }
    };
    let step = schema::decide(
        &database,
        target.schema_version.as_deref(),
        commands.downgrade.is_some(),
        plan.force,
    );
    match step {
        SchemaStep::RollBack => {
            progress.info(format!(
                "database schema version {database} is the one release {} ran on",
                target.number
            ));
            Ok(())
        }
        SchemaStep::Unchecked => {
            progress.warning(format!(
                "release {} recorded no schema version (deployed before version_command was configured); the database is at {database}: rolling back unchecked",
                target.number
            ));
            Ok(())
        }
        SchemaStep::Forced { database, target: version } => {
            progress.warning(format!(
                "--force: release {}'s code ran on schema version {version}, the database is at {database} and stays there",
                target.number
            ));
            Ok(())
        }
        SchemaStep::Refuse { database, target: version } => Err(EngineError::failed(format!(
            "the database is at schema version {database}, but release {} ran on {version}: its code predates the database. Nothing was changed. Configure [migrations] downgrade_command to migrate the database down first, or run `{forced}` to roll back anyway",
            target.number
        ))),
        SchemaStep::Downgrade { from, to } => {
            downgrade(engine, commands, TaskOn::Release(current), &from, &to, timer)
                .await
                .map_err(|failure| EngineError::failed(format!(
                    "the downgrade to schema version {to} {failure}; the rollback stopped before rolling anything out, release {} still serves",
                    current.number
                )))
        }
    }
}

/// Runs the downgrade command on the newer code `on` (the serving release for `rollback`, the
/// failed new release before a deploy's automatic rollback), which knows how to undo its own
/// migrations. `Err` says how it failed ("exited with code 1"); the caller decides what then.
async fn downgrade(
    engine: &dyn Engine,
    commands: &SchemaCommands,
    on: TaskOn<'_>,
    from: &str,
    to: &str,
    timer: &Timer<'_>,
) -> Result<(), String> {
    let progress = timer.progress;
    let Some(argv) = commands.downgrade_to(to) else {
        return Ok(());
    };
    let code = match on {
        TaskOn::Release(release) => format!("release {}", release.number),
        TaskOn::Image(image) => format!("image {}", image.digest),
    };
    progress.info(format!(
        "migrating the database down from schema version {from} to {to} on {code}"
    ));
    let exit = timer
        .judged_phase(
            Phase::Migrate,
            engine.run_task(on, &commands.service, &argv, progress),
            |exit| exit.exit_code == 0,
        )
        .await;
    match exit {
        Ok(exit) if exit.exit_code == 0 => Ok(()),
        Ok(exit) => Err(format!("exited with code {}", exit.exit_code)),
        Err(e) => Err(format!("could not run: {e}")),
    }
}
