//! Embedded SQLite migrations and the schema check behind the health route.
//!
//! The schema version is SQLite's `PRAGMA user_version`: it lives in the
//! database header, so it changes in the same transaction as the DDL.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::Break;

/// One schema step. Its SQL file holds the upgrade, then optionally a line `-- down` and the
/// statements that undo it (what `migrate down` runs).
pub struct Migration {
    pub name: String,
    pub up: String,
    pub down: Option<String>,
}

impl Migration {
    fn parse(name: &str, text: &str) -> Migration {
        let mut up = String::new();
        let mut down: Option<String> = None;
        for line in text.lines() {
            match &mut down {
                Some(down) => {
                    down.push_str(line);
                    down.push('\n');
                }
                None if line.trim() == DOWN_MARKER => down = Some(String::new()),
                None => {
                    up.push_str(line);
                    up.push('\n');
                }
            }
        }
        Migration {
            name: name.to_owned(),
            up,
            down: down.filter(|d| !d.trim().is_empty()),
        }
    }
}

const DOWN_MARKER: &str = "-- down";

/// The migrations built into the binary; `MIGRATIONS_DIR` replaces them with the `NNNN_*.sql`
/// files of a directory, read at run time (so an image can ship newer SQL than the binary).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "0001_create_items",
        include_str!("../migrations/0001_create_items.sql"),
    ),
    (
        "0002_add_description",
        include_str!("../migrations/0002_add_description.sql"),
    ),
];

/// The extra migration of a `BREAK=migration` release. It always fails, so
/// that release's `migrate` fails even against an up-to-date database, and
/// its server (which expects this version) never reports healthy.
const BROKEN: (&str, &str) = (
    "0003_backfill_items",
    "UPDATE items SET description = title || no_such_column;",
);

/// Migration N (1-based) brings the schema to version N, in file-name order.
pub fn migrations(mode: Break, dir: Option<&Path>) -> Result<Vec<Migration>, String> {
    let mut all = match dir {
        None => EMBEDDED
            .iter()
            .map(|(name, text)| Migration::parse(name, text))
            .collect(),
        Some(dir) => read_dir(dir)?,
    };
    if mode == Break::Migration {
        all.push(Migration::parse(BROKEN.0, BROKEN.1));
    }
    Ok(all)
}

fn read_dir(dir: &Path) -> Result<Vec<Migration>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read migrations directory {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::read_to_string(path)
                .map(|text| Migration::parse(&name, &text))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .collect()
}

/// How versions are shown and given: the last applied migration's number, `0002`.
pub fn format_version(version: u32) -> String {
    format!("{version:04}")
}

/// Reads `0002` (or `2`) back; the versions `migrate down` accepts.
pub fn parse_version(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a schema version (e.g. 0002)"))
}

fn count(all: &[Migration]) -> u32 {
    u32::try_from(all.len()).unwrap_or(u32::MAX)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The database's schema version (0 when it does not exist yet); changes nothing.
pub fn current(path: &Path) -> Result<u32, String> {
    if !path.exists() {
        return Ok(0);
    }
    let conn = open_read_only(path)?;
    schema_version(&conn).map_err(|e| format!("cannot read schema version: {e}"))
}

fn open_read_only(path: &Path) -> Result<Connection, String> {
    // Read-only, so a probe can never create or change the database.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    // A running migrate holds the write lock briefly; wait rather than flap.
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    Ok(conn)
}

/// Undoes migrations down to `target`, newest first, in one transaction: a failing step leaves
/// the schema as it was. Returns the version the database was at.
pub fn down(path: &Path, all: &[Migration], target: u32) -> Result<u32, String> {
    let where_ = path.display();
    let mut conn =
        Connection::open(path).map_err(|e| format!("cannot open database {where_}: {e}"))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| format!("cannot configure database {where_}: {e}"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot lock database {where_}: {e}"))?;
    let current =
        schema_version(&tx).map_err(|e| format!("cannot read schema version of {where_}: {e}"))?;
    if target > current {
        return Err(format!(
            "the database is at version {}, below {}; run migrate to upgrade",
            format_version(current),
            format_version(target)
        ));
    }
    if current > count(all) {
        return Err(format!(
            "the database is at version {}, newer than this release knows ({}); run `migrate down` with a newer release",
            format_version(current),
            format_version(count(all))
        ));
    }
    for version in (target + 1..=current).rev() {
        let migration = &all[version as usize - 1];
        let Some(sql) = &migration.down else {
            return Err(format!(
                "migration {} has no `{DOWN_MARKER}` section; the database is still at version {}",
                migration.name,
                format_version(current)
            ));
        };
        println!("reverting {}...", migration.name);
        let result = tx
            .execute_batch(sql)
            .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version = {}", version - 1)));
        if let Err(e) = result {
            return Err(format!(
                "reverting {} failed: {e}; rolled back, database is still at version {}",
                migration.name,
                format_version(current)
            ));
        }
    }
    tx.commit()
        .map_err(|e| format!("cannot commit to {where_}: {e}"))?;
    Ok(current)
}

/// Applies all pending migrations and returns the resulting version.
///
/// All pending migrations run in one transaction, so a failing one leaves
/// the schema exactly as it was (SQLite DDL is transactional).
pub fn migrate(path: &Path, all: &[Migration]) -> Result<u32, String> {
    let where_ = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // FROM scratch images have no mkdir, so /data may not exist yet.
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    let mut conn =
        Connection::open(path).map_err(|e| format!("cannot open database {where_}: {e}"))?;
    // Another migrate (e.g. a second replica's one-off task) may hold the lock.
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| format!("cannot configure database {where_}: {e}"))?;
    // IMMEDIATE takes the write lock before reading the version, so two
    // concurrent runs cannot both apply the same migration.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot lock database {where_}: {e}"))?;
    let current =
        schema_version(&tx).map_err(|e| format!("cannot read schema version of {where_}: {e}"))?;

    let known = count(all);
    if current > known {
        // A newer release migrated already; its migrations are additive, so
        // this (older) release still works and there is nothing to do.
        println!("database is newer ({current}) than this release knows ({known}); nothing to do");
        return Ok(current);
    }

    let pending = all.iter().zip(1u32..).skip(current as usize);
    for (migration, version) in pending {
        println!("applying {}...", migration.name);
        let result = tx
            .execute_batch(&migration.up)
            .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version = {version}")));
        if let Err(e) = result {
            // Dropping `tx` rolls back every migration of this run.
            return Err(format!(
                "migration {} failed: {e}; rolled back, database is still at version {current}",
                migration.name
            ));
        }
    }
    tx.commit()
        .map_err(|e| format!("cannot commit migrations to {where_}: {e}"))?;
    Ok(known)
}

/// Ok when the database opens and its schema is at least the version this
/// binary expects; otherwise a one-line reason.
pub fn check_health(path: &Path, mode: Break, dir: Option<&Path>) -> Result<(), String> {
    if mode == Break::Health {
        return Err("deliberately broken release (BREAK=health)".to_owned());
    }
    if !path.exists() {
        return Err(format!(
            "database {} does not exist; run migrate",
            path.display()
        ));
    }
    let conn = open_read_only(path)?;
    let version = schema_version(&conn).map_err(|e| format!("cannot read schema version: {e}"))?;
    let expected = count(&migrations(mode, dir)?);
    if version < expected {
        return Err(format!(
            "database schema is at version {version}, this release needs {expected}; run migrate"
        ));
    }
    Ok(())
}
