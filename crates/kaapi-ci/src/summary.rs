//! The markdown release summary written to `$GITHUB_STEP_SUMMARY`: what was deployed, how each
//! step went, phase timings, and on failure what failed and what serves now.

use std::fmt::Write;

use kaapi_core::diagnosis::Diagnosis;
use kaapi_core::pipeline::{DeployPlan, DeployReport, PhaseTiming};
use kaapi_core::plan::DeployPreview;
use kaapi_core::progress::Phase;
use kaapi_core::release::{Outcome, Release};
use kaapi_core::schema::{DowngradeResult, SchemaRollback};

use crate::github::GithubContext;

/// How the run ended, as far as the summary needs to know.
#[derive(Debug, Clone, Copy)]
pub enum Ended<'a> {
    /// The pipeline ran to the end (successfully or not).
    Report(&'a DeployReport),
    /// The pipeline stopped with an error before it could report (lock held, build failed, …).
    Error {
        message: &'a str,
        /// The phase that failed, when one had started.
        failed_phase: Option<Phase>,
        phases: &'a [PhaseTiming],
    },
}

/// Everything the summary shows.
#[derive(Debug, Clone, Copy)]
pub struct SummaryInput<'a> {
    pub ctx: &'a GithubContext,
    pub environment: &'a str,
    pub plan: &'a DeployPlan,
    /// Where the image came from, for people (`built from this commit`, `promoted from …`).
    pub image_origin: &'a str,
    pub ended: Ended<'a>,
    /// The release serving after the run, as the engine reports it (failures only).
    pub serving_now: Option<&'a Release>,
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

fn link(text: &str, url: Option<String>) -> String {
    match url {
        Some(url) => format!("[{text}]({url})"),
        None => text.to_owned(),
    }
}

fn has_phase(phases: &[PhaseTiming], phase: Phase) -> bool {
    phases.iter().any(|p| p.phase == phase)
}

fn headline(input: &SummaryInput<'_>) -> String {
    let env = input.environment;
    match input.ended {
        Ended::Report(report) => match report.outcome {
            Outcome::Succeeded => format!(
                "## ✅ `{env}`: release {} is live",
                report.release.unwrap_or_default()
            ),
            Outcome::FailedMigration => {
                format!("## ❌ `{env}`: deploy failed in the migrations")
            }
            Outcome::RolledBack => format!(
                "## ↩️ `{env}`: deploy failed and was rolled back to release {}",
                report.serving.unwrap_or_default()
            ),
            other => format!("## ❌ `{env}`: deploy {other}"),
        },
        Ended::Error { failed_phase, .. } => match failed_phase {
            Some(phase) => format!("## ❌ `{env}`: deploy failed in {}", phase.as_str()),
            None => format!("## ❌ `{env}`: deploy failed"),
        },
    }
}

fn deployed_table(input: &SummaryInput<'_>, out: &mut String) {
    let ctx = input.ctx;
    let meta = &input.plan.meta;
    let (release, image) = match input.ended {
        Ended::Report(report) => (report.release.map(|n| n.to_string()), report.image.as_ref()),
        Ended::Error { .. } => (None, None),
    };
    let rows = [
        ("Environment", code(input.environment)),
        ("Release", release.unwrap_or_else(|| "—".to_owned())),
        (
            "Image digest",
            image
                .map(|i| code(&i.digest))
                .unwrap_or_else(|| "—".to_owned()),
        ),
        (
            "Image",
            image
                .map(|i| code(&i.reference))
                .unwrap_or_else(|| "—".to_owned()),
        ),
        ("Image source", input.image_origin.to_owned()),
        ("Commit", link(&code(&meta.commit), ctx.commit_url())),
        (
            "Version",
            meta.version
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "—".to_owned()),
        ),
        ("Actor", format!("@{}", ctx.actor)),
        (
            "Run",
            link(
                if ctx.run_id.is_empty() {
                    "—"
                } else {
                    ctx.run_id.as_str()
                },
                ctx.run_url(),
            ),
        ),
    ];
    out.push_str("| | |\n| --- | --- |\n");
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {value} |");
    }
}

fn migrations_result(input: &SummaryInput<'_>, phases: &[PhaseTiming]) -> String {
    if input.plan.migrations.is_none() {
        return "none configured".to_owned();
    }
    let migration = match input.ended {
        Ended::Report(report) => report.migration.as_ref(),
        Ended::Error { .. } => None,
    };
    match migration {
        Some(exit) if exit.exit_code == 0 => "passed (exit 0)".to_owned(),
        Some(exit) => match &exit.reason {
            Some(reason) => format!("**failed** (exit {}: {reason})", exit.exit_code),
            None => format!("**failed** (exit {})", exit.exit_code),
        },
        None if has_phase(phases, Phase::Migrate) => "**could not run**".to_owned(),
        None => "not reached".to_owned(),
    }
}

fn steps_table(input: &SummaryInput<'_>, phases: &[PhaseTiming], out: &mut String) {
    let outcome = match input.ended {
        Ended::Report(report) => Some(report.outcome),
        Ended::Error { .. } => None,
    };
    // A verify phase only starts after a completed rollout, so the phases say how far it got.
    let verified = has_phase(phases, Phase::Verify);
    let rollout = if verified {
        "completed"
    } else if has_phase(phases, Phase::Rollout) {
        "**failed**"
    } else {
        "not started"
    };
    let verification = match (verified, outcome) {
        (false, _) => "not run",
        (true, Some(Outcome::Succeeded)) => "passed",
        (true, Some(_)) => "**failed**",
        (true, None) => "unknown",
    };
    let rollback = match (has_phase(phases, Phase::Rollback), input.ended) {
        (false, _) => "not needed".to_owned(),
        (true, Ended::Report(r)) if r.outcome == Outcome::RolledBack => format!(
            "rolled back to release {}",
            r.serving.map(|n| n.to_string()).unwrap_or_default()
        ),
        (true, _) => "**failed**".to_owned(),
    };
    out.push_str("| Step | Result |\n| --- | --- |\n");
    let _ = writeln!(out, "| Migrations | {} |", migrations_result(input, phases));
    let _ = writeln!(out, "| Rollout | {rollout} |");
    let _ = writeln!(out, "| Verification | {verification} |");
    let _ = writeln!(out, "| Rollback | {rollback} |");
}

/// The phase timeline: a Mermaid gantt (GitHub renders it in job summaries) and the same as a
/// table (phase, start, duration, outcome) for every other reader.
fn timeline(phases: &[PhaseTiming], total: Option<f64>, out: &mut String) {
    if phases.is_empty() {
        out.push_str("No phase started.\n");
        return;
    }
    out.push_str("```mermaid\ngantt\n    dateFormat x\n    axisFormat %M:%S\n");
    for (index, timing) in phases.iter().enumerate() {
        let start = millis(timing.started_seconds);
        // A bar of at least 1 ms, or Mermaid draws nothing.
        let end = start + millis(timing.seconds).max(1);
        let tag = if timing.ok { "done" } else { "crit" };
        let _ = writeln!(
            out,
            "    {} :{tag}, p{index}, {start}, {end}",
            timing.phase.as_str()
        );
    }
    out.push_str("```\n\n");
    out.push_str("| Phase | Start | Duration | Outcome |\n| --- | ---: | ---: | --- |\n");
    for timing in phases {
        let _ = writeln!(
            out,
            "| {} | +{:.1}s | {:.1}s | {} |",
            timing.phase.as_str(),
            timing.started_seconds,
            timing.seconds,
            if timing.ok { "ok" } else { "**failed**" }
        );
    }
    if let Some(total) = total {
        let _ = writeln!(out, "| **total** | — | **{total:.1}s** | — |");
    }
}

fn millis(seconds: f64) -> u64 {
    // Phase times are small and positive; the cast saturates otherwise.
    (seconds.max(0.0) * 1000.0).round() as u64
}

/// Why each failed replica or task failed, with its events and last lines folded away.
fn diagnosis_section(diagnoses: &[Diagnosis], out: &mut String) {
    for diagnosis in diagnoses {
        let _ = writeln!(
            out,
            "- **{}** {}: {}{}",
            diagnosis.service,
            code(&diagnosis.replica),
            diagnosis.cause.as_str(),
            diagnosis
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default()
        );
        if !diagnosis.reason.is_empty() {
            let _ = writeln!(out, "  - reason: {}", code(&diagnosis.reason));
        }
        if let Some(probe) = &diagnosis.health_output {
            let _ = writeln!(out, "  - last health check: {}", code(probe));
        }
        if let Some(hint) = &diagnosis.hint {
            let _ = writeln!(out, "  - hint: {hint}");
        }
        let lines: Vec<&String> = diagnosis.events.iter().chain(&diagnosis.logs).collect();
        if !lines.is_empty() {
            out.push_str(
                "\n  <details><summary>events and last log lines</summary>\n\n  ```text\n",
            );
            for line in lines {
                // A fence inside the block would end it early.
                let _ = writeln!(out, "  {}", line.replace("```", "'''"));
            }
            out.push_str("  ```\n\n  </details>\n");
        }
    }
}

/// What a deploy's automatic rollback did about the schema its migrations had changed.
fn schema_section(schema: &SchemaRollback, out: &mut String) {
    let downgrade = match schema.downgrade {
        DowngradeResult::Succeeded => "succeeded",
        DowngradeResult::Failed => "**failed**",
        DowngradeResult::NotConfigured => "not configured (no `downgrade_command`)",
    };
    out.push_str("| | |\n| --- | --- |\n");
    let _ = writeln!(out, "| Left by the migrations | {} |", code(&schema.from));
    let _ = writeln!(out, "| Restored release ran on | {} |", code(&schema.to));
    let _ = writeln!(out, "| Downgrade | {downgrade} |");
    out.push('\n');
    for line in schema.message.lines() {
        let _ = writeln!(out, "> {line}");
    }
}

fn serving_line(input: &SummaryInput<'_>) -> String {
    let reported = match input.ended {
        Ended::Report(report) => Some(report.serving),
        Ended::Error { .. } => None,
    };
    let describe = |release: &Release| {
        format!(
            "release {} ({}, commit {})",
            release.number,
            code(&release.image.digest),
            code(&release.meta.commit)
        )
    };
    match (reported, input.serving_now) {
        (Some(None), _) => "**Serving now:** nothing (no release serves)".to_owned(),
        (Some(Some(n)), Some(r)) if r.number == n => format!("**Serving now:** {}", describe(r)),
        (Some(Some(n)), _) => format!("**Serving now:** release {n}"),
        (None, Some(r)) => format!("**Serving now:** {}", describe(r)),
        (None, None) => "**Serving now:** nothing recorded as live".to_owned(),
    }
}

/// The plan summary (`ci --plan`): what the deploy after it will change, ending with a newline.
/// Variable and secret names only, never values (the preview holds no values).
pub fn render_plan(preview: &DeployPreview, image_origin: &str) -> String {
    let env = &preview.environment;
    let serving = preview
        .current_release
        .map(|n| format!("release {n} serves now"))
        .unwrap_or_else(|| "nothing serves yet".to_owned());
    let mut out = String::new();
    if preview.unchanged() {
        let _ = writeln!(
            out,
            "## 🟰 `{env}`: the deploy changes nothing\n\n{serving}; image {} ({image_origin}) and \
             every service's settings equal what runs.",
            code(&preview.image_after)
        );
        return out;
    }
    let _ = writeln!(out, "## 📋 `{env}`: what the deploy will change\n");
    let _ = writeln!(out, "{serving}.\n");
    out.push_str("| | |\n|---|---|\n");
    let before = preview.image_before.as_deref().unwrap_or("none");
    let _ = writeln!(out, "| Image before | {} |", code(before));
    let _ = writeln!(
        out,
        "| Image after | {} ({image_origin}) |",
        code(&preview.image_after)
    );
    let migrations = preview
        .migrations
        .as_ref()
        .map(|m| format!("{} runs before the rollout", code(&m.join(" "))))
        .unwrap_or_else(|| "none configured".to_owned());
    let _ = writeln!(out, "| Migrations | {migrations} |");
    // One line per change, `+`/`-`/`~` first, so that GitHub colours it as a diff.
    out.push_str("\n### Changes\n\n```diff\n");
    for change in &preview.changes {
        let _ = writeln!(out, "{}", change.to_string().replace("```", "'''"));
    }
    out.push_str("```\n");
    out
}

/// The whole summary, ending with a newline.
pub fn render(input: &SummaryInput<'_>) -> String {
    let (phases, total, failure): (&[PhaseTiming], Option<f64>, Option<&str>) = match input.ended {
        Ended::Report(report) => (
            &report.phases,
            Some(report.total_seconds),
            (!report.succeeded()).then_some(report.message.as_str()),
        ),
        Ended::Error {
            message, phases, ..
        } => (phases, None, Some(message)),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", headline(input));
    deployed_table(input, &mut out);
    out.push_str("\n### Steps\n\n");
    steps_table(input, phases, &mut out);
    out.push_str("\n### Timeline\n\n");
    timeline(phases, total, &mut out);
    if let Some(failure) = failure {
        out.push_str("\n### What failed\n\n");
        for line in failure.lines() {
            let _ = writeln!(out, "> {line}");
        }
        let _ = writeln!(out, "\n{}", serving_line(input));
        if let Ended::Report(report) = input.ended {
            if let Some(schema) = &report.schema {
                out.push_str("\n### Database schema\n\n");
                schema_section(schema, &mut out);
            }
            if !report.diagnosis.is_empty() {
                out.push_str("\n### Why\n\n");
                diagnosis_section(&report.diagnosis, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod plan_tests {
    use kaapi_core::plan::{Change, ChangeKind, DeployPreview};

    use super::render_plan;

    fn preview(changes: Vec<Change>) -> DeployPreview {
        DeployPreview {
            environment: "production".to_owned(),
            current_release: Some(7),
            image_before: Some("sha256:old".to_owned()),
            image_after: "sha256:new".to_owned(),
            changes,
            migrations: Some(vec![
                "alembic".to_owned(),
                "upgrade".to_owned(),
                "head".to_owned(),
            ]),
        }
    }

    #[test]
    fn the_plan_summary_lists_images_migrations_and_each_change_as_a_diff() {
        let text = render_plan(
            &preview(vec![
                Change {
                    service: "backend".to_owned(),
                    kind: ChangeKind::Changed,
                    field: "image".to_owned(),
                    before: Some("sha256:old".to_owned()),
                    after: Some("sha256:new".to_owned()),
                },
                Change {
                    service: "worker".to_owned(),
                    kind: ChangeKind::Added,
                    field: "secret SENTRY_DSN".to_owned(),
                    before: None,
                    after: None,
                },
            ]),
            "promoted from staging",
        );
        assert!(
            text.starts_with("## 📋 `production`: what the deploy will change"),
            "{text}"
        );
        assert!(text.contains("release 7 serves now"), "{text}");
        assert!(text.contains("| Image before | `sha256:old` |"), "{text}");
        assert!(
            text.contains("| Image after | `sha256:new` (promoted from staging) |"),
            "{text}"
        );
        assert!(
            text.contains("`alembic upgrade head` runs before"),
            "{text}"
        );
        assert!(
            text.contains("```diff\n~ backend: image: sha256:old -> sha256:new\n+ worker: secret SENTRY_DSN\n```\n"),
            "{text}"
        );
    }

    #[test]
    fn an_unchanged_plan_says_so_in_one_line() {
        let text = render_plan(&preview(Vec::new()), "promoted from staging");
        assert!(text.contains("the deploy changes nothing"), "{text}");
        assert!(!text.contains("```diff"), "{text}");
    }
}
