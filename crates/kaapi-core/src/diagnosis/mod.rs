//! Why a replica or one-off task failed, on one screen: what stopped it (exit code, out-of-memory
//! kill, health-check output, image pull or secret error, platform events), its last log lines,
//! and a hint for the common causes. Engines gather the facts; the rules that classify them and
//! pick a hint live here, pure.

mod hints;

use std::fmt::Write;

use serde::{Deserialize, Serialize};

pub use hints::{hint_for, with_hint};

/// How many of a failed replica's last log lines a diagnosis keeps.
pub const LOG_LINES: usize = 20;
/// How many platform events (ECS service events) a diagnosis keeps.
pub const EVENTS: usize = 5;
/// Longest kept log line or event, in characters: a diagnosis stays one screen.
const LINE_CHARS: usize = 300;

/// What stopped a replica or task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Its process exited on its own.
    Exited,
    /// Killed for using more memory than its limit.
    OutOfMemory,
    /// It ran but failed its health check (or never answered it).
    HealthCheck,
    /// Its image could not be pulled.
    ImagePull,
    /// Its secrets could not be read.
    Secrets,
    Unknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::OutOfMemory => "out of memory",
            Self::HealthCheck => "failed health check",
            Self::ImagePull => "image pull failed",
            Self::Secrets => "secrets unavailable",
            Self::Unknown => "stopped",
        }
    }
}

/// One failed replica or task: the facts and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub service: String,
    /// Container name or ECS task ID.
    pub replica: String,
    pub cause: Cause,
    /// The engine's own words (the agent's reason, ECS `stoppedReason` and container reasons).
    pub reason: String,
    pub exit_code: Option<i64>,
    /// The last health-check result, when a check ran.
    pub health_output: Option<String>,
    /// Recent platform events (ECS service events), oldest first.
    pub events: Vec<String>,
    /// Its last log lines, oldest first (at most [`LOG_LINES`]).
    pub logs: Vec<String>,
    pub hint: Option<String>,
}

/// What an engine saw of one failed replica or task; [`Facts::diagnose`] classifies it.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub service: String,
    pub replica: String,
    pub reason: String,
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled`.
    pub oom_killed: bool,
    pub health_output: Option<String>,
    pub events: Vec<String>,
    pub logs: Vec<String>,
}

impl Facts {
    pub fn diagnose(self) -> Diagnosis {
        let cause = hints::classify(
            &self.reason,
            self.exit_code,
            self.oom_killed,
            self.health_output.as_deref(),
        );
        let logs = last_lines(self.logs, LOG_LINES);
        let hint = hints::hint(
            cause,
            &self.reason,
            self.exit_code,
            self.health_output.as_deref(),
            &logs,
        );
        Diagnosis {
            service: self.service,
            replica: self.replica,
            cause,
            reason: self.reason,
            exit_code: self.exit_code,
            health_output: self.health_output,
            events: last_lines(self.events, EVENTS),
            logs,
            hint,
        }
    }
}

/// The last `n` lines, each cut to a bounded length.
fn last_lines(lines: Vec<String>, n: usize) -> Vec<String> {
    let skip = lines.len().saturating_sub(n);
    lines
        .into_iter()
        .skip(skip)
        .map(|line| {
            if line.chars().count() > LINE_CHARS {
                let cut: String = line.chars().take(LINE_CHARS).collect();
                format!("{cut}…")
            } else {
                line
            }
        })
        .collect()
}

impl Diagnosis {
    /// One line for notifications and headlines: `backend (kaapi-web-1): out of memory (exit
    /// 137); hint: …`.
    pub fn one_line(&self) -> String {
        let mut line = format!(
            "{} ({}): {}",
            self.service,
            self.replica,
            self.cause.as_str()
        );
        if let Some(code) = self.exit_code {
            let _ = write!(line, " (exit {code})");
        }
        if let Some(hint) = &self.hint {
            let _ = write!(line, "; hint: {hint}");
        }
        line
    }

    /// The full text block for a terminal.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {}\n",
            self.service,
            self.replica,
            self.cause.as_str()
        );
        if !self.reason.is_empty() {
            let _ = writeln!(out, "  reason: {}", self.reason);
        }
        if let Some(code) = self.exit_code {
            let _ = writeln!(out, "  exit code: {code}");
        }
        if let Some(probe) = &self.health_output {
            let _ = writeln!(out, "  last health check: {probe}");
        }
        if !self.events.is_empty() {
            out.push_str("  events:\n");
            for event in &self.events {
                let _ = writeln!(out, "    {event}");
            }
        }
        if !self.logs.is_empty() {
            let _ = writeln!(out, "  last {} log line(s):", self.logs.len());
            for line in &self.logs {
                let _ = writeln!(out, "    | {line}");
            }
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "  hint: {hint}");
        }
        out
    }
}

#[cfg(test)]
mod tests;
