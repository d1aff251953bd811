//! Learning how far a user's authenticator clock is off, and noticing
//! when it is the server's clock that is wrong.
//!
//! Works like google-authenticator-libpam's time-skew learning: when a
//! code fails the normal window, the caller searches a wide range with
//! [`crate::twofactor::totp::find_wide`] and records where it matched. Only three
//! consecutive, distinct codes that agree move the user's window, so a
//! single lucky guess or a replayed code cannot shift it.
//!
//! Offsets are in time steps: matched counter minus the server's counter.
//! Positive means the user's clock is ahead of the server's.

/// How many agreeing observations it takes to learn an offset.
pub const OBSERVATIONS_NEEDED: usize = 3;

/// The observations must come from within this many steps of each other
/// (5 minutes at 30 s): codes typed over a longer span are not one
/// attempt to log in.
pub const MAX_SPAN_STEPS: u64 = 10;

/// One failed code that matched somewhere in the wide search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The server's time-step counter when the code was typed.
    pub server_counter: u64,
    /// Matched counter minus `server_counter`.
    pub offset: i64,
}

impl Observation {
    /// The counter of the code the user actually typed.
    fn matched_counter(&self) -> i128 {
        i128::from(self.server_counter) + i128::from(self.offset)
    }
}

/// Returns the offset to learn when the last three observations (newest
/// last) agree, otherwise `None`. They agree when:
/// - their offsets are within 1 step of each other (the user's clock
///   moved little between attempts);
/// - the codes typed are strictly later each time, so they are three
///   different codes and not one code entered again;
/// - they were typed within [`MAX_SPAN_STEPS`] of each other, in order;
/// - every offset is at most `max_abs_offset` steps from zero.
///
/// The median offset is returned, which ignores a one-step wobble.
pub fn learn_offset(observations: &[Observation], max_abs_offset: i64) -> Option<i64> {
    let start = observations.len().checked_sub(OBSERVATIONS_NEEDED)?;
    let recent = observations.get(start..)?;

    if max_abs_offset < 0 {
        return None;
    }
    let limit = max_abs_offset.unsigned_abs();
    if recent.iter().any(|o| o.offset.unsigned_abs() > limit) {
        return None;
    }

    let min_offset = recent.iter().map(|o| o.offset).min()?;
    let max_offset = recent.iter().map(|o| o.offset).max()?;
    if i128::from(max_offset) - i128::from(min_offset) > 1 {
        return None;
    }

    for pair in recent.windows(2) {
        let (earlier, later) = (pair.first()?, pair.get(1)?);
        if later.matched_counter() <= earlier.matched_counter() {
            return None;
        }
        if later.server_counter < earlier.server_counter {
            return None;
        }
    }
    let first = recent.first()?.server_counter;
    let last = recent.last()?.server_counter;
    if last - first > MAX_SPAN_STEPS {
        return None;
    }

    let mut offsets: Vec<i64> = recent.iter().map(|o| o.offset).collect();
    offsets.sort_unstable();
    offsets.get(offsets.len() / 2).copied()
}

/// What the users' offsets say about the server's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewSummary {
    /// Users with a recent accepted code.
    pub users: usize,
    /// How many of them are off-centre in the majority direction.
    pub off_centre: usize,
    /// Median offset over all of them, in steps (positive: users' clocks
    /// are ahead, so the server's clock is slow).
    pub median_offset_steps: i64,
}

impl SkewSummary {
    /// How many seconds the server clock appears to be ahead of its users
    /// (negative: behind), for a log line like "server clock looks 60
    /// seconds fast".
    pub fn server_fast_by_seconds(&self, period: u64) -> i64 {
        let period = i64::try_from(period).unwrap_or(i64::MAX);
        self.median_offset_steps
            .saturating_neg()
            .saturating_mul(period)
    }
}

/// How many users' recent codes it takes before kauthd blames the server
/// clock.
pub const MIN_USERS: usize = 3;

/// How far back a user's last accepted code counts (one day).
pub const RECENT_SECONDS: i64 = 86_400;

/// The users' recent offsets (one per user) summed up, whatever they say.
pub fn summarize(recent_offsets_per_user: &[i64]) -> SkewSummary {
    let ahead = recent_offsets_per_user.iter().filter(|o| **o > 0).count();
    let behind = recent_offsets_per_user.iter().filter(|o| **o < 0).count();
    let mut sorted = recent_offsets_per_user.to_vec();
    sorted.sort_unstable();
    SkewSummary {
        users: recent_offsets_per_user.len(),
        off_centre: ahead.max(behind),
        median_offset_steps: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
    }
}

/// When most users' codes match off-centre in the same direction, the
/// likely cause is the server's clock, not all of their phones. Returns a
/// summary when at least `min_users` users have a recent offset and more
/// than half of them are off-centre the same way.
pub fn server_clock_suspect(
    recent_offsets_per_user: &[i64],
    min_users: usize,
) -> Option<SkewSummary> {
    let summary = summarize(recent_offsets_per_user);
    // With a strict majority on one side, the median is on that side too,
    // so it always points the same way.
    (summary.users > 0 && summary.users >= min_users && summary.off_centre * 2 > summary.users)
        .then_some(summary)
}

/// kauthd's verdict on its own clock, from the users' offsets of the last
/// [`RECENT_SECONDS`]: `Some` when the clock looks wrong. The log warning
/// and `kauthctl doctor` (through the diagnostics answer) both use it.
pub fn server_clock_verdict(recent_offsets_per_user: &[i64]) -> Option<SkewSummary> {
    server_clock_suspect(recent_offsets_per_user, MIN_USERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(server_counter: u64, offset: i64) -> Observation {
        Observation {
            server_counter,
            offset,
        }
    }

    #[test]
    fn three_consistent_codes_teach_the_median_offset() {
        let seen = [obs(1000, 4), obs(1002, 5), obs(1004, 4)];
        assert_eq!(learn_offset(&seen, 25), Some(4));
        let seen = [obs(1000, -7), obs(1001, -7), obs(1001, -6)];
        assert_eq!(learn_offset(&seen, 25), Some(-7));
    }

    #[test]
    fn only_the_last_three_observations_count() {
        let seen = [obs(900, -20), obs(1000, 4), obs(1002, 5), obs(1004, 4)];
        assert_eq!(learn_offset(&seen, 25), Some(4));
        let seen = [obs(1000, 4), obs(1002, 5), obs(1004, 4), obs(1004, -20)];
        assert_eq!(learn_offset(&seen, 25), None);
    }

    #[test]
    fn fewer_than_three_observations_teach_nothing() {
        assert_eq!(learn_offset(&[], 25), None);
        assert_eq!(learn_offset(&[obs(1000, 4), obs(1001, 4)], 25), None);
    }

    #[test]
    fn replayed_code_does_not_count() {
        // The same code (matched counter 1004) typed three times.
        let seen = [obs(1000, 4), obs(1000, 4), obs(1001, 3)];
        assert_eq!(learn_offset(&seen, 25), None);
        // Codes going backwards are not a fresh sequence either.
        let seen = [obs(1000, 5), obs(1001, 3), obs(1002, 3)];
        assert_eq!(learn_offset(&seen, 25), None);
    }

    #[test]
    fn inconsistent_offsets_do_not_count() {
        let seen = [obs(1000, 4), obs(1001, 6), obs(1002, 5)];
        assert_eq!(learn_offset(&seen, 25), None);
        let seen = [obs(1000, 10), obs(1001, -10), obs(1002, 10)];
        assert_eq!(learn_offset(&seen, 25), None);
    }

    #[test]
    fn observations_spread_over_too_long_do_not_count() {
        let seen = [obs(1000, 4), obs(1005, 4), obs(1011, 4)];
        assert_eq!(learn_offset(&seen, 25), None);
        let seen = [obs(1000, 4), obs(1005, 4), obs(1010, 4)];
        assert_eq!(learn_offset(&seen, 25), Some(4));
        // Out of order in server time: not one login attempt.
        let seen = [obs(1005, 4), obs(1003, 7), obs(1006, 4)];
        assert_eq!(learn_offset(&seen, 25), None);
    }

    #[test]
    fn too_far_offset_is_refused() {
        let seen = [obs(1000, 30), obs(1001, 30), obs(1002, 30)];
        assert_eq!(learn_offset(&seen, 25), None);
        let seen = [obs(1000, -25), obs(1001, -25), obs(1002, -26)];
        assert_eq!(learn_offset(&seen, 25), None);
        let seen = [obs(1000, -25), obs(1001, -25), obs(1002, -24)];
        assert_eq!(learn_offset(&seen, 25), Some(-25));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let seen = [
            obs(u64::MAX - 2, i64::MAX),
            obs(u64::MAX - 1, i64::MAX),
            obs(u64::MAX, i64::MAX),
        ];
        assert_eq!(learn_offset(&seen, i64::MAX), Some(i64::MAX));
        let seen = [obs(0, i64::MIN), obs(1, i64::MIN), obs(2, i64::MIN)];
        assert_eq!(learn_offset(&seen, i64::MAX), None);
        assert_eq!(learn_offset(&seen, i64::MIN), None);
    }

    #[test]
    fn majority_off_centre_one_way_flags_the_server_clock() {
        // Users ahead of the server: the server is slow.
        let summary = server_clock_suspect(&[2, 2, 1, 0, 3], 3);
        assert_eq!(
            summary,
            Some(SkewSummary {
                users: 5,
                off_centre: 4,
                median_offset_steps: 2
            })
        );
        assert_eq!(summary.map(|s| s.server_fast_by_seconds(30)), Some(-60));

        let summary = server_clock_suspect(&[-1, -2, -1, 1], 4);
        assert_eq!(summary.map(|s| s.off_centre), Some(3));
        assert_eq!(summary.map(|s| s.server_fast_by_seconds(30)), Some(30));
    }

    #[test]
    fn half_or_split_offsets_do_not_flag_the_server_clock() {
        assert_eq!(server_clock_suspect(&[1, 1, 0, 0], 2), None);
        assert_eq!(server_clock_suspect(&[2, 2, -2, -2, 0], 2), None);
        assert_eq!(server_clock_suspect(&[0, 0, 0], 2), None);
    }

    #[test]
    fn too_few_users_do_not_flag_the_server_clock() {
        assert_eq!(server_clock_suspect(&[3, 3], 3), None);
        assert_eq!(server_clock_suspect(&[], 0), None);
    }

    #[test]
    fn no_recent_codes_is_all_zero() {
        let summary = summarize(&[]);
        assert_eq!(
            (
                summary.users,
                summary.off_centre,
                summary.median_offset_steps
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn counts_the_larger_side_and_takes_the_median() {
        let summary = summarize(&[2, 0, 1, -1, 2]);
        assert_eq!(
            (
                summary.users,
                summary.off_centre,
                summary.median_offset_steps
            ),
            (5, 3, 1)
        );
        assert_eq!(summarize(&[-2, -2, 0]).off_centre, 2);
        assert_eq!(summarize(&[-2, -2, 0]).median_offset_steps, -2);
    }

    #[test]
    fn the_verdict_needs_three_users() {
        assert_eq!(server_clock_verdict(&[2, 2]), None);
        assert!(server_clock_verdict(&[2, 2, 1]).is_some());
    }
}
