//! Driving the real `kaapi-deploy` binary on the local engine, and reading its `--json`
//! reports (`phases` with seconds per phase, `total_seconds`, `outcome`, `release`).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmd::{self, Output};
use crate::load::{LoadConfig, LoadReport, LoadRun};
use crate::project::{Project, ENVIRONMENT};

#[derive(Debug, Clone, Deserialize)]
pub struct PhaseTiming {
    pub phase: String,
    pub seconds: f64,
}

/// The fields of a deploy/rollback report the benchmark reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub release: Option<u64>,
    pub outcome: String,
    pub phases: Vec<PhaseTiming>,
    pub total_seconds: f64,
    #[serde(default)]
    pub message: String,
}

impl Report {
    /// Seconds of `phase` (summed if it ran more than once), 0 when it did not run.
    pub fn phase(&self, phase: &str) -> f64 {
        self.phases
            .iter()
            .filter(|p| p.phase == phase)
            .map(|p| p.seconds)
            .sum()
    }
}

pub struct Cli<'a> {
    pub bin: PathBuf,
    pub project: &'a Project,
}

/// A command run while the load generator sent traffic to the ingress.
#[derive(Debug, Clone)]
pub struct UnderLoad {
    pub output: Output,
    pub report: Option<Report>,
    /// When the command started, on the load's timeline.
    pub started_at: Duration,
    pub load: LoadReport,
}

impl UnderLoad {
    /// Seconds from the command's start to the first answer from `version`, if it answered.
    pub fn first_seen_after_start(&self, version: &str) -> Option<f64> {
        self.load
            .versions
            .get(version)
            .map(|s| s.first.saturating_sub(self.started_at).as_secs_f64())
    }

    /// Seconds from the command's start to the last answer from `version`.
    pub fn last_seen_after_start(&self, version: &str) -> Option<f64> {
        self.load
            .versions
            .get(version)
            .map(|s| s.last.saturating_sub(self.started_at).as_secs_f64())
    }
}

impl Cli<'_> {
    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        let config = self.project.config_path();
        let mut all: Vec<&OsStr> = vec![OsStr::new("--config"), config.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        cmd::run(
            &self.bin.to_string_lossy(),
            all,
            Some(&self.project.dir),
            &[
                ("KAAPI_STATE_DIR", self.project.state_dir.as_os_str()),
                ("NO_COLOR", OsStr::new("1")),
            ],
        )
        .await
    }

    /// Runs `args` (a deploy or rollback with `--json`) and parses its report.
    pub async fn report(&self, args: &[&str]) -> Result<(Output, Option<Report>)> {
        let output = self.run(args).await?;
        let report = serde_json::from_str::<Report>(&output.stdout).ok();
        Ok((output, report))
    }

    /// `deploy local --json`, which must succeed.
    pub async fn deploy_ok(&self) -> Result<Report> {
        let (output, report) = self.report(&["deploy", ENVIRONMENT, "--json"]).await?;
        let output = output.ok("kaapi-deploy deploy")?;
        report.with_context(|| format!("deploy --json printed no report:\n{}", output.stdout))
    }

    /// Runs `args` while `load` sends traffic, with a second of steady traffic before.
    pub async fn under_load(&self, args: &[&str], load: LoadConfig) -> Result<UnderLoad> {
        let run = LoadRun::start(load);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started_at = run.now();
        let result = self.report(args).await;
        let load = run.finish().await;
        let (output, report) = result?;
        Ok(UnderLoad {
            output,
            report,
            started_at,
            load,
        })
    }
}
