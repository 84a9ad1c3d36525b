//! The phases of a deploy or rollback as this process runs it, in
//! `{state_dir}/deploys/{environment}.json`, so that the dashboard (another process) shows it
//! phase by phase from its first step (the lock, the build), before any release is registered.
//! Best effort: a journal that cannot be written never fails the deploy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kaapi_agent::private;
use kaapi_core::progress::{Event, Progress};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployJournal {
    /// The process running the deploy: a journal whose process is gone is stale.
    pub pid: u32,
    /// `deploy` or `rollback`.
    pub action: String,
    /// In the order they started; a phase that runs twice (a rollback's rollout) is listed twice.
    pub phases: Vec<JournalPhase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPhase {
    pub name: String,
    pub state: PhaseState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    Running,
    Done,
    Failed,
}

impl PhaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseState::Running => "running",
            PhaseState::Done => "done",
            PhaseState::Failed => "failed",
        }
    }
}

fn path(state_dir: &Path, environment: &str) -> PathBuf {
    state_dir
        .join("deploys")
        .join(format!("{environment}.json"))
}

/// The journal of the deploy running now for `environment`; `None` when none runs (a journal
/// left behind by a process that died is ignored).
pub fn read(state_dir: &Path, environment: &str) -> Option<DeployJournal> {
    let text = std::fs::read_to_string(path(state_dir, environment)).ok()?;
    let journal: DeployJournal = serde_json::from_str(&text).ok()?;
    kaapi_agent::process::alive(journal.pid).then_some(journal)
}

/// Forwards every event to `inner` and keeps the journal of the phases; removes it when dropped.
pub struct Journaled<'a> {
    inner: &'a dyn Progress,
    path: Option<PathBuf>,
    journal: Mutex<DeployJournal>,
}

impl<'a> Journaled<'a> {
    pub fn new(inner: &'a dyn Progress, state_dir: &Path, environment: &str, action: &str) -> Self {
        let writable = private::ensure_dir(state_dir)
            .and_then(|()| private::ensure_dir(&state_dir.join("deploys")))
            .is_ok();
        Self {
            inner,
            path: writable.then(|| path(state_dir, environment)),
            journal: Mutex::new(DeployJournal {
                pid: std::process::id(),
                action: action.to_owned(),
                phases: Vec::new(),
            }),
        }
    }

    fn record(&self, name: &str, state: PhaseState) {
        let Some(path) = &self.path else {
            return;
        };
        let Ok(mut journal) = self.journal.lock() else {
            return;
        };
        let running = journal
            .phases
            .iter_mut()
            .rev()
            .find(|p| p.name == name && p.state == PhaseState::Running);
        match running {
            Some(phase) if state != PhaseState::Running => phase.state = state,
            _ => journal.phases.push(JournalPhase {
                name: name.to_owned(),
                state,
            }),
        }
        if let Ok(bytes) = serde_json::to_vec(&*journal) {
            let _ = private::write_file(path, &bytes);
        }
    }
}

impl Progress for Journaled<'_> {
    fn event(&self, event: Event) {
        match &event {
            Event::PhaseStarted { phase } => self.record(phase.as_str(), PhaseState::Running),
            Event::PhaseFinished { phase, ok, .. } => {
                let state = if *ok {
                    PhaseState::Done
                } else {
                    PhaseState::Failed
                };
                self.record(phase.as_str(), state);
            }
            _ => {}
        }
        self.inner.event(event);
    }
}

impl Drop for Journaled<'_> {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kaapi_core::progress::{Phase, Silent};

    use super::*;

    #[test]
    fn the_journal_follows_the_phases_and_goes_away_with_the_deploy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journaled = Journaled::new(&Silent, dir.path(), "local", "deploy");
        journaled.event(Event::PhaseStarted {
            phase: Phase::Build,
        });
        let seen = read(dir.path(), "local").expect("a running deploy has a journal");
        assert_eq!(seen.action, "deploy");
        assert_eq!(
            seen.phases,
            vec![JournalPhase {
                name: "build".into(),
                state: PhaseState::Running
            }]
        );
        journaled.event(Event::PhaseFinished {
            phase: Phase::Build,
            elapsed: Duration::from_secs(1),
            ok: true,
        });
        journaled.event(Event::PhaseStarted {
            phase: Phase::Rollout,
        });
        journaled.event(Event::PhaseFinished {
            phase: Phase::Rollout,
            elapsed: Duration::from_secs(1),
            ok: false,
        });
        let states: Vec<(String, PhaseState)> = read(dir.path(), "local")
            .expect("journal")
            .phases
            .into_iter()
            .map(|p| (p.name, p.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("build".to_owned(), PhaseState::Done),
                ("rollout".to_owned(), PhaseState::Failed)
            ]
        );
        drop(journaled);
        assert!(read(dir.path(), "local").is_none(), "removed at the end");
    }

    #[test]
    fn a_journal_left_by_a_dead_process_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("deploys")).expect("dir");
        let stale = DeployJournal {
            pid: u32::MAX - 1,
            action: "deploy".into(),
            phases: Vec::new(),
        };
        std::fs::write(
            path(dir.path(), "local"),
            serde_json::to_vec(&stale).expect("json"),
        )
        .expect("write");
        assert!(read(dir.path(), "local").is_none());
    }
}
