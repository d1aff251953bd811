//! The listening socket and the accept loop: bounded connections, config
//! reload on SIGHUP, clean stop on SIGTERM.

use crate::error::Error;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kauth_proto::peer::peer_cred;
use kauth_proto::{read_frame, write_frame, ErrorCode, Request, Response};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::housekeeping;
use crate::secrets::rekey;
use crate::server::access;
use crate::server::connection;
use crate::server::refusal_log;

/// Everything needed to start: where the config came from and whether it
/// was named on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub config_explicit: bool,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(options: &Options) -> Result<(), Error> {
    let config = Config::load(&options.config_path, options.config_explicit)?;
    // The socket first: a second kauthd on a live socket says so.
    let socket_path = config.daemon.socket.clone();
    let listener = bind(&socket_path)?;
    let bound_inode = fs::metadata(&socket_path).map(|m| m.ino()).ok();
    let store = match rekey::open_store(&config.daemon.state_dir, &config.daemon.secret_key_file) {
        Ok(store) => store,
        Err(e) => {
            remove_own_socket(&socket_path, bound_inode);
            return Err(e);
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::failed(format!("cannot handle signal {signal}: {e}")))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| Error::failed(format!("cannot handle SIGHUP: {e}")))?;

    let daemon = Arc::new(Daemon::new(config, store, options.config_path.clone()));
    log::info!(
        "kauthd {} listening on {} (state in {})",
        env!("CARGO_PKG_VERSION"),
        socket_path.display(),
        daemon.config().daemon.state_dir.display()
    );

    housekeeping::run(&daemon);
    let mut last_upkeep = Instant::now();

    let active = Arc::new(AtomicUsize::new(0));
    let turning_away = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) && !daemon.durability().failed() {
        if housekeeping::take_request()
            || last_upkeep.elapsed().as_secs() >= housekeeping::INTERVAL_SECONDS
        {
            housekeeping::run(&daemon);
            last_upkeep = Instant::now();
        }
        refusal_log::flush();
        if reload.swap(false, Ordering::Relaxed) {
            reload_config(&daemon, options);
        }
        if !wait_readable(&listener) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(&daemon, &active, &turning_away, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::error!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    if let Some(why) = daemon.durability().failure() {
        // Nothing more is written: the WAL is what SQLite recovers from.
        remove_own_socket(&socket_path, bound_inode);
        return Err(Error::failed(why));
    }
    log::info!("stopping on signal");
    remove_own_socket(&socket_path, bound_inode);
    daemon.store().checkpoint();
    Ok(())
}

/// Removes the socket only if it is still the one we bound.
fn remove_own_socket(path: &Path, bound_inode: Option<u64>) {
    if fs::metadata(path).map(|m| m.ino()).ok() == bound_inode {
        let _ = fs::remove_file(path);
    }
}

/// Waits up to a quarter second for a connection, so signals are noticed.
fn wait_readable(listener: &UnixListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(250u16)), Ok(n) if n > 0)
}

/// Starts a thread for the connection, or turns it away when full.
fn admit(
    daemon: &Arc<Daemon>,
    active: &Arc<AtomicUsize>,
    turning_away: &Arc<AtomicUsize>,
    stream: UnixStream,
) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let limit = daemon.config().daemon.max_connections;
    if active.fetch_add(1, Ordering::SeqCst) >= limit {
        active.fetch_sub(1, Ordering::SeqCst);
        log_turned_away(daemon, &stream, limit);
        turn_away(stream, limit, turning_away);
        return;
    }
    let daemon = Arc::clone(daemon);
    let guard = ActiveGuard(Arc::clone(active));
    let spawned = std::thread::Builder::new()
        .name("connection".into())
        .spawn(move || {
            let _guard = guard;
            connection::serve(daemon, stream);
        });
    if let Err(e) = spawned {
        log::error!("cannot start a connection thread: {e}");
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many turned-away connections are answered at once. Beyond this
/// they are closed without an answer, which clients treat as a failure
/// too; the bound keeps a flood from costing more than a few threads.
const MAX_TURNING_AWAY: usize = 4;

/// How long a turned-away client has, in all, to send its hello; and how
/// long writing the answer may take.
const TURN_AWAY_TIMEOUT: Duration = Duration::from_millis(500);

/// The most read from a turned-away client (a hello is a few dozen bytes).
const MAX_HELLO_BYTES: u64 = 1024;

/// Answers `busy` on a short-lived thread, so the accept loop never waits
/// for a turned-away client.
fn turn_away(stream: UnixStream, limit: usize, turning_away: &Arc<AtomicUsize>) {
    if turning_away.fetch_add(1, Ordering::SeqCst) >= MAX_TURNING_AWAY {
        turning_away.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let guard = ActiveGuard(Arc::clone(turning_away));
    let spawned = std::thread::Builder::new()
        .name("turn-away".into())
        .spawn(move || {
            let _guard = guard;
            answer_busy(stream, limit);
        });
    if let Err(e) = spawned {
        log::error!("cannot start a thread to turn a connection away: {e}");
    }
}

/// Logs a turned-away connection with the uid it came from; an ordinary
/// uid's lines are rate-limited, so a flood of connections is no flood of
/// log lines.
fn log_turned_away(daemon: &Daemon, stream: &UnixStream, limit: usize) {
    let Ok(cred) = peer_cred(stream) else {
        return;
    };
    let caller = access::classify(cred, &daemon.config());
    refusal_log::warn(
        &caller,
        format_args!(
            "turned a connection from {} away: all {limit} connection slots are in use",
            caller.describe()
        ),
    );
}

/// Reads the client's hello, then answers `busy`. Answering first and
/// closing would make the client's hello fail with a broken pipe or a
/// reset instead of letting it read why it was turned away.
fn answer_busy(mut stream: UnixStream, limit: usize) {
    let mut hello = DeadlineReader {
        stream: &stream,
        deadline: Instant::now() + TURN_AWAY_TIMEOUT,
    }
    .take(MAX_HELLO_BYTES);
    // Whatever came (a hello, garbage, nothing in time), the answer is the same.
    let _ = read_frame::<_, Request>(&mut hello);
    let _ = stream.set_write_timeout(Some(TURN_AWAY_TIMEOUT));
    let _ = write_frame(
        &mut stream,
        &Response::Error {
            code: ErrorCode::Busy,
            message: format!("kauthd is serving its maximum of {limit} connections; try again"),
        },
    );
}

/// Reads from a stream until a deadline for the whole read, not per call.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut stream = self.stream;
        stream.set_read_timeout(Some(left))?;
        stream.read(buf)
    }
}

fn reload_config(daemon: &Daemon, options: &Options) {
    match Config::load(&options.config_path, options.config_explicit) {
        Ok(mut new) => {
            let old = daemon.config();
            if new.daemon.socket != old.daemon.socket
                || new.daemon.state_dir != old.daemon.state_dir
                || new.daemon.secret_key_file != old.daemon.secret_key_file
            {
                log::warn!(
                    "daemon.socket, daemon.state_dir and daemon.secret_key_file changes take effect only after a restart"
                );
            }
            // The key file in use stays the one the store was opened with.
            new.daemon.secret_key_file = old.daemon.secret_key_file.clone();
            daemon.replace_config(new);
            log::info!(
                "configuration reloaded from {}",
                options.config_path.display()
            );
        }
        Err(e) => log::error!("configuration not reloaded, keeping the old one: {e}"),
    }
}

/// Binds the socket: removes a stale one, refuses to start if another
/// kauthd answers on it. The socket is world-connectable: who may do what
/// is decided per connection from the peer's credentials.
fn bind(path: &Path) -> Result<UnixListener, Error> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::failed(format!("cannot create {}: {e}", parent.display())))?;
            let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
        }
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(Error::failed(format!(
                    "another kauthd is already listening on {}; stop it first",
                    path.display()
                )));
            }
            fs::remove_file(path).map_err(|e| {
                Error::failed(format!(
                    "cannot remove the stale socket {}: {e}",
                    path.display()
                ))
            })?;
            log::info!("removed a stale socket at {}", path.display());
        }
        Ok(_) => {
            return Err(Error::failed(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot inspect {}: {e}",
                path.display()
            )))
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::failed(format!("cannot listen on {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .map_err(|e| Error::failed(format!("cannot set permissions on {}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::failed(format!("cannot configure the socket: {e}")))?;
    Ok(listener)
}
