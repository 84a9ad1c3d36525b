//! The environment's deploy lock: one row per environment in the release database, taken in a
//! `BEGIN IMMEDIATE` transaction so two deploys cannot both see it free. A lock whose process
//! is gone from this host is taken over (with a warning); anything else fails at once.

use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineError, EngineResult, LockOwner, LockToken};
use kaapi_core::progress::Progress;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::history::Store;

/// Who holds a lock, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    pub token: String,
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
}

/// This machine's name, as written into locks (a pid only means something on its own host).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

pub struct DeployLock<'a> {
    store: &'a Store,
    environment: String,
    host: String,
    pid: u32,
}

impl<'a> DeployLock<'a> {
    pub fn new(store: &'a Store, environment: &str) -> Self {
        Self {
            store,
            environment: environment.to_owned(),
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// For tests: pretend to be another process.
    pub fn with_process(mut self, pid: u32, host: &str) -> Self {
        self.pid = pid;
        self.host = host.to_owned();
        self
    }

    pub fn acquire(&self, owner: &LockOwner, progress: &dyn Progress) -> EngineResult<LockToken> {
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let token = format!(
            "{}-{}-{}",
            self.pid,
            Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut connection = self.store.connection()?;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.store.sqlite(e))?;
        let existing = tx
            .query_row(
                "SELECT token, holder, pid, host, since FROM locks WHERE environment = ?1",
                [&self.environment],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.store.sqlite(e))?;
        let mut stale = false;
        if let Some((_, holder, pid, host, since)) = existing {
            let since = DateTime::parse_from_rfc3339(&since)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now());
            if host != self.host || kaapi_agent::process::alive(pid) {
                return Err(EngineError::Locked {
                    environment: self.environment.clone(),
                    holder,
                    since,
                });
            }
            progress.warning(format!(
                "taking over the deploy lock of `{}` left by {holder} since {since}: process {pid} no longer runs on {host}",
                self.environment
            ));
            stale = true;
        }
        tx.execute(
            "INSERT OR REPLACE INTO locks (environment, token, holder, url, pid, host, since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                self.environment,
                token,
                owner.holder,
                owner.url,
                self.pid,
                self.host,
                Utc::now().to_rfc3339()
            ],
        )
        .map_err(|e| self.store.sqlite(e))?;
        tx.commit().map_err(|e| self.store.sqlite(e))?;
        drop(connection);
        if stale {
            // The dead deploy's release can never finish; say so in the history.
            for number in self.store.interrupt_unfinished(&self.environment)? {
                progress.warning(format!(
                    "release {number} was left in progress by the killed deploy; recorded as interrupted"
                ));
            }
        }
        Ok(LockToken {
            environment: self.environment.clone(),
            id: token,
        })
    }

    /// Releases the lock if `token` still holds it (a forced unlock may have removed it).
    pub fn release(&self, token: &LockToken) -> EngineResult<()> {
        let connection = self.store.connection()?;
        connection
            .execute(
                "DELETE FROM locks WHERE environment = ?1 AND token = ?2",
                params![self.environment, token.id],
            )
            .map_err(|e| self.store.sqlite(e))?;
        Ok(())
    }

    pub fn force_unlock(&self) -> EngineResult<()> {
        let connection = self.store.connection()?;
        connection
            .execute(
                "DELETE FROM locks WHERE environment = ?1",
                [&self.environment],
            )
            .map_err(|e| self.store.sqlite(e))?;
        Ok(())
    }

    pub fn holder(&self) -> EngineResult<Option<LockRow>> {
        let connection = self.store.connection()?;
        let row = connection
            .query_row(
                "SELECT token, holder, pid, host, since FROM locks WHERE environment = ?1",
                [&self.environment],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.store.sqlite(e))?;
        Ok(row.map(|(token, holder, pid, host, since)| LockRow {
            token,
            holder,
            pid,
            host,
            since: DateTime::parse_from_rfc3339(&since)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kaapi_core::progress::Event;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Progress for Recorder {
        fn event(&self, event: Event) {
            if let Event::Warning { message } = event {
                if let Ok(mut w) = self.0.lock() {
                    w.push(message);
                }
            }
        }
    }

    fn owner(name: &str) -> LockOwner {
        LockOwner {
            holder: name.to_owned(),
            url: None,
        }
    }

    #[test]
    fn a_second_holder_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let first = DeployLock::new(&store, "local");
        let token = first
            .acquire(&owner("alice"), &Recorder::default())
            .expect("first");
        // Same host, our own (alive) pid: the second must fail with who holds it.
        let second = DeployLock::new(&store, "local");
        match second.acquire(&owner("bob"), &Recorder::default()) {
            Err(EngineError::Locked { holder, .. }) => assert_eq!(holder, "alice"),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Another environment is independent.
        DeployLock::new(&store, "staging")
            .acquire(&owner("bob"), &Recorder::default())
            .expect("other environment");
        first.release(&token).expect("release");
        second
            .acquire(&owner("bob"), &Recorder::default())
            .expect("free again");
    }

    #[test]
    fn a_lock_of_a_dead_process_is_taken_over_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead_pid = child.id();
        child.wait().expect("wait");
        DeployLock::new(&store, "local")
            .with_process(dead_pid, &host_name())
            .acquire(&owner("ghost"), &Recorder::default())
            .expect("ghost takes it");
        let progress = Recorder::default();
        DeployLock::new(&store, "local")
            .acquire(&owner("alice"), &progress)
            .expect("taken over");
        let warnings = progress.0.lock().expect("warnings").clone();
        assert!(warnings.iter().any(|w| w.contains("ghost")), "{warnings:?}");
        let row = DeployLock::new(&store, "local")
            .holder()
            .expect("holder")
            .expect("held");
        assert_eq!(row.holder, "alice");
    }

    #[test]
    fn a_lock_from_another_host_is_never_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        DeployLock::new(&store, "local")
            .with_process(1, "elsewhere")
            .acquire(&owner("remote"), &Recorder::default())
            .expect("remote");
        assert!(matches!(
            DeployLock::new(&store, "local").acquire(&owner("alice"), &Recorder::default()),
            Err(EngineError::Locked { .. })
        ));
        DeployLock::new(&store, "local")
            .force_unlock()
            .expect("force");
        assert!(DeployLock::new(&store, "local")
            .holder()
            .expect("holder")
            .is_none());
    }

    #[test]
    fn only_one_of_many_concurrent_acquirers_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).expect("open");
                    DeployLock::new(&store, "local")
                        .acquire(&owner(&format!("p{i}")), &Recorder::default())
                        .is_ok()
                })
            })
            .collect();
        let winners = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|won| *won)
            .count();
        assert_eq!(winners, 1);
    }
}
