//! `kauthctl stats`: kauthd's counters (see `crate::stats`) with what is
//! in force now (locks, connections, the argon2 queue). Root only: it
//! says how many people log in.

use kauth_proto::{LocksInForce, Response, StatsReport};

use super::{root_only, Reply};
use crate::clock;
use crate::daemon::Daemon;
use crate::passwords::argon2_pool;
use crate::server::access::Caller;
use crate::stats;

pub fn report(daemon: &Daemon, caller: &Caller) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "read kauthd's statistics"));
    }
    let (accounts, hosts) = daemon.store().locks_in_force(clock::now())?;
    let (since_start, last_minute) = stats::periods();
    Ok(Response::Stats(StatsReport {
        uptime_seconds: daemon.started.elapsed().as_secs(),
        since_start,
        last_minute,
        locks: LocksInForce { accounts, hosts },
        connections: stats::connections(),
        argon2_queue: u64::try_from(argon2_pool::queue_length()).unwrap_or(u64::MAX),
    }))
}
