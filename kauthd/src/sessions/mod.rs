//! PAM sessions: recorded when opened, ended when closed or signed out.
//! Signing out a session of a `[sessions] kill_services` service (sshd)
//! ends its process — only after checking, by pid and start time, that it
//! is still the process that opened the session. Other sessions (a
//! panel's) are marked revoked and the panel asks whether its
//! `KAUTH_SESSION_ID` is still valid.

pub mod procinfo;
pub mod recent_codes;

use crate::error::Error;
use std::fmt::Write as _;

use kauth_proto::SessionInfo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::store::durability;
use crate::store::{NewEvent, NewSession, SessionPosition, SessionRecord, StoreError};

/// Where a recorded session is. The names are the stored and wire ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Open,
    /// Closed by PAM, or signed out by ending its process.
    Closed,
    /// Signed out while its process goes on (a panel's session).
    Revoked,
}

impl SessionState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Closed => "closed",
            SessionState::Revoked => "revoked",
        }
    }

    /// The state of a stored name; `None` for a name kauthd never writes.
    pub fn from_name(name: &str) -> Option<SessionState> {
        [
            SessionState::Open,
            SessionState::Closed,
            SessionState::Revoked,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// The length of a session id.
pub const ID_LEN: usize = 32;

/// A new session id: 128 random bits, hex.
fn new_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::failed(format!("no randomness: {e}")))?;
    let mut id = String::with_capacity(32);
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
}

/// What the module told us about the session; the process is the peer's.
#[derive(Debug)]
pub struct OpenArgs<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub tty: Option<&'a str>,
    pub pid: i32,
    /// What the session runs in (a browser's user agent), already cleaned.
    pub client: Option<&'a str>,
}

pub fn open(daemon: &Daemon, args: &OpenArgs<'_>) -> Result<String, Error> {
    let id = new_id()?;
    let pid_start = procinfo::stat(args.pid).map(|s| s.start_time);
    let record = NewSession {
        id: &id,
        user: args.user,
        service: args.service,
        rhost: args.rhost,
        tty: args.tty,
        pid: args.pid,
        pid_start,
        client: args.client,
    };
    daemon.store().add_session(&record, clock::now())?;
    activity::record(
        daemon,
        &NewEvent {
            user: Some(args.user),
            event: EventKind::SessionOpen,
            service: Some(args.service),
            rhost: args.rhost,
            detail: &format!("session {} (process {})", short(&id), args.pid),
        },
    );
    Ok(id)
}

/// The least time between two writes of a session's `last_active`, so
/// that a panel checking the session at every click does not cost a
/// commit per click.
pub const ACTIVITY_RESOLUTION_SECONDS: i64 = 10;

/// Notes that an open session is in use now (a panel checked it):
/// written only when the last note is at least
/// [`ACTIVITY_RESOLUTION_SECONDS`] away (either way: the clock may have
/// jumped back). A note for people: the check does not wait for it to be
/// synced, and one that cannot be written (a full disk) is only logged.
pub fn note_activity(daemon: &Daemon, record: &SessionRecord) {
    let now = clock::now();
    let fresh = record
        .info
        .last_active
        .is_some_and(|last| (now - last).abs() < ACTIVITY_RESOLUTION_SECONDS);
    if record.state != SessionState::Open || fresh {
        return;
    }
    let noted = durability::relaxed(|| daemon.store().touch_session(&record.info.id, now));
    if let Err(why) = noted {
        log::warn!(
            "could not note the last activity of session {}: {why}",
            short(&record.info.id)
        );
    }
}

/// The first characters of an id, enough to tell sessions apart in logs.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub fn close(daemon: &Daemon, record: &SessionRecord) -> Result<(), StoreError> {
    if daemon
        .store()
        .end_session(&record.info.id, SessionState::Closed, clock::now())?
    {
        activity::record(
            daemon,
            &NewEvent {
                user: Some(&record.info.user),
                event: EventKind::SessionClose,
                service: Some(&record.info.service),
                rhost: record.info.rhost.as_deref(),
                detail: &format!("session {}", short(&record.info.id)),
            },
        );
    }
    Ok(())
}

/// Whether the session's process is still the one that opened it.
fn same_process(record: &SessionRecord) -> bool {
    match (procinfo::stat(record.info.pid), record.pid_start) {
        (Some(now), Some(then)) => !now.zombie && now.start_time == then,
        _ => false,
    }
}

fn is_kill_service(daemon: &Daemon, service: &str) -> bool {
    daemon
        .config()
        .sessions
        .kill_services
        .iter()
        .any(|s| s == service)
}

/// Ends a session for real. A session of this server: for a kill
/// service, signals its process (and the process's children: sshd's
/// per-connection child holds the network connection); otherwise marks it
/// revoked. A session of another server sharing the database: asks that
/// server to end it (it does within [`REMOTE_SIGN_OUT_POLL`]). Returns
/// whether it was open.
pub fn sign_out(daemon: &Daemon, record: &SessionRecord, by: &str) -> Result<bool, StoreError> {
    let elsewhere = {
        let store = daemon.store();
        store.shared_database().is_some() && record.info.host != store.host_name()
    };
    if elsewhere {
        return request_sign_out(daemon, record, by);
    }
    sign_out_here(daemon, record, by)
}

/// Marks another server's session signed out in the database; that
/// server ends its process.
fn request_sign_out(daemon: &Daemon, record: &SessionRecord, by: &str) -> Result<bool, StoreError> {
    if !daemon
        .store()
        .request_sign_out(&record.info.id, clock::now())?
    {
        // Already asked for: still open until its server ends it.
        return Ok(record.signout_requested.is_some());
    }
    let how = format!(
        "{} asked to end it",
        crate::escape::escape(&record.info.host)
    );
    record_sign_out(daemon, record, by, &how);
    Ok(true)
}

/// How often a server looks for its sessions that another server signed
/// out (on a shared database).
pub const REMOTE_SIGN_OUT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Ends this server's sessions that another server signed out, each after
/// the usual check that its process is still the one that opened it.
/// Returns how many were ended.
pub fn end_requested_sign_outs(daemon: &Daemon) -> Result<usize, StoreError> {
    let requested = daemon.store().sign_outs_requested_here()?;
    let mut ended = 0;
    for record in requested {
        if sign_out_here(daemon, &record, "another server")? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Runs [`end_requested_sign_outs`] every [`REMOTE_SIGN_OUT_POLL`] on a
/// thread of its own until `stop` is set. A failure (the database is
/// down) is logged by the store; the next poll tries again.
pub fn watch_remote_sign_outs(
    daemon: std::sync::Arc<Daemon>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sign-outs".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match end_requested_sign_outs(&daemon) {
                    Ok(_) => {}
                    Err(e) if e.is_unavailable() => {}
                    Err(e) => log::error!("could not end sessions signed out elsewhere: {e}"),
                }
                std::thread::sleep(REMOTE_SIGN_OUT_POLL);
            }
        })?;
    Ok(())
}

/// Ends a session of this server (see [`sign_out`]).
fn sign_out_here(daemon: &Daemon, record: &SessionRecord, by: &str) -> Result<bool, StoreError> {
    let now = clock::now();
    let kill_service = is_kill_service(daemon, &record.info.service);
    let state = if kill_service {
        SessionState::Closed
    } else {
        SessionState::Revoked
    };
    // End the record before signalling: the signalled sshd closes its PAM
    // session at once, and that close must find the session already ended
    // rather than win the race and make this sign-out look like a no-op.
    let alive = kill_service && same_process(record);
    if !daemon.store().end_session(&record.info.id, state, now)? {
        return Ok(false);
    }
    let how = if !kill_service {
        "revoked"
    } else if alive {
        terminate(record.info.pid);
        "process ended"
    } else {
        "process already gone"
    };
    record_sign_out(daemon, record, by, how);
    Ok(true)
}

/// The activity row of a sign-out: who did it and `how` it ended.
fn record_sign_out(daemon: &Daemon, record: &SessionRecord, by: &str, how: &str) {
    activity::record(
        daemon,
        &NewEvent {
            user: Some(&record.info.user),
            event: EventKind::SignOut,
            service: Some(&record.info.service),
            rhost: record.info.rhost.as_deref(),
            detail: &format!(
                "session {} signed out by {by}: {how}",
                short(&record.info.id)
            ),
        },
    );
}

/// SIGTERM to the process's children, then to the process.
fn terminate(pid: i32) {
    for child in procinfo::children(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGTERM);
    }
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        log::warn!("could not signal session process {pid}: {e}");
    }
}

/// A page of open sessions (of one user or everyone), oldest first, after
/// `from`. Before the first page, sessions of kill services whose process
/// is gone are closed, so the list tells the truth.
pub fn list(
    daemon: &Daemon,
    user: Option<&str>,
    from: Option<&SessionPosition>,
    limit: u32,
) -> Result<Vec<SessionInfo>, StoreError> {
    if from.is_none() {
        reap(daemon, user)?;
    }
    Ok(daemon
        .store()
        .open_sessions_page(user, from, limit)?
        .into_iter()
        .map(|r| r.info)
        .collect())
}

/// Closes this server's sessions of kill services whose process is gone
/// (a crashed sshd, or sessions left open across a kauthd restart).
pub fn reap(daemon: &Daemon, user: Option<&str>) -> Result<usize, StoreError> {
    let open = daemon.store().open_sessions_here(user)?;
    let mut closed = 0;
    for record in open {
        let dead = is_kill_service(daemon, &record.info.service) && !same_process(&record);
        if dead
            && daemon
                .store()
                .end_session(&record.info.id, SessionState::Closed, clock::now())?
        {
            closed += 1;
            log::info!(
                "session {} of {} closed: its process {} is gone",
                short(&record.info.id),
                record.info.user,
                record.info.pid
            );
        }
    }
    Ok(closed)
}

/// Signs out every open session of `user` except `keep` (the session the
/// request came from, when known). Returns the ids ended.
pub fn sign_out_user(
    daemon: &Daemon,
    user: &str,
    keep: Option<&str>,
    by: &str,
) -> Result<Vec<String>, StoreError> {
    let open = daemon.store().open_sessions(Some(user))?;
    let mut ended = Vec::new();
    for record in open {
        if Some(record.info.id.as_str()) == keep {
            continue;
        }
        if sign_out(daemon, &record, by)? {
            ended.push(record.info.id);
        }
    }
    Ok(ended)
}

/// The open session of `user` that process `pid` runs inside, if any: one
/// whose process (same pid and start time) is `pid` or one of its
/// ancestors, e.g. `kauthctl` run from the shell of an SSH login.
/// `--sign-out-others` leaves that one alone.
pub fn session_of_process(daemon: &Daemon, pid: i32, user: &str) -> Option<String> {
    let open = daemon.store().open_sessions_here(Some(user)).ok()?;
    let mut pid = pid;
    for _ in 0..64 {
        let stat = procinfo::stat(pid)?;
        let mine = open
            .iter()
            .find(|s| s.info.pid == pid && s.pid_start == Some(stat.start_time));
        if let Some(session) = mine {
            return Some(session.info.id.clone());
        }
        if stat.ppid <= 1 {
            return None;
        }
        pid = stat.ppid;
    }
    None
}
