//! The replay guard (the step of a user's last accepted code) left in the
//! future by a server clock that ran ahead: how to tell, how far ahead it
//! is, and the value it is safely put back to.
//!
//! A code is accepted only for a step after the guard and inside the
//! user's window (the current step, moved by the learned offset, ± the
//! skew). A guard beyond the window's end therefore refuses every code
//! until the clock catches up with it: a day, after a server that booted a
//! day ahead accepted a code.

use crate::store::{GuardRow, TotpCredential};
use crate::twofactor::totp::TotpParams;

/// What the rule needs to know of one user's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// The step of the last accepted code.
    pub last_counter: u64,
    pub params: TotpParams,
    pub learned_offset: i64,
    /// The user's window: their own, else `[totp] skew_steps`.
    pub skew_steps: u32,
}

impl Guard {
    /// The guard of a credential, if a code was ever accepted.
    pub fn of(cred: &TotpCredential, default_skew: u32) -> Option<Guard> {
        Some(Guard {
            last_counter: cred.last_counter?,
            params: cred.params,
            learned_offset: cred.learned_offset,
            skew_steps: cred.skew_steps.unwrap_or(default_skew),
        })
    }

    pub fn of_row(row: &GuardRow, default_skew: u32) -> Guard {
        Guard {
            last_counter: row.last_counter,
            params: row.params,
            learned_offset: row.learned_offset,
            skew_steps: row.skew_steps.unwrap_or(default_skew),
        }
    }

    /// The newest step the user's window reaches at `unix_time`. A code
    /// accepted at any time up to `unix_time` was for this step or an
    /// earlier one, so a guard put back here still refuses all of them.
    pub fn window_end(&self, unix_time: u64) -> u64 {
        let now = i128::from(self.params.counter_at(unix_time));
        let end = now + i128::from(self.learned_offset) + i128::from(self.skew_steps);
        u64::try_from(end.max(0)).unwrap_or(u64::MAX)
    }

    /// How many seconds the guard is beyond the end of the window at
    /// `unix_time` (then no code can be accepted), or `None` when it is not.
    pub fn ahead_seconds(&self, unix_time: u64) -> Option<u64> {
        let steps = self.last_counter.checked_sub(self.window_end(unix_time))?;
        (steps > 0).then(|| steps.saturating_mul(self.params.period))
    }
}

/// A duration for people: "23 h 59 min", "2 d 3 h", "5 min", "40 s".
pub fn describe(seconds: u64) -> String {
    let days = seconds / 86_400;
    let hours = seconds % 86_400 / 3600;
    let minutes = seconds % 3600 / 60;
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(last_counter: u64, learned_offset: i64, skew_steps: u32) -> Guard {
        Guard {
            last_counter,
            params: TotpParams::default(),
            learned_offset,
            skew_steps,
        }
    }

    const NOW: u64 = 1_800_000_000; // step 60_000_000 at 30 s

    #[test]
    fn a_guard_inside_the_window_is_not_ahead() {
        assert_eq!(guard(60_000_000, 0, 1).ahead_seconds(NOW), None);
        assert_eq!(guard(60_000_001, 0, 1).ahead_seconds(NOW), None);
        // A phone that runs 3 steps fast, learned: its codes are that far on.
        assert_eq!(guard(60_000_004, 3, 1).ahead_seconds(NOW), None);
    }

    #[test]
    fn a_guard_beyond_the_window_is_ahead_by_the_steps_past_its_end() {
        assert_eq!(guard(60_000_002, 0, 1).ahead_seconds(NOW), Some(30));
        // A code accepted by a server a day ahead (2880 steps).
        assert_eq!(guard(60_002_880, 0, 1).ahead_seconds(NOW), Some(2879 * 30));
        assert_eq!(guard(60_000_001, 0, 0).ahead_seconds(NOW), Some(30));
        assert_eq!(guard(59_999_998, -5, 1).ahead_seconds(NOW), Some(60));
    }

    #[test]
    fn the_window_end_covers_every_code_accepted_until_now() {
        assert_eq!(guard(0, 0, 1).window_end(NOW), 60_000_001);
        assert_eq!(guard(0, 2, 1).window_end(NOW), 60_000_003);
        assert_eq!(guard(0, -2, 0).window_end(NOW), 59_999_998);
        // Never below step 0, never overflowing.
        assert_eq!(guard(0, i64::MIN, 10).window_end(NOW), 0);
        let far = u64::MAX / 30 + i64::MAX.unsigned_abs() + 10;
        assert_eq!(guard(u64::MAX, i64::MAX, 10).window_end(u64::MAX), far);
        assert_eq!(
            guard(u64::MAX, i64::MAX, 10).ahead_seconds(u64::MAX),
            Some(u64::MAX)
        );
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(describe(40), "40 s");
        assert_eq!(describe(300), "5 min");
        assert_eq!(describe(86_370), "23 h 59 min");
        assert_eq!(describe(3 * 86_400 + 7200 + 59), "3 d 2 h");
    }
}
