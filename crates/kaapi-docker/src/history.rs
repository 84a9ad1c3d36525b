//! The release history: an embedded SQLite database at `{state_dir}/releases.db` (mode 0600:
//! revisions hold secret values). Releases are numbered per environment; a revision is an
//! immutable row `{family}:{n}` holding everything a replica runs; releases refer to revisions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kaapi_core::engine::EngineError;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use kaapi_agent::api::ServiceSpec;

pub const DATABASE_FILE: &str = "releases.db";

/// Schema versions, applied in order; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE releases (
        environment TEXT NOT NULL,
        number INTEGER NOT NULL,
        image_reference TEXT NOT NULL,
        image_digest TEXT NOT NULL,
        image_tags TEXT NOT NULL,
        git_commit TEXT NOT NULL,
        version TEXT,
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        rollback_of INTEGER,
        PRIMARY KEY (environment, number)
    );
    CREATE TABLE revisions (
        family TEXT NOT NULL,
        number INTEGER NOT NULL,
        environment TEXT NOT NULL,
        service TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (family, number)
    );
    CREATE TABLE release_revisions (
        environment TEXT NOT NULL,
        release INTEGER NOT NULL,
        position INTEGER NOT NULL,
        service TEXT NOT NULL,
        family TEXT NOT NULL,
        revision INTEGER NOT NULL,
        PRIMARY KEY (environment, release, service)
    );
    CREATE TABLE locks (
        environment TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        holder TEXT NOT NULL,
        url TEXT,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        since TEXT NOT NULL
    );",
    // `scale`: replica counts changed without a release (see `scaling_store`).
    "CREATE TABLE scaling_events (
        environment TEXT NOT NULL,
        release INTEGER NOT NULL,
        service TEXT NOT NULL,
        from_replicas INTEGER NOT NULL,
        to_replicas INTEGER NOT NULL,
        config_replicas INTEGER NOT NULL,
        author TEXT NOT NULL,
        at TEXT NOT NULL
    );",
    // The schema version each release's code runs on; NULL for releases recorded before.
    "ALTER TABLE releases ADD COLUMN schema_version TEXT;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("release database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("release database {}: {message}", path.display())]
    Other { path: PathBuf, message: String },
    /// The state directory or the database file is not private (a link, another user's).
    #[error(transparent)]
    StateDir(#[from] kaapi_agent::private::PrivateError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::failed(e.to_string())
    }
}

/// A revision to register: the service's full spec under a task-definition-like family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevision {
    pub family: String,
    pub spec: ServiceSpec,
}

/// What a release registers: fresh revisions, the revisions of an earlier release, or both
/// (`deploy --service`: fresh ones for some services, the earlier release's for the others).
#[derive(Debug, Clone)]
pub enum Revisions {
    New(Vec<NewRevision>),
    CopyOf(u64),
    Partial { new: Vec<NewRevision>, rest_of: u64 },
}

pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating when needed) `{state_dir}/releases.db`, readable by its owner only.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(DATABASE_FILE);
        // The history is often the first to create the state directory: private from the start.
        kaapi_agent::private::ensure_dir(state_dir)?;
        kaapi_agent::private::open_file(&path, kaapi_agent::private::Access::ReadWrite)?;
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut connection = Connection::open(&path).map_err(sqlite)?;
        // Concurrent deploys wait for each other's short transactions rather than failing.
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        migrate(&mut connection).map_err(sqlite)?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn connection(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.connection.lock().map_err(|_| StoreError::Other {
            path: self.path.clone(),
            message: "the database connection was poisoned by a panic".to_owned(),
        })
    }

    pub(crate) fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a new release (outcome in progress) with its revisions, numbered after the last.
    pub fn insert_release(
        &self,
        environment: &str,
        image: &ImageRef,
        meta: &ReleaseMeta,
        revisions: &Revisions,
    ) -> Result<Release, StoreError> {
        let mut connection = self.connection()?;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sqlite(e))?;
        let number: u64 = tx
            .query_row(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE environment = ?1",
                [environment],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))?;
        let (rows, rollback_of) = match revisions {
            Revisions::New(new) => (self.insert_revisions(&tx, environment, meta, new)?, None),
            Revisions::CopyOf(earlier) => (
                self.revisions_of(&tx, environment, *earlier)?,
                Some(*earlier),
            ),
            Revisions::Partial { new, rest_of } => {
                let mut rows = self.revisions_of(&tx, environment, *rest_of)?;
                for row in self.insert_revisions(&tx, environment, meta, new)? {
                    match rows.iter_mut().find(|(service, ..)| *service == row.0) {
                        Some(kept) => *kept = row,
                        None => rows.push(row),
                    }
                }
                (rows, None)
            }
        };
        let tags = serde_json::to_string(&image.tags).unwrap_or_else(|_| "[]".to_owned());
        tx.execute(
            "INSERT INTO releases (environment, number, image_reference, image_digest, image_tags,
                git_commit, version, author, created_at, outcome, detail, rollback_of)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)",
            params![
                environment,
                number,
                image.reference,
                image.digest,
                tags,
                meta.commit,
                meta.version,
                meta.author,
                meta.created_at.to_rfc3339(),
                Outcome::InProgress.as_str(),
                rollback_of,
            ],
        )
        .map_err(|e| self.sqlite(e))?;
        for (position, (service, family, revision)) in rows.iter().enumerate() {
            tx.execute(
                "INSERT INTO release_revisions (environment, release, position, service, family, revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![environment, number, position as i64, service, family, revision],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(Release {
            number,
            environment: environment.to_owned(),
            image: image.clone(),
            meta: meta.clone(),
            revisions: rows
                .into_iter()
                .map(|(service, family, n)| ServiceRevision {
                    service,
                    revision: format!("{family}:{n}"),
                })
                .collect(),
            outcome: Outcome::InProgress,
            detail: None,
            rollback_of,
            schema_version: None,
        })
    }

    /// Inserts fresh revisions; returns `(service, family, number)` of each.
    fn insert_revisions(
        &self,
        tx: &rusqlite::Transaction<'_>,
        environment: &str,
        meta: &ReleaseMeta,
        new: &[NewRevision],
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut rows = Vec::new();
        for revision in new {
            let n: u64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE family = ?1",
                    [&revision.family],
                    |row| row.get(0),
                )
                .map_err(|e| self.sqlite(e))?;
            let spec = serde_json::to_string(&revision.spec).map_err(|e| StoreError::Other {
                path: self.path.clone(),
                message: format!("cannot encode a revision: {e}"),
            })?;
            tx.execute(
                "INSERT INTO revisions (family, number, environment, service, spec, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    revision.family,
                    n,
                    environment,
                    revision.spec.name,
                    spec,
                    meta.created_at.to_rfc3339()
                ],
            )
            .map_err(|e| self.sqlite(e))?;
            rows.push((revision.spec.name.clone(), revision.family.clone(), n));
        }
        Ok(rows)
    }

    /// The `(service, family, number)` revisions of an earlier release, in order.
    fn revisions_of(
        &self,
        tx: &rusqlite::Transaction<'_>,
        environment: &str,
        earlier: u64,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut statement = tx
            .prepare(
                "SELECT service, family, revision FROM release_revisions
                 WHERE environment = ?1 AND release = ?2 ORDER BY position",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params![environment, earlier], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .and_then(Iterator::collect::<Result<Vec<(String, String, u64)>, _>>)
            .map_err(|e| self.sqlite(e))?;
        if rows.is_empty() {
            return Err(StoreError::Other {
                path: self.path.clone(),
                message: format!("release {earlier} of `{environment}` has no revisions"),
            });
        }
        Ok(rows)
    }

    pub fn set_outcome(
        &self,
        environment: &str,
        number: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update_release(
            "UPDATE releases SET outcome = ?3, detail = ?4 WHERE environment = ?1 AND number = ?2",
            params![environment, number, outcome.as_str(), detail],
            environment,
            number,
        )
    }

    pub fn set_schema_version(
        &self,
        environment: &str,
        number: u64,
        version: &str,
    ) -> Result<(), StoreError> {
        self.update_release(
            "UPDATE releases SET schema_version = ?3 WHERE environment = ?1 AND number = ?2",
            params![environment, number, version],
            environment,
            number,
        )
    }

    /// Runs `sql`, an UPDATE of release `number` of `environment`; an error when there is none.
    fn update_release(
        &self,
        sql: &str,
        values: &[&dyn rusqlite::ToSql],
        environment: &str,
        number: u64,
    ) -> Result<(), StoreError> {
        let changed = self
            .connection()?
            .execute(sql, values)
            .map_err(|e| self.sqlite(e))?;
        if changed == 0 {
            return Err(StoreError::Other {
                path: self.path.clone(),
                message: format!("there is no release {number} in `{environment}`"),
            });
        }
        Ok(())
    }

    /// Marks releases still `in_progress` as interrupted: their deploy is gone (its lock was
    /// stale), so they will never finish.
    pub fn interrupt_unfinished(&self, environment: &str) -> Result<Vec<u64>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare("SELECT number FROM releases WHERE environment = ?1 AND outcome = ?2")
            .map_err(|e| self.sqlite(e))?;
        let numbers = statement
            .query_map(params![environment, Outcome::InProgress.as_str()], |row| {
                row.get(0)
            })
            .and_then(Iterator::collect::<Result<Vec<u64>, _>>)
            .map_err(|e| self.sqlite(e))?;
        connection
            .execute(
                "UPDATE releases SET outcome = ?2, detail = 'the deploy was killed before it finished'
                 WHERE environment = ?1 AND outcome = ?3",
                params![environment, Outcome::Interrupted.as_str(), Outcome::InProgress.as_str()],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(numbers)
    }

    /// Every release of `environment`, newest first.
    pub fn releases(&self, environment: &str) -> Result<Vec<Release>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare(
                "SELECT number, image_reference, image_digest, image_tags, git_commit, version,
                    author, created_at, outcome, detail, rollback_of, schema_version
                 FROM releases WHERE environment = ?1 ORDER BY number DESC",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([environment], |row| {
                Ok(RawRelease {
                    number: row.get(0)?,
                    reference: row.get(1)?,
                    digest: row.get(2)?,
                    tags: row.get(3)?,
                    commit: row.get(4)?,
                    version: row.get(5)?,
                    author: row.get(6)?,
                    created_at: row.get(7)?,
                    outcome: row.get(8)?,
                    detail: row.get(9)?,
                    rollback_of: row.get(10)?,
                    schema_version: row.get(11)?,
                })
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.sqlite(e))?;
        let mut statement = connection
            .prepare(
                "SELECT release, service, family, revision FROM release_revisions
                 WHERE environment = ?1 ORDER BY release, position",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut revisions: BTreeMap<u64, Vec<ServiceRevision>> = BTreeMap::new();
        let links = statement
            .query_map([environment], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u64>(3)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.sqlite(e))?;
        for (release, service, family, n) in links {
            revisions.entry(release).or_default().push(ServiceRevision {
                service,
                revision: format!("{family}:{n}"),
            });
        }
        rows.into_iter()
            .map(|raw| {
                let revisions = revisions.remove(&raw.number).unwrap_or_default();
                raw.into_release(environment, revisions)
                    .map_err(|message| StoreError::Other {
                        path: self.path.clone(),
                        message,
                    })
            })
            .collect()
    }

    pub fn release(&self, environment: &str, number: u64) -> Result<Option<Release>, StoreError> {
        Ok(self
            .releases(environment)?
            .into_iter()
            .find(|r| r.number == number))
    }

    /// The stored spec of a revision (`family:n`).
    pub fn revision(&self, id: &str) -> Result<Option<ServiceSpec>, StoreError> {
        let Some((family, n)) = id.rsplit_once(':') else {
            return Ok(None);
        };
        let Ok(n) = n.parse::<u64>() else {
            return Ok(None);
        };
        let connection = self.connection()?;
        let spec: Option<String> = connection
            .query_row(
                "SELECT spec FROM revisions WHERE family = ?1 AND number = ?2",
                params![family, n],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        spec.map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Other {
                path: self.path.clone(),
                message: format!("revision {id} is unreadable: {e}"),
            })
        })
        .transpose()
    }
}

struct RawRelease {
    number: u64,
    reference: String,
    digest: String,
    tags: String,
    commit: String,
    version: Option<String>,
    author: String,
    created_at: String,
    outcome: String,
    detail: Option<String>,
    rollback_of: Option<u64>,
    schema_version: Option<String>,
}

impl RawRelease {
    fn into_release(
        self,
        environment: &str,
        revisions: Vec<ServiceRevision>,
    ) -> Result<Release, String> {
        let created_at = DateTime::parse_from_rfc3339(&self.created_at)
            .map_err(|e| {
                format!(
                    "release {}: bad time {:?}: {e}",
                    self.number, self.created_at
                )
            })?
            .with_timezone(&Utc);
        Ok(Release {
            number: self.number,
            environment: environment.to_owned(),
            image: ImageRef {
                reference: self.reference,
                digest: self.digest,
                tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            },
            meta: ReleaseMeta {
                commit: self.commit,
                version: self.version,
                author: self.author,
                created_at,
            },
            revisions,
            outcome: self
                .outcome
                .parse()
                .map_err(|e| format!("release {}: {e}", self.number))?,
            detail: self.detail,
            rollback_of: self.rollback_of,
            schema_version: self.schema_version,
        })
    }
}

fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    // Read and apply under one write lock: two processes opening a new database at once
    // must not both run the first migration.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            command: Some(vec!["/app".to_owned(), "serve".to_owned()]),
            env: BTreeMap::from([("SECRET_KEY".to_owned(), "s3cr3t".to_owned())]),
            replicas: 2,
            port: Some(8000),
            health: None,
            stop_timeout_secs: 10,
            cpu: None,
            memory_mib: Some(256),
            volumes: vec!["app-local-data:/data".to_owned()],
            network: None,
            logs: None,
            revision: None,
        }
    }

    fn image(id: &str) -> ImageRef {
        ImageRef {
            reference: id.to_owned(),
            digest: id.to_owned(),
            tags: vec!["app-local:abc".to_owned()],
        }
    }

    fn meta(commit: &str) -> ReleaseMeta {
        ReleaseMeta {
            commit: commit.to_owned(),
            version: Some("v1.0.0".to_owned()),
            author: "alice".to_owned(),
            created_at: Utc::now(),
        }
    }

    fn new(image_id: &str) -> Revisions {
        Revisions::New(vec![
            NewRevision {
                family: "app-local-web".to_owned(),
                spec: spec("web", image_id),
            },
            NewRevision {
                family: "app-local-worker".to_owned(),
                spec: spec("worker", image_id),
            },
        ])
    }

    #[test]
    fn a_store_from_before_schema_versions_is_migrated_and_keeps_its_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // A database as the first store version left it: only the first migration ran.
            let connection = Connection::open(dir.path().join(DATABASE_FILE)).expect("open sqlite");
            connection
                .execute_batch(MIGRATIONS[0])
                .expect("first schema");
            connection
                .pragma_update(None, "user_version", 1)
                .expect("user_version");
            connection
                .execute(
                    "INSERT INTO releases (environment, number, image_reference, image_digest,
                        image_tags, git_commit, version, author, created_at, outcome)
                     VALUES ('local', 1, 'img', 'sha256:1', '[]', 'c1', NULL, 'alice',
                        '2026-01-01T00:00:00+00:00', 'succeeded')",
                    [],
                )
                .expect("old release");
        }
        let store = Store::open(dir.path()).expect("open migrates");
        let old = store.releases("local").expect("releases");
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].schema_version, None, "older history has no version");
        let second = store
            .insert_release("local", &image("sha256:2"), &meta("c2"), &new("sha256:2"))
            .expect("second");
        store
            .set_schema_version("local", second.number, "0003")
            .expect("set version");
        let releases = store.releases("local").expect("releases");
        assert_eq!(releases[0].schema_version.as_deref(), Some("0003"));
        assert!(store.set_schema_version("local", 9, "0001").is_err());
        drop(store);
        // Opening again runs no migration twice.
        let again = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.releases("local").expect("releases").len(), 2);
    }

    #[test]
    fn numbers_releases_and_revisions_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let first = store
            .insert_release("local", &image("sha256:1"), &meta("c1"), &new("sha256:1"))
            .expect("first");
        let second = store
            .insert_release("local", &image("sha256:2"), &meta("c2"), &new("sha256:2"))
            .expect("second");
        assert_eq!((first.number, second.number), (1, 2));
        assert_eq!(
            second.revision_of("web").map(|r| r.revision.as_str()),
            Some("app-local-web:2")
        );
        store
            .set_outcome("local", 1, Outcome::Succeeded, None)
            .expect("outcome");
        store
            .set_outcome("local", 2, Outcome::RolledBack, Some("health failed"))
            .expect("outcome");
        let all = store.releases("local").expect("releases");
        assert_eq!(all.iter().map(|r| r.number).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(all[0].outcome, Outcome::RolledBack);
        assert_eq!(all[0].detail.as_deref(), Some("health failed"));
        assert_eq!(all[1].meta.commit, "c1");
        assert_eq!(all[1].revisions, first.revisions);
        let stored = store
            .revision("app-local-web:1")
            .expect("read")
            .expect("exists");
        assert_eq!(stored, spec("web", "sha256:1"));
        assert!(store.releases("other").expect("other env").is_empty());
    }

    #[test]
    fn a_copy_refers_to_the_same_immutable_revisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let first = store
            .insert_release("local", &image("sha256:1"), &meta("c1"), &new("sha256:1"))
            .expect("first");
        store
            .insert_release("local", &image("sha256:2"), &meta("c2"), &new("sha256:2"))
            .expect("second");
        let copy = store
            .insert_release("local", &first.image, &meta("c3"), &Revisions::CopyOf(1))
            .expect("copy");
        assert_eq!(copy.number, 3);
        assert_eq!(copy.rollback_of, Some(1));
        assert_eq!(copy.revisions, first.revisions);
        assert!(store
            .insert_release("local", &first.image, &meta("c4"), &Revisions::CopyOf(9))
            .is_err());
    }

    #[test]
    fn the_database_is_private_and_survives_reopening() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .insert_release("local", &image("sha256:1"), &meta("c1"), &new("sha256:1"))
                .expect("insert");
        }
        let mode = std::fs::metadata(dir.path().join(DATABASE_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.releases("local").expect("releases").len(), 1);
    }

    #[test]
    fn unfinished_releases_become_interrupted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .insert_release("local", &image("sha256:1"), &meta("c1"), &new("sha256:1"))
            .expect("insert");
        assert_eq!(
            store.interrupt_unfinished("local").expect("interrupt"),
            vec![1]
        );
        assert_eq!(
            store.releases("local").expect("releases")[0].outcome,
            Outcome::Interrupted
        );
    }
}
