//! Migration-aware rollback: the database schema version a release's code runs on, read with
//! the config's `version_command` as a one-off task, and what a rollback does when the
//! database is ahead of (or behind) the target release.

use std::sync::Mutex;

use serde::Serialize;

use crate::engine::{Engine, TaskOn};
use crate::progress::{Event, Progress};
use crate::release::Release;

/// Where `downgrade_command` takes the target release's version.
pub const VERSION_PLACEHOLDER: &str = "{version}";

/// The schema commands of `[migrations]`, and the service whose revision runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaCommands {
    pub service: String,
    /// Prints the database's current version (`alembic current`).
    pub version: Vec<String>,
    /// Migrates the database down to [`VERSION_PLACEHOLDER`] (`alembic downgrade {version}`).
    pub downgrade: Option<Vec<String>>,
}

impl SchemaCommands {
    /// The downgrade command with `version` in place of [`VERSION_PLACEHOLDER`].
    pub fn downgrade_to(&self, version: &str) -> Option<Vec<String>> {
        self.downgrade.as_ref().map(|argv| {
            argv.iter()
                .map(|arg| arg.replace(VERSION_PLACEHOLDER, version))
                .collect()
        })
    }
}

/// Why the schema version could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("`{command}` could not run: {reason}")]
    NotRun { command: String, reason: String },
    #[error("`{command}` exited with code {code}")]
    Failed { command: String, code: i64 },
    #[error("`{command}` printed no version")]
    Empty { command: String },
}

/// The version in a version command's output: the first word of its last non-empty line, so
/// that alembic's `ae1027a6acf (head)` gives `ae1027a6acf` and log lines before it are skipped.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| line.split_whitespace().next())
        .map(str::to_owned)
}

/// Forwards every event and keeps the output lines, to read what a one-off task printed.
pub struct Collecting<'a> {
    inner: &'a dyn Progress,
    lines: Mutex<Vec<String>>,
}

impl<'a> Collecting<'a> {
    pub fn new(inner: &'a dyn Progress) -> Self {
        Self {
            inner,
            lines: Mutex::new(Vec::new()),
        }
    }

    pub fn text(&self) -> String {
        self.lines
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Progress for Collecting<'_> {
    fn event(&self, event: Event) {
        if let Event::Output { line, .. } = &event {
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(line.clone());
            }
        }
        self.inner.event(event);
    }
}

/// Runs the version command as a one-off task of `release` and returns the version it printed.
pub async fn read_version(
    engine: &dyn Engine,
    release: &Release,
    commands: &SchemaCommands,
    progress: &dyn Progress,
) -> Result<String, VersionError> {
    let command = commands.version.join(" ");
    let collecting = Collecting::new(progress);
    let exit = engine
        .run_task(
            TaskOn::Release(release),
            &commands.service,
            &commands.version,
            &collecting,
        )
        .await
        .map_err(|e| VersionError::NotRun {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    if exit.exit_code != 0 {
        return Err(VersionError::Failed {
            command,
            code: exit.exit_code,
        });
    }
    parse_version(&collecting.text()).ok_or(VersionError::Empty { command })
}

/// What a rollback does about the schema, given the database's version now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStep {
    /// The database is at the target's version (or the target recorded none): roll back.
    RollBack,
    /// The target recorded no version (older history): roll back, warning that it is unchecked.
    Unchecked,
    /// Run the downgrade command (with the target's version) on the serving release first.
    Downgrade { from: String, to: String },
    /// The versions differ and `--force` was given: roll back, warning.
    Forced { database: String, target: String },
    /// The versions differ and nothing may fix it: refuse, with nothing changed.
    Refuse { database: String, target: String },
}

/// Decides [`SchemaStep`] from the database's version and the target's recorded one.
pub fn decide(
    database: &str,
    target: Option<&str>,
    can_downgrade: bool,
    force: bool,
) -> SchemaStep {
    let Some(target) = target else {
        return SchemaStep::Unchecked;
    };
    let (database, target) = (database.to_owned(), target.to_owned());
    if database == target {
        SchemaStep::RollBack
    } else if force {
        SchemaStep::Forced { database, target }
    } else if can_downgrade {
        SchemaStep::Downgrade {
            from: database,
            to: target,
        }
    } else {
        SchemaStep::Refuse { database, target }
    }
}

/// What a deploy's automatic rollback did about the schema its migrations had changed: the
/// release restored ran on `to`, the deploy's migrations left the database at `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaRollback {
    /// The version the deploy's migrations left.
    pub from: String,
    /// The version the restored release ran on.
    pub to: String,
    pub downgrade: DowngradeResult,
    /// For people: what happened to the database and, when it stays ahead, what to do.
    pub message: String,
}

/// Whether the downgrade before an automatic rollback ran, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DowngradeResult {
    Succeeded,
    Failed,
    /// No `downgrade_command`: the database stays at `from`.
    NotConfigured,
}

impl SchemaRollback {
    /// A downgrade to `to` on `release`'s code (the one whose migrations left `from`) before
    /// `restored` serves again; `failure` says how it failed, if it did, and `rerun` is the
    /// command that runs it again on that code, when one can.
    pub fn downgraded(
        from: String,
        to: String,
        release: u64,
        restored: u64,
        failure: Option<String>,
        rerun: Option<String>,
    ) -> Self {
        let Some(failure) = failure else {
            let message = format!(
                "the database was migrated down from schema version {from} to {to}, the version release {restored} ran on"
            );
            return Self {
                from,
                to,
                downgrade: DowngradeResult::Succeeded,
                message,
            };
        };
        // The old code must serve all the same: a database ahead of it is better than nothing
        // serving. Only release `release`'s code knows how to undo its migrations.
        let retry = rerun.map_or_else(
            || format!("run the downgrade_command with release {release}'s image"),
            |command| format!("run `{command}`"),
        );
        let message = format!(
            "the downgrade to schema version {to} {failure}; release {restored} serves again, but the database stays at {from}, which its code predates: deploy a fix of release {release} (its migrations are already applied), or {retry} to bring the database back to {to}"
        );
        Self {
            from,
            to,
            downgrade: DowngradeResult::Failed,
            message,
        }
    }

    /// No downgrade command: `restored` serves again on a database its code predates.
    pub fn not_configured(from: String, to: String, restored: u64) -> Self {
        let message = format!(
            "the deploy's migrations moved the database from schema version {to} to {from}; release {restored}, which serves again, ran on {to} and the database stays at {from}. Configure [migrations] downgrade_command (e.g. \"uv run alembic downgrade {VERSION_PLACEHOLDER}\") so that an automatic rollback migrates the database down first"
        );
        Self {
            from,
            to,
            downgrade: DowngradeResult::NotConfigured,
            message,
        }
    }

    /// The clause the deploy's one-sentence result ends with.
    pub fn summary(&self) -> String {
        match self.downgrade {
            DowngradeResult::Succeeded => format!(
                "the database was migrated down from schema version {} to {}",
                self.from, self.to
            ),
            DowngradeResult::Failed => format!(
                "the downgrade to schema version {} failed, the database stays at {}",
                self.to, self.from
            ),
            DowngradeResult::NotConfigured => format!(
                "the database stays at schema version {} (no downgrade_command; the restored release ran on {})",
                self.from, self.to
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_first_word_of_the_last_non_empty_line() {
        let alembic = "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n\
                       INFO  [alembic.runtime.migration] Will assume transactional DDL.\n\
                       ae1027a6acf (head)\n\n";
        assert_eq!(parse_version(alembic).as_deref(), Some("ae1027a6acf"));
        assert_eq!(parse_version("0002").as_deref(), Some("0002"));
        assert_eq!(
            parse_version("  1975ea83b712 (effective head)  ").as_deref(),
            Some("1975ea83b712")
        );
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("\n  \n"), None);
    }

    #[test]
    fn equal_versions_roll_back_and_different_ones_downgrade_force_or_refuse() {
        assert_eq!(
            decide("0002", Some("0002"), false, false),
            SchemaStep::RollBack
        );
        assert_eq!(decide("0003", None, false, false), SchemaStep::Unchecked);
        let downgrade = SchemaStep::Downgrade {
            from: "0003".to_owned(),
            to: "0002".to_owned(),
        };
        assert_eq!(decide("0003", Some("0002"), true, false), downgrade);
        let refuse = SchemaStep::Refuse {
            database: "0003".to_owned(),
            target: "0002".to_owned(),
        };
        assert_eq!(decide("0003", Some("0002"), false, false), refuse);
        // --force wins over a configured downgrade: the user asked not to touch the database.
        let forced = SchemaStep::Forced {
            database: "0003".to_owned(),
            target: "0002".to_owned(),
        };
        assert_eq!(decide("0003", Some("0002"), true, true), forced);
    }

    #[test]
    fn the_downgrade_command_gets_the_target_version() {
        let commands = SchemaCommands {
            service: "web".to_owned(),
            version: vec!["alembic".to_owned(), "current".to_owned()],
            downgrade: Some(vec![
                "alembic".to_owned(),
                "downgrade".to_owned(),
                "{version}".to_owned(),
            ]),
        };
        assert_eq!(
            commands.downgrade_to("ae1027a6acf"),
            Some(vec![
                "alembic".to_owned(),
                "downgrade".to_owned(),
                "ae1027a6acf".to_owned()
            ])
        );
    }
}
