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
pub mod db;
pub mod durability;
mod logins;
mod policy_overrides;
pub mod postgres;
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

use db::{Db, Dialect};

use crate::secrets::secret_box::{SealError, SecretKey};
use write_behind::WriteBehind;

pub use accounts::Account;
pub use activity::{ActivityPosition, ActivityRow, NewEvent};
pub use durability::{Durability, StoreGuard};
pub use logins::{LoginEvents, Spend};
pub use policy_overrides::Override;
pub use postgres::PgSettings;
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
    /// PostgreSQL refused or failed a query.
    Postgres(::postgres::Error),
    /// The database cannot be reached now (PostgreSQL down or unreachable).
    Unavailable(String),
    /// `[store]` settings that cannot be used.
    Config(String),
    /// A row holds a value kauthd cannot read (a damaged row).
    BadRow(String),
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
            StoreError::Postgres(e) => {
                write!(f, "database error: {}", postgres::describe_error(e))
            }
            StoreError::Unavailable(why) | StoreError::Config(why) => f.write_str(why),
            StoreError::BadRow(why) => write!(f, "a database row cannot be read: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// True when SQLite could not write because the filesystem is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(ErrorCode::DiskFull),
            StoreError::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }

    /// True when the database cannot be reached (the request is refused;
    /// it works again once the database is back).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Postgres(e) => postgres::is_connection_error(e),
            _ => false,
        }
    }

    /// True when an insert broke a uniqueness rule (the record exists).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation),
            StoreError::Postgres(e) => {
                e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        StoreError::Postgres(e)
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
    db: Db,
    /// This server's name in sessions and activity (`[daemon] host_name`).
    host_name: String,
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
        // A database from before sealing may hold plaintext secrets, also
        // in free pages of deleted rows: scrub it once.
        let scrub = !schema::seals_secrets(&conn)?;
        let mut store = Store {
            db: Db::Sqlite(conn),
            host_name: crate::clock::hostname(),
            key,
            durability,
            write_behind: RefCell::default(),
        };
        schema::migrate(&store.db)?;
        store.seal_plaintext_secrets(scrub)?;
        store.checkpoint();
        Ok(store)
    }

    /// Connects to the PostgreSQL database the fleet shares and brings its
    /// schema up to date (under an advisory lock, so kauthd on several
    /// hosts starting at once do not race). Every host must seal with the
    /// same key (the same `secret_key_file` content).
    pub fn open_postgres(settings: &PgSettings, key: SecretKey) -> StoreResult<Store> {
        let pool = postgres::PgPool::new(settings)?;
        let mut store = Store {
            db: Db::Postgres(Box::new(pool)),
            host_name: crate::clock::hostname(),
            key,
            durability: Durability::by_the_server(),
            write_behind: RefCell::default(),
        };
        schema::migrate(&store.db)?;
        store.seal_plaintext_secrets(false)?;
        Ok(store)
    }

    /// Opens the store `[store]` names: SQLite in `[daemon] state_dir`,
    /// or the shared PostgreSQL database. Records are tagged with
    /// `[daemon] host_name`.
    pub fn open_configured(config: &crate::config::Config, key: SecretKey) -> StoreResult<Store> {
        let mut store = match config.store.backend {
            crate::config::StoreBackend::Sqlite => Store::open(&config.daemon.state_dir, key)?,
            crate::config::StoreBackend::Postgres => {
                Store::open_postgres(&config.store.postgres_settings()?, key)?
            }
        };
        store.set_host_name(&config.daemon.host_name());
        Ok(store)
    }

    /// Names this server in the sessions and activity it records.
    pub fn set_host_name(&mut self, name: &str) {
        name.clone_into(&mut self.host_name);
    }

    /// This server's name in the records.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// Where the records are, for the log: `None` for SQLite (the state
    /// directory), else the database (never its password).
    pub fn shared_database(&self) -> Option<&str> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Postgres(pool) => Some(&pool.target),
        }
    }

    /// Which engine holds the store.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The group fsync of this database, to wait on outside the store lock.
    pub fn durability(&self) -> Arc<Durability> {
        Arc::clone(&self.durability)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> StoreResult<i64> {
        schema::version(&self.db)
    }
}

/// The schema version this kauthd migrates a database to.
pub fn known_schema_version() -> i64 {
    i64::try_from(schema::MIGRATIONS.len()).unwrap_or(i64::MAX)
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
