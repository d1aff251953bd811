//! Which processes passed a code check a moment ago, so that the PAM
//! `account` step of the same login knows the code was given. A process is
//! its pid and its start time: a new process that reuses the pid is not it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sessions::procinfo::ProcessId;

/// How long a passed code check counts for the account step. sshd runs the
/// account step right after authentication succeeds, so ten seconds cover
/// it even on a loaded server; a longer memory only widens the window in
/// which a later login in the same process (or in its parent, which is
/// remembered too) passes the account step on an earlier code.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct RecentCodes {
    passed: HashMap<(ProcessId, String), Instant>,
}

impl RecentCodes {
    /// Notes that each of `processes` passed a code check for `user` at `now`.
    pub fn remember(&mut self, processes: &[ProcessId], user: &str, now: Instant) {
        self.forget_stale(now);
        for process in processes {
            self.passed.insert((*process, user.to_owned()), now);
        }
    }

    /// Whether `process` passed a code check for `user` less than
    /// [`REMEMBERED_FOR`] before `now`.
    pub fn given(&mut self, process: ProcessId, user: &str, now: Instant) -> bool {
        self.forget_stale(now);
        self.passed.contains_key(&(process, user.to_owned()))
    }

    fn forget_stale(&mut self, now: Instant) {
        self.passed
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBERED_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSHD: ProcessId = ProcessId {
        pid: 4100,
        start_time: 777_000,
    };
    const MONITOR: ProcessId = ProcessId {
        pid: 4101,
        start_time: 777_010,
    };

    #[test]
    fn the_process_and_its_parent_are_remembered_for_that_user_only() {
        let mut recent = RecentCodes::default();
        let t = Instant::now();
        recent.remember(&[MONITOR, SSHD], "ann", t);
        assert!(recent.given(MONITOR, "ann", t));
        assert!(recent.given(SSHD, "ann", t));
        assert!(!recent.given(SSHD, "bob", t));
    }

    #[test]
    fn a_new_process_on_a_reused_pid_is_not_remembered() {
        let mut recent = RecentCodes::default();
        let t = Instant::now();
        recent.remember(&[MONITOR, SSHD], "root", t);
        let reused = ProcessId {
            pid: SSHD.pid,
            start_time: SSHD.start_time + 1,
        };
        assert!(!recent.given(reused, "root", t));
    }

    #[test]
    fn a_code_is_forgotten_after_the_expiry() {
        let mut recent = RecentCodes::default();
        let t = Instant::now();
        recent.remember(&[SSHD], "ann", t);
        let just_before = t + REMEMBERED_FOR - Duration::from_millis(1);
        assert!(recent.given(SSHD, "ann", just_before));
        assert!(!recent.given(SSHD, "ann", t + REMEMBERED_FOR));
        assert!(recent.passed.is_empty(), "stale entries are dropped");
    }
}
