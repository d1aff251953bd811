//! `kauthctl doctor`'s figures from the daemon: where it listens and keeps
//! its state, and how users' recent codes matched the server clock. Root
//! only: it says how many people logged in recently.

use kauth_proto::{DiagnosticsReport, Response};

use super::{internal, root_only};
use crate::access::Caller;
use crate::clock;
use crate::daemon::Daemon;

/// How far back a user's last accepted code counts (one day).
const RECENT_SECONDS: i64 = 86_400;

pub fn report(daemon: &Daemon, caller: &Caller) -> Response {
    if !caller.is_root() {
        return root_only(caller, "read kauthd's diagnostics");
    }
    let since = clock::now().saturating_sub(RECENT_SECONDS);
    let offsets = match daemon.store().recent_offsets(since) {
        Ok(offsets) => offsets,
        Err(e) => return internal(&e),
    };
    let skew = summarize(&offsets);
    let config = daemon.config();
    Response::Diagnostics(DiagnosticsReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        socket: config.daemon.socket.display().to_string(),
        state_dir: config.daemon.state_dir.display().to_string(),
        config_path: daemon.config_path.display().to_string(),
        recent_code_users: skew.users,
        off_centre_users: skew.off_centre,
        median_offset_steps: skew.median_offset_steps,
        period: config.totp.period,
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Skew {
    users: u64,
    /// Users off-centre in the more common direction (ahead or behind):
    /// what [`crate::drift::server_clock_suspect`] weighs.
    off_centre: u64,
    median_offset_steps: i64,
}

fn summarize(offsets: &[i64]) -> Skew {
    let ahead = offsets.iter().filter(|o| **o > 0).count();
    let behind = offsets.iter().filter(|o| **o < 0).count();
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    Skew {
        users: u64::try_from(offsets.len()).unwrap_or(u64::MAX),
        off_centre: u64::try_from(ahead.max(behind)).unwrap_or(u64::MAX),
        median_offset_steps: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_recent_codes_is_all_zero() {
        assert_eq!(
            summarize(&[]),
            Skew {
                users: 0,
                off_centre: 0,
                median_offset_steps: 0
            }
        );
    }

    #[test]
    fn counts_the_larger_side_and_takes_the_median() {
        assert_eq!(
            summarize(&[2, 0, 1, -1, 2]),
            Skew {
                users: 5,
                off_centre: 3,
                median_offset_steps: 1
            }
        );
        assert_eq!(summarize(&[-2, -2, 0]).off_centre, 2);
        assert_eq!(summarize(&[-2, -2, 0]).median_offset_steps, -2);
    }
}
