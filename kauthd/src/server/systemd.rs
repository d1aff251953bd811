//! What kauthd says to and takes from systemd, in the few lines the
//! protocols need (see sd_notify(3) and sd_listen_fds(3)); without
//! systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) nothing here does
//! anything.
//!
//! - Readiness: `READY=1` once the socket listens and the store is open,
//!   `STOPPING=1` on a clean stop, `WATCHDOG=1` at half the unit's
//!   `WatchdogSec=` while the main loop turns.
//! - Socket activation: `kauthd.socket` creates the socket and passes it
//!   as fd 3; kauthd takes it only if it is a listening Unix stream socket
//!   bound to `[daemon] socket`, and refuses to start otherwise.

use std::ffi::OsString;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrLike, SockaddrStorage};

use crate::error::Error;

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_PASSED_FD: RawFd = 3;

/// Sends `state` (`READY=1`, ...) to the service manager, if kauthd runs
/// under one. A failure is logged, never fatal: kauthd serves anyway.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        log::warn!("cannot tell the service manager {state}: {e}");
    }
}

fn send(target: &OsString, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        // An abstract socket: `@` stands for the leading NUL.
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(Path::new(target))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// The watchdog's pings, when the unit asks for them.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    last: Instant,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, naming us).
    pub fn from_env() -> Option<Watchdog> {
        if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
            if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if usec == 0 {
            return None;
        }
        Some(Watchdog {
            every: Duration::from_micros(usec / 2),
            last: Instant::now(),
        })
    }

    /// Pings when half the watchdog's time has gone by.
    pub fn tick(&mut self) {
        if self.last.elapsed() >= self.every {
            notify("WATCHDOG=1");
            self.last = Instant::now();
        }
    }
}

/// The listening socket systemd passed (`LISTEN_FDS`, `LISTEN_PID`), if
/// it passed one to this process; an error if what it passed is not a
/// listening Unix stream socket bound to `path`.
pub fn passed_listener(path: &Path) -> Result<Option<UnixListener>, Error> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok();
    if !for_us || count.is_none() {
        return Ok(None);
    }
    // Not for children (kauthd starts none, but a passed fd is ours alone).
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    match count.as_deref() {
        Some("1") => {}
        Some(n) => {
            return Err(Error::failed(format!(
                "systemd passed {n} file descriptors (LISTEN_FDS); kauthd takes exactly one, its listening socket: give kauthd.socket a single ListenStream= line"
            )))
        }
        None => return Ok(None),
    }
    check_passed(FIRST_PASSED_FD, path)?;
    // SAFETY: fd 3 was passed to this process by its service manager for
    // it alone (LISTEN_PID is ours), and was just checked to be a
    // listening Unix stream socket; nothing else in kauthd owns it.
    let listener = unsafe { UnixListener::from_raw_fd(FIRST_PASSED_FD) };
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| Error::failed(format!("cannot configure the passed socket: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::failed(format!("cannot configure the passed socket: {e}")))?;
    Ok(Some(listener))
}

/// Refuses a passed fd that is not a listening Unix stream socket bound
/// to `path`, saying what it is instead.
fn check_passed(fd: RawFd, path: &Path) -> Result<(), Error> {
    let refuse = |what: String| {
        Error::failed(format!(
            "the socket systemd passed (fd {fd}) {what}; kauthd needs a listening Unix stream socket at {} ([daemon] socket): make kauthd.socket's ListenStream= that path",
            path.display()
        ))
    };
    // SAFETY: fd 3 stays open for the whole call; the borrow does not
    // outlive it and closes nothing.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let kind = getsockopt(&borrowed, sockopt::SockType)
        .map_err(|e| refuse(format!("is not a socket ({e})")))?;
    if kind != SockType::Stream {
        return Err(refuse(format!("is a {kind:?} socket, not a stream")));
    }
    if !getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false) {
        return Err(refuse("is not listening".to_owned()));
    }
    let address: SockaddrStorage =
        getsockname(fd).map_err(|e| refuse(format!("has no address ({e})")))?;
    let Some(address) = address.as_unix_addr() else {
        return Err(refuse(format!(
            "is not a Unix socket (family {:?})",
            address.family()
        )));
    };
    match address.path() {
        Some(bound) if bound == path => Ok(()),
        Some(bound) => Err(refuse(format!("is bound to {}", bound.display()))),
        None => Err(refuse("has no path".to_owned())),
    }
}
