//! Periodic upkeep: close sessions whose process is gone, drop activity
//! older than `[activity] retention_days`, drop failure counts older than
//! the rate-limit window and locks that have ended, and truncate the WAL.
//! It runs at start, every `INTERVAL_SECONDS`, and soon after a write
//! found the state filesystem full (`request`).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock;
use crate::daemon::Daemon;
use crate::sessions;
use crate::twofactor::code_check;

/// Seconds between two runs while the daemon is up.
pub const INTERVAL_SECONDS: u64 = 3600;

/// Set when upkeep should run before the interval is over.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks for a run at the accept loop's next turn (within a second).
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// True, once, after `request`.
pub fn take_request() -> bool {
    REQUESTED.swap(false, Ordering::Relaxed)
}

pub fn run(daemon: &Daemon) {
    match sessions::reap(daemon, None) {
        Ok(0) => {}
        Ok(n) => log::info!("closed {n} sessions whose processes are gone"),
        Err(e) => log::error!("could not check sessions: {e}"),
    }
    let days = i64::from(daemon.config().activity.retention_days);
    let now = clock::now();
    let before = now - days * 86_400;
    let limits = code_check::limits(&daemon.config());
    let mut store = daemon.store();
    match store.prune_activity(before) {
        Ok(0) => {}
        Ok(n) => log::info!("dropped {n} activity events older than {days} days"),
        Err(e) => log::error!("could not prune activity: {e}"),
    }
    match store.prune_limits(limits, now) {
        Ok(0) => {}
        Ok(n) => log::info!("dropped {n} expired failure counts and locks"),
        Err(e) => log::error!("could not prune failure counts and locks: {e}"),
    }
    store.checkpoint();
}
