//! Running the tools the benchmark drives (docker, docker-compose, kaapi-deploy), timed, with
//! their output kept for error messages.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Fails with the command's stderr when it did not exit 0.
    pub fn ok(self, what: &str) -> Result<Self> {
        if !self.success {
            bail!(
                "{what} exited with {:?}:\n{}{}",
                self.code,
                tail(&self.stderr, 40),
                tail(&self.stdout, 10)
            );
        }
        Ok(self)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Runs `program args…` (in `dir` with `envs` when given) to completion, timing it.
pub async fn run<I, S>(
    program: &str,
    args: I,
    dir: Option<&Path>,
    envs: &[(&str, &OsStr)],
) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    Ok(Output {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// `docker ARGS…`, which must succeed.
pub async fn docker<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    run("docker", args, None, &[])
        .await?
        .ok(&format!("docker {}", shown.join(" ")))
}
