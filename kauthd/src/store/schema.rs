//! Versioned schema migrations, tracked in `PRAGMA user_version`. Each entry
//! moves the schema one version up; applied entries are never edited.

use rusqlite::Connection;

use super::{StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    // 1: accounts
    "CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        uid           INTEGER UNIQUE,
        password_hash TEXT,
        locked        INTEGER NOT NULL DEFAULT 0,
        created       INTEGER NOT NULL
    );",
];

/// Applies every migration the database has not seen yet, each in its own
/// transaction.
pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("database schema migrated to version {version}");
    }
    Ok(())
}
