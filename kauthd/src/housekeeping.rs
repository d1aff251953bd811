//! Periodic upkeep: close sessions whose process is gone, drop activity
//! older than `[activity] retention_days`.

use crate::clock;
use crate::daemon::Daemon;
use crate::sessions;

/// Seconds between two runs while the daemon is up.
pub const INTERVAL_SECONDS: u64 = 3600;

pub fn run(daemon: &Daemon) {
    match sessions::reap(daemon, None) {
        Ok(0) => {}
        Ok(n) => log::info!("closed {n} sessions whose processes are gone"),
        Err(e) => log::error!("could not check sessions: {e}"),
    }
    let days = i64::from(daemon.config().activity.retention_days);
    let before = clock::now() - days * 86_400;
    match daemon.store().prune_activity(before) {
        Ok(0) => {}
        Ok(n) => log::info!("dropped {n} activity events older than {days} days"),
        Err(e) => log::error!("could not prune activity: {e}"),
    }
}
