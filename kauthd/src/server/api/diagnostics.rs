//! `kauthctl doctor`'s figures from the daemon: where it listens and keeps
//! its state, how users' recent codes matched the server clock, and whose
//! replay guard a clock that ran ahead left in the future. Root only: it
//! says how many people logged in recently.

use kauth_proto::{DiagnosticsReport, Response};

use super::{root_only, Reply};
use crate::clock;
use crate::daemon::Daemon;
use crate::server::access::Caller;
use crate::store::GuardRow;
use crate::twofactor::drift;
use crate::twofactor::replay_guard::Guard;

/// How many users whose guard is ahead the answer names (all are counted).
const GUARD_AHEAD_NAMES: usize = 10;

pub fn report(daemon: &Daemon, caller: &Caller) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "read kauthd's diagnostics"));
    }
    let now = clock::now();
    let since = now.saturating_sub(drift::RECENT_SECONDS);
    let (offsets, guards) = {
        let store = daemon.store();
        (store.recent_offsets(since)?, store.guards()?)
    };
    let skew = drift::summarize(&offsets);
    let verdict = drift::server_clock_verdict(&offsets);
    let config = daemon.config();
    let ahead = guards_ahead(
        &guards,
        config.totp.skew_steps,
        u64::try_from(now).unwrap_or(0),
    );
    Ok(Response::Diagnostics(DiagnosticsReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        socket: config.daemon.socket.display().to_string(),
        state_dir: config.daemon.state_dir.display().to_string(),
        config_path: daemon.config_path.display().to_string(),
        recent_code_users: u64::try_from(skew.users).unwrap_or(u64::MAX),
        off_centre_users: u64::try_from(skew.off_centre).unwrap_or(u64::MAX),
        median_offset_steps: skew.median_offset_steps,
        period: config.totp.period,
        guard_ahead_users: u64::try_from(ahead.len()).unwrap_or(u64::MAX),
        guard_ahead_max_seconds: ahead.first().map_or(0, |(_, seconds)| *seconds),
        guard_ahead_names: ahead
            .into_iter()
            .take(GUARD_AHEAD_NAMES)
            .map(|(name, _)| name)
            .collect(),
        server_clock_fast_seconds: verdict
            .map(|summary| summary.server_fast_by_seconds(config.totp.period)),
    }))
}

/// The users whose replay guard is beyond their window, with how far (in
/// seconds), furthest ahead first.
fn guards_ahead(rows: &[GuardRow], default_skew: u32, now: u64) -> Vec<(String, u64)> {
    let mut ahead: Vec<(String, u64)> = rows
        .iter()
        .filter_map(|row| {
            let seconds = Guard::of_row(row, default_skew).ahead_seconds(now)?;
            Some((row.name.clone(), seconds))
        })
        .collect();
    ahead.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ahead
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twofactor::totp::TotpParams;

    fn row(name: &str, last_counter: u64) -> GuardRow {
        GuardRow {
            name: name.to_owned(),
            last_counter,
            params: TotpParams::default(),
            learned_offset: 0,
            skew_steps: None,
        }
    }

    #[test]
    fn guards_ahead_are_listed_furthest_first() {
        let now = 1_800_000_000; // step 60_000_000
        let rows = [
            row("ann", 60_000_001),
            row("bob", 60_000_010),
            row("cid", 60_002_880),
            row("dee", 59_000_000),
        ];
        assert_eq!(
            guards_ahead(&rows, 1, now),
            vec![("cid".to_owned(), 2879 * 30), ("bob".to_owned(), 9 * 30)]
        );
        assert_eq!(guards_ahead(&rows, 10, now).len(), 1);
    }
}
