//! Progress events the pipeline emits; the CLI renders them (plain lines, colours, JSON).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Lock,
    Build,
    Push,
    Register,
    /// Backing services (accessories) started and healthy, before migrations.
    Accessories,
    Migrate,
    Rollout,
    Verify,
    Rollback,
    Record,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lock => "lock",
            Phase::Build => "build",
            Phase::Push => "push",
            Phase::Register => "register",
            Phase::Accessories => "accessories",
            Phase::Migrate => "migrate",
            Phase::Rollout => "rollout",
            Phase::Verify => "verify",
            Phase::Rollback => "rollback",
            Phase::Record => "record",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    PhaseStarted {
        phase: Phase,
    },
    PhaseFinished {
        phase: Phase,
        elapsed: Duration,
        ok: bool,
    },
    Info {
        message: String,
    },
    Warning {
        message: String,
    },
    /// A line of output from a build, one-off task or replica.
    Output {
        source: String,
        line: String,
    },
}

pub trait Progress: Send + Sync {
    fn event(&self, event: Event);

    fn info(&self, message: String) {
        self.event(Event::Info { message });
    }
    fn warning(&self, message: String) {
        self.event(Event::Warning { message });
    }
    fn output(&self, source: &str, line: &str) {
        self.event(Event::Output {
            source: source.to_owned(),
            line: line.to_owned(),
        });
    }
}

/// Discards every event (benchmarks, tests that only look at results).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}
