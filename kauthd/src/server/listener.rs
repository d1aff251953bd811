//! The listening socket and the daemon's main loop: connections (served
//! by `event_loop.rs`), upkeep, config reload on SIGHUP, clean stop on
//! SIGTERM.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::error::{self, Error};
use crate::housekeeping;
use crate::secrets::rekey;
use crate::server::event_loop::EventLoop;
use crate::server::refusal_log;
use crate::server::systemd;
use crate::store::WRITE_BEHIND_INTERVAL;

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
    // The socket first: a second kauthd on a live socket says so. Under
    // socket activation systemd made it and keeps it: kauthd never
    // removes that one (`bound_inode` stays `None`).
    let socket_path = config.daemon.socket.clone();
    let (listener, bound_inode) = match systemd::passed_listener(&socket_path)? {
        Some(listener) => (listener, None),
        None => {
            let listener = bind(&socket_path)?;
            (listener, fs::metadata(&socket_path).map(|m| m.ino()).ok())
        }
    };
    let store = match rekey::open_configured_store(&config) {
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

    let records = match store.shared_database() {
        Some(database) => format!(
            "records in the PostgreSQL database at {database} as host {}",
            store.host_name()
        ),
        None => format!("state in {}", config.daemon.state_dir.display()),
    };
    let daemon = Arc::new(Daemon::new(config, store, options.config_path.clone()));
    log::info!(
        "kauthd {} listening on {} ({records})",
        env!("CARGO_PKG_VERSION"),
        socket_path.display(),
    );

    housekeeping::run(&daemon);
    if daemon.config().store.backend == crate::config::StoreBackend::Postgres {
        // Sessions of this server that another one signed out.
        crate::sessions::watch_remote_sign_outs(Arc::clone(&daemon), Arc::clone(&stop))
            .map_err(|e| Error::failed(format!("cannot start the sign-out watcher: {e}")))?;
    }
    let mut last_upkeep = Instant::now();
    let upkeep_running = Arc::new(AtomicBool::new(false));

    raise_file_limit(&daemon.config());
    start_write_behind(&daemon);
    let mut connections = EventLoop::new(listener, Arc::clone(&daemon))?;
    // The socket listens and the store is open: logins may come.
    systemd::notify("READY=1");
    let mut watchdog = systemd::Watchdog::from_env();
    while !stop.load(Ordering::Relaxed) && !daemon.durability().failed() {
        if let Some(watchdog) = watchdog.as_mut() {
            watchdog.tick();
        }
        if housekeeping::take_request()
            || last_upkeep.elapsed().as_secs() >= housekeeping::INTERVAL_SECONDS
        {
            start_upkeep(&daemon, &upkeep_running);
            last_upkeep = Instant::now();
        }
        refusal_log::flush();
        if reload.swap(false, Ordering::Relaxed) {
            reload_config(&daemon, options);
        }
        connections.turn();
    }

    systemd::notify("STOPPING=1");
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

/// Removes the socket only if it is still the one we bound (never the
/// one systemd passed: `bound_inode` is then `None`).
fn remove_own_socket(path: &Path, bound_inode: Option<u64>) {
    if fs::metadata(path).map(|m| m.ino()).ok() == bound_inode {
        let _ = fs::remove_file(path);
    }
}

/// Writes the failed attempts held in memory every
/// `WRITE_BEHIND_INTERVAL` (see `store::write_behind`), on a thread of its
/// own, while the daemon lives; the checkpoint at stop writes the last.
fn start_write_behind(daemon: &Arc<Daemon>) {
    let daemon = Arc::downgrade(daemon);
    let spawned = std::thread::Builder::new()
        .name("write-behind".into())
        .spawn(move || {
            // Said once when writing starts failing, not at every try.
            let mut failing = false;
            loop {
                std::thread::sleep(WRITE_BEHIND_INTERVAL);
                let Some(daemon) = daemon.upgrade() else {
                    return;
                };
                let written = daemon.store().write_behind_now();
                match written {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        let what = "could not write the failed attempts held in memory";
                        error::log_store_error(what, &e);
                    }
                    Err(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        // Each lock and each other write still writes them first.
        log::error!("cannot start the thread that writes failed attempts: {e}");
    }
}

/// Runs upkeep on a thread of its own, so connections are served
/// meanwhile; a run still going is not started again.
fn start_upkeep(daemon: &Arc<Daemon>, running: &Arc<AtomicBool>) {
    if running.swap(true, Ordering::SeqCst) {
        return;
    }
    let daemon = Arc::clone(daemon);
    let flag = Arc::clone(running);
    let spawned = std::thread::Builder::new()
        .name("upkeep".into())
        .spawn(move || {
            housekeeping::run(&daemon);
            flag.store(false, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        running.store(false, Ordering::SeqCst);
        log::error!("cannot start the upkeep thread: {e}");
    }
}

/// File descriptors beyond the connections: the store, logs, the
/// listener, turned-away clients being answered.
const SPARE_FILES: u64 = 256;

/// Raises the soft limit on open files toward the hard one, so that
/// `[daemon] max_connections` connections fit; warns if they cannot.
fn raise_file_limit(config: &Config) {
    let wanted = config.daemon.max_connections as u64 + SPARE_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= wanted {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one valid rlimit struct; a soft limit at or
    // under the hard one needs no privilege.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    if !ok || raised.rlim_cur < wanted {
        log::warn!(
            "kauthd may open only {} files, fewer than [daemon] max_connections ({}) needs; raise LimitNOFILE or lower max_connections",
            if ok { raised.rlim_cur } else { limit.rlim_cur },
            config.daemon.max_connections
        );
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
            if new.store != old.store || new.daemon.host_name != old.daemon.host_name {
                log::warn!("[store] and daemon.host_name changes take effect only after a restart");
            }
            // So do the store and the name it records under.
            new.store = old.store.clone();
            new.daemon.host_name = old.daemon.host_name.clone();
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
