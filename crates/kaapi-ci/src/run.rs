//! One CI deploy: runs the core pipeline, then tells GitHub how it went (outputs, summary,
//! annotations). Engine-independent, so it is tested with a scripted engine.

use std::future::Future;
use std::sync::Mutex;

use kaapi_core::engine::Engine;
use kaapi_core::pipeline::{self, DeployPlan, DeployReport, PhaseTiming};
use kaapi_core::progress::{Event, Phase, Progress};

use crate::decide::CiDecision;
use crate::github::{self, GithubContext};
use crate::summary::{self, Ended, SummaryInput};

/// Exit code of a deploy that ran and failed.
pub const EXIT_FAILED: u8 = 1;

/// A deploy as CI runs it.
#[derive(Debug, Clone)]
pub struct CiPlan {
    pub plan: DeployPlan,
    /// Where the image comes from, for people: `built from this commit`, `promoted from …`.
    pub image_origin: String,
}

/// How a CI deploy ended.
#[derive(Debug)]
pub struct CiOutcome {
    /// 0 when the release is live, 1 otherwise.
    pub exit_code: u8,
    /// The pipeline's report, when it ran to the end.
    pub report: Option<DeployReport>,
    /// Why the pipeline stopped before reporting (lock held, build failed, …).
    pub error: Option<String>,
    /// Workflow commands (`::error …::…`) for the CLI to print on stdout.
    pub annotations: Vec<String>,
    /// The summary markdown that was (or would have been) appended to `$GITHUB_STEP_SUMMARY`.
    pub summary: String,
}

/// Forwards progress events and remembers each phase's timing and whether it failed, so a
/// pipeline that stopped with an error can still say where.
struct PhaseRecorder<'a> {
    inner: &'a dyn Progress,
    created: std::time::Instant,
    finished: Mutex<Vec<(PhaseTiming, bool)>>,
}

impl Progress for PhaseRecorder<'_> {
    fn event(&self, event: Event) {
        if let Event::PhaseFinished { phase, elapsed, ok } = &event {
            if let Ok(mut finished) = self.finished.lock() {
                let seconds = elapsed.as_secs_f64();
                let started_seconds = (self.created.elapsed().as_secs_f64() - seconds).max(0.0);
                finished.push((
                    PhaseTiming {
                        phase: *phase,
                        started_seconds,
                        seconds,
                        ok: *ok,
                    },
                    *ok,
                ));
            }
        }
        self.inner.event(event);
    }
}

impl PhaseRecorder<'_> {
    fn phases(&self) -> (Vec<PhaseTiming>, Option<Phase>) {
        let finished = self.finished.lock().map(|f| f.clone()).unwrap_or_default();
        let failed = finished
            .iter()
            .rev()
            .find(|(_, ok)| !ok)
            .map(|(t, _)| t.phase);
        (finished.into_iter().map(|(t, _)| t).collect(), failed)
    }
}

/// Runs the pipeline for `ci.plan` and writes `$GITHUB_OUTPUT` (`environment`, `release`,
/// `image` digest, `outcome`), the `$GITHUB_STEP_SUMMARY` markdown and, on failure, an
/// `::error` annotation. Never fails itself: problems end up in the outcome.
pub async fn run_ci(
    engine: &dyn Engine,
    ci: &CiPlan,
    ctx: &GithubContext,
    progress: &dyn Progress,
    interrupt: impl Future<Output = ()>,
) -> CiOutcome {
    let recorder = PhaseRecorder {
        inner: progress,
        created: std::time::Instant::now(),
        finished: Mutex::new(Vec::new()),
    };
    let result = pipeline::deploy(engine, &ci.plan, &recorder, interrupt).await;
    let environment = engine.environment();
    let mut annotations = Vec::new();

    let succeeded = matches!(&result, Ok(report) if report.succeeded());
    // After a failure, say what serves now as the engine sees it (best effort).
    let serving_now = if succeeded {
        None
    } else {
        engine.current_release().await.ok().flatten()
    };
    let (phases, failed_phase) = recorder.phases();
    let error_text = result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    let ended = match &result {
        Ok(report) => Ended::Report(report),
        Err(_) => Ended::Error {
            message: &error_text,
            failed_phase,
            phases: &phases,
        },
    };
    let markdown = summary::render(&SummaryInput {
        ctx,
        environment,
        plan: &ci.plan,
        image_origin: &ci.image_origin,
        ended,
        serving_now: serving_now.as_ref(),
    });

    let mut outputs: Vec<(&str, String)> = vec![("environment", environment.to_owned())];
    match &result {
        Ok(report) => {
            if let Some(number) = report.release {
                outputs.push(("release", number.to_string()));
            }
            if let Some(image) = &report.image {
                outputs.push(("image", image.digest.clone()));
            }
            outputs.push(("outcome", report.outcome.to_string()));
        }
        Err(_) => outputs.push(("outcome", "error".to_owned())),
    }
    let pairs: Vec<(&str, &str)> = outputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Err(e) = github::write_outputs(ctx, &pairs) {
        annotations.push(github::error_annotation(
            "Cannot write step outputs",
            &e.to_string(),
        ));
    }
    if let Err(e) = github::write_summary(ctx, &markdown) {
        annotations.push(github::error_annotation(
            "Cannot write the summary",
            &e.to_string(),
        ));
    }

    let failure = match &result {
        Ok(report) if report.succeeded() => None,
        Ok(report) => Some(report.message.clone()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = &failure {
        annotations.insert(
            0,
            github::error_annotation(&format!("Deploy to {environment} failed"), message),
        );
    }
    let (report, error) = match result {
        Ok(report) => (Some(report), None),
        Err(e) => (None, Some(e.to_string())),
    };
    CiOutcome {
        // A live release whose outputs could not be written still fails the job: later jobs
        // read those outputs.
        exit_code: if failure.is_none() && annotations.is_empty() {
            0
        } else {
            EXIT_FAILED
        },
        report,
        error,
        annotations,
        summary: markdown,
    }
}

/// Tells GitHub about a ref that deploys nothing: `outcome=skipped` (or `refused`) in the
/// outputs, a short summary, and for a refused ref an `::error` annotation. Returns the exit
/// code (0 or 2) and the annotations for the CLI to print.
pub fn report_no_deploy(ctx: &GithubContext, decision: &CiDecision) -> (u8, Vec<String>) {
    let (outcome, headline, reason) = match decision {
        CiDecision::Deploy { .. } => return (0, Vec::new()),
        CiDecision::Nothing { reason } => ("skipped", "## ⏭️ Nothing to deploy", reason),
        CiDecision::Refused { reason } => ("refused", "## ❌ Cannot deploy this ref", reason),
    };
    let mut annotations = Vec::new();
    if matches!(decision, CiDecision::Refused { .. }) {
        annotations.push(github::error_annotation(
            &format!("Cannot deploy {}", ctx.git_ref),
            reason,
        ));
    }
    if let Err(e) = github::write_outputs(ctx, &[("environment", ""), ("outcome", outcome)]) {
        annotations.push(github::error_annotation(
            "Cannot write step outputs",
            &e.to_string(),
        ));
    }
    let summary = format!("{headline}\n\n`{}`: {reason}\n", ctx.git_ref);
    if let Err(e) = github::write_summary(ctx, &summary) {
        annotations.push(github::error_annotation(
            "Cannot write the summary",
            &e.to_string(),
        ));
    }
    (decision.exit_code().unwrap_or(0), annotations)
}

/// Tells GitHub about a deploy that could not start (engine unreachable, no image to
/// promote, …): `outcome=error`, a short summary and an `::error` annotation (returned).
pub fn report_setup_failure(ctx: &GithubContext, environment: &str, message: &str) -> Vec<String> {
    let mut annotations = vec![github::error_annotation(
        &format!("Deploy to {environment} failed"),
        message,
    )];
    if let Err(e) =
        github::write_outputs(ctx, &[("environment", environment), ("outcome", "error")])
    {
        annotations.push(github::error_annotation(
            "Cannot write step outputs",
            &e.to_string(),
        ));
    }
    let quoted: String = message.lines().map(|l| format!("> {l}\n")).collect();
    let summary = format!("## ❌ `{environment}`: the deploy could not start\n\n{quoted}");
    if let Err(e) = github::write_summary(ctx, &summary) {
        annotations.push(github::error_annotation(
            "Cannot write the summary",
            &e.to_string(),
        ));
    }
    annotations
}
