//! A real PostgreSQL cluster in a temporary directory, for the tests of the
//! `postgres` store backend: Debian's server binaries (`initdb`, `pg_ctl`,
//! `pg_basebackup`), run as an unprivileged user, listening on a Unix socket
//! in the cluster's own directory and on a loopback port of its own.
//!
//! The database `kauthd` belongs to the role `kauthd`, which must log in
//! with a password (scram-sha-256); the password is in a 0600 file for
//! `[store] password_file`. The `postgres` superuser logs in without one
//! over the socket (for the tests' own SQL and for replication).
//!
//! Needs root (the server refuses to run as root, so the helpers switch to
//! the `postgres` system user, or `nobody` when there is none).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::daemon::running_as_root;
use crate::sshd::random_hex;

/// The database and the role kauthd uses.
pub const DATABASE: &str = "kauthd";
pub const ROLE: &str = "kauthd";

/// How long `pg_ctl` may wait for the server to start, stop or promote.
const PG_CTL_WAIT: Duration = Duration::from_secs(60);

/// One PostgreSQL server (a primary, or a standby made by [`PgCluster::standby_of`]).
/// Dropping it stops the server at once and removes its directory.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: PgUser,
    port: u16,
    password: String,
    running: bool,
    /// Whether commits are synced to disk.
    durable: bool,
}

/// The unprivileged account the server runs as.
#[derive(Clone, Copy)]
struct PgUser {
    uid: u32,
    gid: u32,
}

impl PgCluster {
    /// Initialises and starts a fresh cluster with the `kauthd` role and
    /// database.
    ///
    /// It does not sync to disk (`fsync = off`): quick, and nothing in the
    /// tests survives a crash of the machine. See [`PgCluster::start_durable`].
    pub fn start() -> PgCluster {
        PgCluster::start_with(false)
    }

    /// Like [`PgCluster::start`] with PostgreSQL's durable defaults (every
    /// commit synced), for measurements.
    pub fn start_durable() -> PgCluster {
        PgCluster::start_with(true)
    }

    fn start_with(durable: bool) -> PgCluster {
        let mut cluster = PgCluster::create("kauth-pg-");
        cluster.durable = durable;
        cluster.initdb();
        cluster.start_again();
        cluster.superuser_sql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{}'", cluster.password),
        );
        cluster.superuser_sql(
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        );
        cluster
    }

    /// A streaming-replication standby of `primary` (`pg_basebackup -R`
    /// into a directory of its own), started and following the primary.
    /// It shares the primary's roles, database and password.
    pub fn standby_of(primary: &PgCluster) -> PgCluster {
        let mut standby = PgCluster::create("kauth-pg-standby-");
        standby.password = primary.password.clone();
        standby.durable = primary.durable;
        standby.write_password_file();
        let out = standby.run_as_pg(
            Command::new(standby.bin.join("pg_basebackup"))
                .arg("-D")
                .arg(standby.data_dir())
                .arg("-h")
                .arg(primary.socket_dir())
                .arg("-p")
                .arg(primary.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ]),
        );
        assert_success("pg_basebackup", &out);
        // The copied postgresql.conf names the primary's port and socket
        // directory; the last setting in the file wins.
        standby.append_settings();
        standby.start_again();
        standby
    }

    /// A libpq URL for the `kauthd` role over the Unix socket (no password
    /// in it: that comes from [`PgCluster::password_file`]).
    pub fn url(&self) -> String {
        format!(
            "postgresql://{ROLE}@/{DATABASE}?host={}&port={}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// The same as [`PgCluster::url`] in key=value form.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={ROLE} dbname={DATABASE}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A libpq URL for the `kauthd` role over the loopback port.
    pub fn tcp_url(&self) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// One connection string naming every cluster given (a primary and its
    /// standby), connecting only to the one that accepts writes. In
    /// key=value form: libpq and the Rust driver both read a list of socket
    /// directories there (the driver takes only one per `host=` in a URL).
    pub fn failover_url(clusters: &[&PgCluster]) -> String {
        let hosts: Vec<String> = clusters
            .iter()
            .map(|c| c.socket_dir().display().to_string())
            .collect();
        let ports: Vec<String> = clusters.iter().map(|c| c.port.to_string()).collect();
        format!(
            "host={} port={} user={ROLE} dbname={DATABASE} target_session_attrs=read-write",
            hosts.join(","),
            ports.join(",")
        )
    }

    /// A root-owned 0600 file holding the `kauthd` role's password.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The `[store]` section for a kauthd on this cluster.
    pub fn store_config(&self) -> String {
        store_config(&self.url(), &self.password_file())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log (what `pg_ctl -l` collected).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected).
    pub fn stop(&mut self) {
        let out = self.pg_ctl(&["stop", "-m", "fast"]);
        assert_success("pg_ctl stop", &out);
        self.running = false;
    }

    /// Starts the server again on the same data.
    pub fn start_again(&mut self) {
        let out = self.run_as_pg(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", &PG_CTL_WAIT.as_secs().to_string(), "start"]),
        );
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        self.running = true;
    }

    /// Promotes a standby to a primary and waits until it accepts writes.
    pub fn promote(&self) {
        let out = self.pg_ctl(&["promote"]);
        assert_success("pg_ctl promote", &out);
    }

    /// Runs `sql` as the superuser in the `kauthd` database; returns what
    /// psql printed (unaligned, tuples only).
    pub fn sql(&self, sql: &str) -> String {
        self.superuser_sql(DATABASE, sql)
    }

    fn superuser_sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", database])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert_success("psql", &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh directory: `data/` and `socket/` belong to the server's user,
    /// the password file to root.
    fn create(prefix: &str) -> PgCluster {
        assert!(
            running_as_root(),
            "the PostgreSQL tests must run as root (they run the server as an \
             unprivileged user); run them as root, as CI does (tests/run)"
        );
        let bin = server_bin_dir();
        let user = pg_user();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["data", "socket"] {
            let path = dir.path().join(sub);
            fs::create_dir(&path).expect("create dir");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).expect("chown");
        }
        // The log file sits in the root-owned directory: create it for pg_ctl.
        let log = dir.path().join("server.log");
        fs::write(&log, "").expect("create log");
        std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid)).expect("chown log");
        let cluster = PgCluster {
            dir,
            bin,
            user,
            port: free_port(),
            password: random_hex(16),
            running: false,
            durable: true,
        };
        cluster.write_password_file();
        cluster
    }

    fn initdb(&self) {
        let out = self.run_as_pg(
            Command::new(self.bin.join("initdb"))
                .arg("-D")
                .arg(self.data_dir())
                .args([
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ]),
        );
        assert_success("initdb", &out);
        // Only the superuser and replication skip the password; the kauthd
        // role needs it on the socket and on the port.
        let hba = "local all postgres trust\n\
                   local replication postgres trust\n\
                   local all all scram-sha-256\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        let hba_path = self.data_dir().join("pg_hba.conf");
        fs::write(&hba_path, hba).expect("write pg_hba.conf");
        std::os::unix::fs::chown(&hba_path, Some(self.user.uid), Some(self.user.gid))
            .expect("chown pg_hba.conf");
        self.append_settings();
    }

    /// This cluster's own port and socket directory, small memory, quick
    /// checkpoints, and what a standby needs.
    fn append_settings(&self) {
        let settings = format!(
            "\n# kauth tests\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nshared_buffers = 16MB\n\
             max_connections = 100\nwal_level = replica\nmax_wal_senders = 5\n\
             hot_standby = on\nlogging_collector = off\n",
            self.port,
            self.socket_dir().display()
        );
        let settings = if self.durable {
            settings
        } else {
            settings + "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        };
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        fs::write(&conf, text).expect("write postgresql.conf");
    }

    fn write_password_file(&self) {
        let path = self.password_file();
        fs::write(&path, format!("{}\n", self.password)).expect("write password file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod password");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.run_as_pg(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", &PG_CTL_WAIT.as_secs().to_string()])
                .args(args),
        )
    }

    fn run_as_pg(&self, cmd: &mut Command) -> Output {
        cmd.uid(self.user.uid)
            .gid(self.user.gid)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL tool")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
    }
}

/// The `[store]` section for a kauthd on `url` with `password_file`.
pub fn store_config(url: &str, password_file: &Path) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\n",
        password_file.display()
    )
}

/// `/usr/lib/postgresql/<newest version>/bin`; fails with what to install.
fn server_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: \
             install Debian's postgresql package (tests/debian-packages lists it)"
        ),
    }
}

/// The `postgres` system user, or `nobody` (read from /etc/passwd:
/// getpwnam is not safe with tests running on several threads).
fn pg_user() -> PgUser {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == name {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return PgUser { uid, gid };
                }
            }
        }
    }
    panic!("neither a postgres nor a nobody user exists to run PostgreSQL as");
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
