//! The store: one SQLite database in the state dir. WAL with
//! `synchronous=NORMAL`: a commit reaches the WAL without an fsync, and
//! kauthd syncs the WAL itself, shared by the requests waiting, before it
//! acknowledges a write (`durability`), so a write kauthd acknowledged
//! survives a crash or power loss. Each submodule holds the queries for
//! one kind of record.
//!
//! kauthd holds the database in exclusive locking mode: the WAL index lives
//! in kauthd's memory rather than in a mapped `-shm` file (a `-shm` file
//! that cannot be written would kill the process with SIGBUS), and a second
//! kauthd on the same state dir is refused. `secure_delete` overwrites
//! deleted content. TOTP secrets are stored sealed with the key of
//! `secret_box` (see `twofactor` and `sealing`).

mod accounts;
mod activity;
pub mod durability;
mod logins;
mod policy_overrides;
mod ratelimit;
mod reset_tokens;
mod schema;
mod sealing;
mod sessions;
mod twofactor;
mod upkeep;
mod write_behind;

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode};

use crate::secrets::secret_box::{SealError, SecretKey};
use write_behind::WriteBehind;

pub use accounts::Account;
pub use activity::{ActivityPosition, ActivityRow, NewEvent};
pub use durability::{Durability, StoreGuard};
pub use logins::{LoginEvents, Spend};
pub use policy_overrides::Override;
pub use ratelimit::{LimitKey, Limits, LockRow};
pub use sealing::KeyUse;
pub use sessions::{NewSession, SessionPosition, SessionRecord};
pub use twofactor::GuardRow;
pub use twofactor::{NewTotp, PendingTotp, StoredRecoveryCode, TotpCredential, TwoFactorRow};
pub use write_behind::WRITE_BEHIND_INTERVAL;

pub const DATABASE_FILE: &str = "kauthd.sqlite";

#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    Io(PathBuf, io::Error),
    Sqlite(rusqlite::Error),
    NotFound,
    AlreadyExists,
    /// The database was written by a newer kauthd.
    TooNew {
        found: i64,
        known: i64,
    },
    /// A stored TOTP secret could not be sealed or opened.
    Sealed(SealError),
    /// Another process (another kauthd) holds the database.
    InUse(PathBuf),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
            StoreError::NotFound => write!(f, "no such record"),
            StoreError::AlreadyExists => write!(f, "already exists"),
            StoreError::TooNew { found, known } => write!(
                f,
                "the database has schema version {found} but this kauthd knows only up to {known}; run a newer kauthd"
            ),
            StoreError::Sealed(e) => write!(f, "{e}"),
            StoreError::InUse(path) => write!(
                f,
                "{} is in use by another process (another kauthd on the same state directory?); stop it first",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// True when SQLite could not write because the filesystem is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull))
    }
}

impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        StoreError::Sealed(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An open database. kauthd keeps one behind a mutex, so every
/// check-and-update runs alone.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// The key that seals TOTP secrets.
    key: SecretKey,
    /// The group fsync that makes acknowledged writes durable.
    durability: Arc<Durability>,
    /// Failed attempts not written yet (see `write_behind`).
    write_behind: RefCell<WriteBehind>,
}

/// Distinct statements kept prepared (the store has about 90).
const STATEMENT_CACHE: usize = 128;

impl Store {
    /// Opens (creating if needed) the database in `state_dir`, which is made
    /// owner-only, brings its schema up to date and seals with `key` any
    /// TOTP secret still stored in plain text.
    pub fn open(state_dir: &Path, key: SecretKey) -> StoreResult<Store> {
        prepare_state_dir(state_dir)?;
        let path = state_dir.join(DATABASE_FILE);
        // Create the file ourselves so it is 0600 from its first byte;
        // SQLite gives the -wal and -shm files the same mode.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Io(path.clone(), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Io(path.clone(), e))?;
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        // Every statement is prepared once and kept: parsing SQL again for
        // each request cost more than running it.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        configure(&conn).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::InUse(path.clone())
            }
            _ => StoreError::Sqlite(e),
        })?;
        // The WAL exists once the database is in WAL mode: sync the
        // directory that names it.
        let durability =
            Durability::start(state_dir, &path).map_err(|e| StoreError::Io(path.clone(), e))?;
        let mut store = Store {
            conn,
            key,
            durability,
            write_behind: RefCell::default(),
        };
        // A database from before sealing may hold plaintext secrets, also
        // in free pages of deleted rows: scrub it once.
        let scrub = !schema::seals_secrets(&store.conn)?;
        schema::migrate(&mut store.conn)?;
        store.seal_plaintext_secrets(scrub)?;
        store.checkpoint();
        Ok(store)
    }

    /// The group fsync of this database, to wait on outside the store lock.
    pub fn durability(&self) -> Arc<Durability> {
        Arc::clone(&self.durability)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// The connection's settings. Exclusive locking must come before the first
/// access so that SQLite keeps the WAL index in memory; that first access
/// (switching to WAL) takes the lock, and fails if another process has it.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("SQLite refused WAL mode (got {mode}); continuing with it");
    }
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
    )?;
    upkeep::limit_wal(conn)?;
    // A read takes the lock now rather than at the first request.
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(())
}

fn prepare_state_dir(dir: &Path) -> StoreResult<()> {
    fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_owned(), e))?;
    let meta = fs::metadata(dir).map_err(|e| StoreError::Io(dir.to_owned(), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "state directory {} was readable by others; setting it to owner-only (0700)",
            dir.display()
        );
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::Io(dir.to_owned(), e))
}

#[cfg(test)]
pub(crate) fn test_key() -> SecretKey {
    SecretKey::generate().unwrap()
}

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), test_key()).unwrap();
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_and_dir_are_owner_only() {
        let (dir, _store) = test_store();
        let db = fs::metadata(dir.path().join(DATABASE_FILE)).unwrap();
        assert_eq!(db.permissions().mode() & 0o777, 0o600);
        let d = fs::metadata(dir.path()).unwrap();
        assert_eq!(d.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn reopening_keeps_the_schema_version() {
        let (dir, store) = test_store();
        let v = store.schema_version().unwrap();
        let key = store.key.clone();
        drop(store);
        let again = Store::open(dir.path(), key).unwrap();
        assert_eq!(again.schema_version().unwrap(), v);
        assert!(v >= 1);
    }
}
