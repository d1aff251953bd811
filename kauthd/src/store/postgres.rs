//! The PostgreSQL backend: a bounded pool of connections to the database
//! the fleet shares, and the conversions between its values and ours.
//!
//! A connection that fails is dropped from the pool and a new one is
//! opened (with several hosts and `target_session_attrs=read-write` in the
//! url, the new one finds a promoted standby). While the database cannot
//! be reached every store call fails (requests are refused, never answered
//! from a cache), quickly: see [`PgPool::get`]. A refused request logs the
//! outage (at most once a minute, `error.rs`); its end is logged here.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::NoTls;
use zeroize::Zeroizing;

use super::db::{Cell, Row, Value};
use super::{StoreError, StoreResult};

/// While the database is known to be unreachable, how long a call waits
/// for a connection the pool may have opened meanwhile.
pub const WAIT_WHILE_DOWN: Duration = Duration::from_millis(200);

/// While the database is known to be unreachable, how often a request
/// tries a connection of its own.
pub const TRY_WHILE_DOWN: Duration = Duration::from_secs(1);

/// A pooled connection not used for this long is checked (one empty
/// query) before it is handed out: the server may have restarted.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The largest password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

/// How to reach the shared database (`[store]`).
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// A `postgresql://` url or a libpq `key=value` string, without a
    /// password.
    pub url: String,
    /// The file holding the connection's password, if it needs one.
    pub password_file: Option<std::path::PathBuf>,
    pub pool_size: u32,
    pub connect_timeout: Duration,
}

/// One pooled connection and the statements prepared on it.
pub struct PgConn {
    pub client: postgres::Client,
    pub statements: HashMap<String, postgres::Statement>,
    checked: Instant,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

/// Opens connections for the pool.
#[derive(Debug)]
pub struct Manager {
    config: postgres::Config,
}

/// The driver's config for `settings` (the password read from its file)
/// and a description of where it points, for messages.
fn connect_config(settings: &PgSettings) -> StoreResult<(postgres::Config, String)> {
    let mut config: postgres::Config = split_host_lists(&settings.url).parse().map_err(|e| {
        StoreError::Config(format!(
            "[store] url cannot be used: {e}; give a postgresql:// url or a libpq key=value string"
        ))
    })?;
    if config.get_password().is_some() {
        return Err(StoreError::Config(
                "[store] url holds a password; remove it from the url and put it in the file named by [store] password_file (readable only by kauthd)".to_owned(),
            ));
    }
    if let Some(path) = &settings.password_file {
        let password = read_password_file(path)?;
        config.password(password.as_bytes());
    }
    config.connect_timeout(settings.connect_timeout);
    // A server that stops answering mid-query (a network that drops
    // packets) ends the connection rather than holding the store.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(settings.connect_timeout.saturating_mul(2));
    }
    // Durable before acknowledged: a commit returns only once the server
    // has flushed it, whatever the role's or database's default.
    let options = match config.get_options() {
        Some(given) => format!("{given} -c synchronous_commit=on"),
        None => "-c synchronous_commit=on".to_owned(),
    };
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name("kauthd");
    }
    let target = describe(&config);
    Ok((config, target))
}

/// A failed connection attempt, with its causes (postgres's own text for
/// some errors is only "invalid configuration" or "db error").
#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        ConnectError(describe_error(&e))
    }
}

/// An error and the causes under it, as one line.
pub fn describe_error(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<PgConn, ConnectError> {
        let client = self.config.connect(NoTls)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            checked: Instant::now(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        if conn.checked.elapsed() >= CHECK_AFTER_IDLE {
            conn.client.simple_query("")?;
        }
        conn.checked = Instant::now();
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// A connection from the pool, or one opened outside it while the pool
/// has none (closed when dropped).
pub enum PgHandle {
    Pooled(r2d2::PooledConnection<Manager>),
    Direct(PgConn),
}

impl std::ops::Deref for PgHandle {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        match self {
            PgHandle::Pooled(conn) => conn,
            PgHandle::Direct(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for PgHandle {
    fn deref_mut(&mut self) -> &mut PgConn {
        match self {
            PgHandle::Pooled(conn) => conn,
            PgHandle::Direct(conn) => conn,
        }
    }
}

/// The bounded pool, with the outage bookkeeping.
pub struct PgPool {
    pool: r2d2::Pool<Manager>,
    /// Opens a connection outside the pool (see [`PgPool::get`]).
    direct: Manager,
    /// The database is known to be unreachable.
    down: AtomicBool,
    /// When a connection outside the pool was last tried, while down.
    last_try: Mutex<Option<Instant>>,
    /// Where the database is, for messages (never the password).
    pub(super) target: String,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgPool {
    /// Builds the pool (connections are opened as they are needed; the
    /// first use says whether the database can be reached).
    pub fn new(settings: &PgSettings) -> StoreResult<PgPool> {
        let (config, target) = connect_config(settings)?;
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(settings.connect_timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager {
                config: config.clone(),
            });
        Ok(PgPool {
            pool,
            direct: Manager { config },
            down: AtomicBool::new(false),
            last_try: Mutex::new(None),
            target,
        })
    }

    /// A connection, or `Unavailable` after `connect_timeout`. While the
    /// database is known to be unreachable: a pooled connection if one
    /// comes within [`WAIT_WHILE_DOWN`], else, at most once every
    /// [`TRY_WHILE_DOWN`], one opened outside the pool (the pool retries
    /// with a growing delay; this way the first request after the
    /// database is back is served), else `Unavailable` at once.
    pub fn get(&self) -> StoreResult<PgHandle> {
        if !self.down.load(Ordering::SeqCst) {
            return match self.pool.get() {
                Ok(conn) => Ok(PgHandle::Pooled(conn)),
                Err(e) => {
                    let why = format!("cannot reach the database at {}: {e}", self.target);
                    self.note_down(&why);
                    Err(StoreError::Unavailable(why))
                }
            };
        }
        if let Ok(conn) = self.pool.get_timeout(WAIT_WHILE_DOWN) {
            self.note_up();
            return Ok(PgHandle::Pooled(conn));
        }
        let due = {
            let mut last = self.last_try.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= TRY_WHILE_DOWN);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return Err(StoreError::Unavailable(format!(
                "the database at {} cannot be reached",
                self.target
            )));
        }
        match r2d2::ManageConnection::connect(&self.direct) {
            Ok(conn) => {
                self.note_up();
                Ok(PgHandle::Direct(conn))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot reach the database at {}: {e}",
                self.target
            ))),
        }
    }

    /// The database answered again.
    fn note_up(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            log::warn!(
                "the database at {} can be reached again; requests are served",
                self.target
            );
        }
    }

    /// Notes a call's outcome: a lost connection is an outage too (the
    /// connection is dropped when it goes back to the pool).
    pub fn note_result<T>(&self, result: &StoreResult<T>) {
        if let Err(StoreError::Postgres(e)) = result {
            if is_connection_error(e) {
                self.note_down(&format!(
                    "lost the connection to the database at {}: {}",
                    self.target,
                    describe_error(e)
                ));
            }
        }
    }

    /// Notes an outage: calls wait less for a connection until one works.
    fn note_down(&self, why: &str) {
        if !self.down.swap(true, Ordering::SeqCst) {
            log::debug!("{why}");
        }
    }
}

/// Whether an error is about the connection, not the query: the server
/// went away, refused us, or is shutting down (SQLSTATE classes 08 and
/// 57). The request is refused as "database unreachable".
pub fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => {
            let class = code.code().get(..2).unwrap_or("");
            class == "08" || class == "57"
        }
    }
}

/// What one connection to the database showed (`kauthctl doctor`).
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where the database is (never the password).
    pub target: String,
    /// The schema version in the database; `None` before kauthd's first
    /// start on it.
    pub schema_version: Option<i64>,
    /// The database server's clock minus this host's, in milliseconds
    /// (the round trip's midpoint stands for this host's time).
    pub clock_offset_ms: i64,
    /// The server accepts writes (a primary, not a standby).
    pub writable: bool,
}

/// Connects once, as kauthd would (no pool, nothing written), and reads
/// the schema version, the server's clock and whether it takes writes.
pub fn probe(settings: &PgSettings) -> StoreResult<Probe> {
    let (config, target) = connect_config(settings)?;
    let mut client = config.connect(NoTls).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot reach the database at {target}: {}",
            describe_error(&e)
        ))
    })?;
    let exists: bool = client
        .query_one("SELECT to_regclass('kauthd_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    let schema_version = if exists {
        Some(
            client
                .query_one("SELECT version FROM kauthd_schema", &[])?
                .try_get(0)?,
        )
    } else {
        None
    };
    let before = now_ms();
    let row = client.query_one(
        "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT), NOT pg_is_in_recovery()",
        &[],
    )?;
    let after = now_ms();
    let server_ms: i64 = row.try_get(0)?;
    Ok(Probe {
        target,
        schema_version,
        clock_offset_ms: server_ms - (before + (after - before) / 2),
        writable: row.try_get(1)?,
    })
}

/// This host's clock in milliseconds since 1970.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// libpq reads `?host=/run/a,/run/b` in a url as two hosts; the driver
/// reads one socket path with a comma in it. Repeating the parameter
/// (`?host=/run/a&host=/run/b`) means the same to both.
fn split_host_lists(url: &str) -> String {
    let is_url = url.starts_with("postgresql://") || url.starts_with("postgres://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .flat_map(|pair| match pair.split_once('=') {
            Some(("host", hosts)) => hosts.split(',').map(|h| format!("host={h}")).collect(),
            _ => vec![pair.to_owned()],
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Hosts and database of a connection config, for messages.
fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "{} (database {})",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)")
    )
}

/// Reads the password file: a regular file (not a symlink), owned by root
/// or by kauthd's user, readable by its owner only, at most 4 KiB. The
/// trailing newline is not part of the password.
pub fn read_password_file(path: &Path) -> StoreResult<Zeroizing<String>> {
    let bad = |why: String| {
        StoreError::Config(format!("[store] password_file {}: {why}", path.display()))
    };
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            bad(format!(
                "cannot be opened ({e}); it must be a regular file, not a symlink"
            ))
        })?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(bad("is not a regular file".to_owned()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(bad(format!(
            "is owned by uid {}; it must belong to root or to kauthd's user (chown root {})",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "can be read by others (mode {:o}); run chmod 600 {}",
            meta.mode() & 0o777,
            path.display()
        )));
    }
    if meta.len() > MAX_PASSWORD_FILE {
        return Err(bad(format!(
            "is larger than {MAX_PASSWORD_FILE} bytes; it must hold only the password"
        )));
    }
    let mut text = Zeroizing::new(String::new());
    (&mut file)
        .take(MAX_PASSWORD_FILE)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot be read as text: {e}")))?;
    let trimmed = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    if trimmed.is_empty() {
        return Err(bad("is empty".to_owned()));
    }
    Ok(trimmed)
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A PostgreSQL row as owned cells. Booleans become 0 and 1, as SQLite
/// stores them.
pub fn row_from(row: &postgres::Row) -> StoreResult<Row> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Cell::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Cell::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
            }
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map(|v| Cell::Blob(Zeroizing::new(v))),
            _ => {
                return Err(StoreError::BadRow(format!(
                    "column {} has type {ty}, which kauthd does not read",
                    column.name()
                )))
            }
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_socket_hosts_in_a_url_names_each_host() {
        let url = "postgresql://kauthd@/kauthd?host=/run/a,/run/b&port=5432,5433&target_session_attrs=read-write";
        let config: postgres::Config = split_host_lists(url).parse().unwrap();
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), [5432, 5433]);
        let plain = "host=/run/a,/run/b port=1,2 user=kauthd";
        assert_eq!(split_host_lists(plain), plain);
    }

    #[test]
    fn a_password_file_must_be_private_and_not_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        fs::write(&file, "s3cret\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_password_file(&file).is_err(), "group/world readable");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&file).unwrap().as_str(), "s3cret");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_password_file(&link).is_err(), "symlink");
        fs::write(&file, vec![b'x'; 5000]).unwrap();
        assert!(read_password_file(&file).is_err(), "too large");
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let settings = PgSettings {
            url: "postgresql://kauthd:hunter2@db/kauthd".to_owned(),
            password_file: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
        };
        let err = PgPool::new(&settings).unwrap_err().to_string();
        assert!(
            err.contains("password_file") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
