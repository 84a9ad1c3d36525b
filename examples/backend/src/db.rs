//! Embedded SQLite migrations and the schema check behind the health route.
//!
//! The schema version is SQLite's `PRAGMA user_version`: it lives in the
//! database header, so it changes in the same transaction as the DDL.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::Break;

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Migration N (1-based) brings the schema to version N.
const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_create_items",
        sql: include_str!("../migrations/0001_create_items.sql"),
    },
    Migration {
        name: "0002_add_description",
        sql: include_str!("../migrations/0002_add_description.sql"),
    },
];

/// The extra migration of a `BREAK=migration` release. It always fails, so
/// that release's `migrate` fails even against an up-to-date database, and
/// its server (which expects this version) never reports healthy.
const BROKEN: Migration = Migration {
    name: "0003_backfill_items",
    sql: "UPDATE items SET description = title || no_such_column;",
};

fn migrations(mode: Break) -> Vec<&'static Migration> {
    let mut all: Vec<&'static Migration> = MIGRATIONS.iter().collect();
    if mode == Break::Migration {
        all.push(&BROKEN);
    }
    all
}

/// The schema version this binary needs.
pub fn expected_version(mode: Break) -> u32 {
    u32::try_from(migrations(mode).len()).unwrap_or(u32::MAX)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies all pending migrations and returns the resulting version.
///
/// All pending migrations run in one transaction, so a failing one leaves
/// the schema exactly as it was (SQLite DDL is transactional).
pub fn migrate(path: &Path, mode: Break) -> Result<u32, String> {
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

    let all = migrations(mode);
    let known = expected_version(mode);
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
            .execute_batch(migration.sql)
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
pub fn check_health(path: &Path, mode: Break) -> Result<(), String> {
    if mode == Break::Health {
        return Err("deliberately broken release (BREAK=health)".to_owned());
    }
    if !path.exists() {
        return Err(format!(
            "database {} does not exist; run migrate",
            path.display()
        ));
    }
    // Read-only, so a probe can never create or change the database.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    // A running migrate holds the write lock briefly; wait rather than flap.
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    let version = schema_version(&conn).map_err(|e| format!("cannot read schema version: {e}"))?;
    let expected = expected_version(mode);
    if version < expected {
        return Err(format!(
            "database schema is at version {version}, this release needs {expected}; run migrate"
        ));
    }
    Ok(())
}
