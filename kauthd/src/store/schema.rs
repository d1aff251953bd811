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
    // 2: two-factor credentials, recovery codes, rate limiting, policy overrides
    "CREATE TABLE totp (
        account_id     INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        secret         BLOB NOT NULL,
        algorithm      TEXT NOT NULL,
        digits         INTEGER NOT NULL,
        period         INTEGER NOT NULL,
        enabled_at     INTEGER NOT NULL,
        -- replay guard: the time step of the last accepted code
        last_counter   INTEGER,
        last_used      INTEGER,
        -- offset (in steps) at which the last accepted code matched
        last_offset    INTEGER,
        -- per-user offset learned from a drifting clock
        learned_offset INTEGER NOT NULL DEFAULT 0,
        -- per-user window (imported files); NULL: [totp] skew_steps
        skew_steps     INTEGER
    );
    CREATE TABLE totp_pending (
        account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        secret     BLOB NOT NULL,
        algorithm  TEXT NOT NULL,
        digits     INTEGER NOT NULL,
        period     INTEGER NOT NULL,
        created    INTEGER NOT NULL
    );
    CREATE TABLE recovery_codes (
        id         INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        salt       BLOB NOT NULL,
        hash       BLOB NOT NULL,
        used_at    INTEGER
    );
    CREATE INDEX recovery_codes_account ON recovery_codes(account_id);
    CREATE TABLE drift_observations (
        id             INTEGER PRIMARY KEY,
        account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        server_counter INTEGER NOT NULL,
        offset_steps   INTEGER NOT NULL
    );
    CREATE TABLE failures (
        id    INTEGER PRIMARY KEY,
        kind  TEXT NOT NULL,
        key   TEXT NOT NULL,
        at    INTEGER NOT NULL
    );
    CREATE INDEX failures_key ON failures(kind, key, at);
    CREATE TABLE lockouts (
        kind  TEXT NOT NULL,
        key   TEXT NOT NULL,
        until INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE policy_overrides (
        name TEXT PRIMARY KEY,
        rule TEXT NOT NULL CHECK (rule IN ('require', 'exempt'))
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
