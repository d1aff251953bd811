//! Which processes passed a code check a moment ago, so that the PAM
//! `account` step of the same login knows the code was given. A process is
//! its pid and its start time: a new process that reuses the pid is not it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::sessions::procinfo::ProcessId;

/// How long a passed code check counts for the account step. sshd runs the
/// account step right after authentication succeeds, so ten seconds cover
/// it even on a loaded server; a longer memory only widens the window in
/// which a later login in the same process (or in its parent, which is
/// remembered too) passes the account step on an earlier code.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10);

type Key = (ProcessId, String);

#[derive(Debug, Default)]
pub struct RecentCodes {
    passed: HashMap<Key, Instant>,
    /// The same notes in the order they were made, so the stale ones are
    /// dropped from the front: forgetting costs nothing per login however
    /// many logins the last ten seconds had.
    order: VecDeque<(Instant, Key)>,
}

impl RecentCodes {
    /// Notes that each of `processes` passed a code check for `user` at `now`.
    pub fn remember(&mut self, processes: &[ProcessId], user: &str, now: Instant) {
        self.forget_stale(now);
        for process in processes {
            let key = (*process, user.to_owned());
            self.passed.insert(key.clone(), now);
            self.order.push_back((now, key));
        }
    }

    /// Whether `process` passed a code check for `user` less than
    /// [`REMEMBERED_FOR`] before `now`.
    pub fn given(&mut self, process: ProcessId, user: &str, now: Instant) -> bool {
        self.forget_stale(now);
        self.passed
            .get(&(process, user.to_owned()))
            .is_some_and(|at| fresh(*at, now))
    }

    fn forget_stale(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if fresh(*at, now) {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            // Noted again since: that later note stands.
            if self.passed.get(&key) == Some(&at) {
                self.passed.remove(&key);
            }
        }
    }
}

fn fresh(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < REMEMBERED_FOR
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
        assert!(recent.order.is_empty());
    }

    #[test]
    fn a_process_noted_again_is_remembered_from_its_last_note() {
        let mut recent = RecentCodes::default();
        let t = Instant::now();
        recent.remember(&[SSHD], "ann", t);
        let later = t + Duration::from_secs(5);
        recent.remember(&[SSHD], "ann", later);
        // The first note is stale, the second is not.
        assert!(recent.given(SSHD, "ann", t + REMEMBERED_FOR));
        assert!(!recent.given(SSHD, "ann", later + REMEMBERED_FOR));
    }
}
