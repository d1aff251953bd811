//! Versioned schema migrations, tracked in `PRAGMA user_version`. Each entry
//! moves the schema one version up; applied entries are never edited.

use rusqlite::Connection;

use super::{StoreError, StoreResult};

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 3: sessions and activity
    "CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        user        TEXT NOT NULL,
        service     TEXT NOT NULL,
        rhost       TEXT,
        tty         TEXT,
        pid         INTEGER NOT NULL,
        -- the process's start time (clock ticks since boot): pid + start
        -- time identify it even if the pid is later reused
        pid_start   INTEGER,
        started     INTEGER NOT NULL,
        state       TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'revoked')),
        ended       INTEGER
    );
    CREATE INDEX sessions_user ON sessions(user, state);
    CREATE TABLE activity (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        user    TEXT,
        event   TEXT NOT NULL,
        service TEXT,
        rhost   TEXT,
        detail  TEXT NOT NULL
    );
    CREATE INDEX activity_user ON activity(user, at);
    CREATE INDEX activity_at ON activity(at);",
    // 4: password reset tokens (only a SHA-256 of each token is kept)
    "CREATE TABLE reset_tokens (
        id         INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        token_hash BLOB NOT NULL UNIQUE,
        created    INTEGER NOT NULL,
        expires    INTEGER NOT NULL,
        used       INTEGER
    );
    CREATE INDEX reset_tokens_account ON reset_tokens(account_id);",
    // 5: wrong codes given to confirm a pending enrollment
    "ALTER TABLE totp_pending ADD COLUMN wrong_codes INTEGER NOT NULL DEFAULT 0;",
    // 6: TOTP secrets encrypted at rest: the id of the key that sealed each
    // one (NULL: a plaintext secret from before, sealed at the next start)
    "ALTER TABLE totp ADD COLUMN key_id INTEGER;
    ALTER TABLE totp_pending ADD COLUMN key_id INTEGER;",
    // 7: open sessions listed a page at a time, oldest first
    "CREATE INDEX sessions_state_started ON sessions(state, started, id);",
    // 8: what a session runs in (a browser's user agent) and when a panel
    // last checked it
    "ALTER TABLE sessions ADD COLUMN client TEXT;
    ALTER TABLE sessions ADD COLUMN last_active INTEGER;",
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

/// Whether the database already records which key sealed each TOTP secret
/// (a database from before encryption at rest does not). Asked before
/// migrating, to know whether it may hold plaintext to scrub.
pub fn seals_secrets(conn: &Connection) -> StoreResult<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('totp') WHERE name = 'key_id'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}
