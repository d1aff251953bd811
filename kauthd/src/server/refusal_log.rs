//! Logging refusals without letting a caller flood the log. Root and PAM
//! callers are logged as they come; an ordinary uid gets at most
//! [`LINES_PER_INTERVAL`] lines per [`INTERVAL`], then one summary line
//! when the interval ends ("uid 1000 (bob): 5123 more refusals in the last
//! 60 s not logged"). At most [`MAX_TRACKED_UIDS`] uids are tracked at
//! once; the others share one window.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::server::access::Caller;

/// Refusal lines logged per uid and interval before they are only counted.
pub const LINES_PER_INTERVAL: u32 = 10;
/// How long one uid's allowance lasts.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How many uids have a window of their own.
pub const MAX_TRACKED_UIDS: usize = 1024;

/// One uid's (or the shared overflow's) current interval.
#[derive(Debug)]
struct Window {
    who: String,
    started: Instant,
    logged: u32,
    dropped: u64,
}

impl Window {
    fn new(who: String, now: Instant) -> Window {
        Window {
            who,
            started: now,
            logged: 0,
            dropped: 0,
        }
    }

    fn ended(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= INTERVAL
    }

    /// The summary line of an interval that dropped lines.
    fn summary(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{}: {} more refusals in the last {} s not logged",
                self.who,
                self.dropped,
                INTERVAL.as_secs()
            )
        })
    }

    /// Counts one refusal; true if it may be logged.
    fn admit(&mut self) -> bool {
        if self.logged < LINES_PER_INTERVAL {
            self.logged += 1;
            true
        } else {
            self.dropped = self.dropped.saturating_add(1);
            false
        }
    }
}

/// The per-uid windows. Times are passed in, so tests need no clock.
#[derive(Debug)]
pub struct Limiter {
    windows: HashMap<u32, Window>,
    overflow: Option<Window>,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::new()
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            windows: HashMap::new(),
            overflow: None,
        }
    }

    /// Counts one refusal for `uid` (described as `who`); true if its line
    /// may be logged. Summaries of ended intervals go to `summaries`.
    pub fn admit(
        &mut self,
        uid: u32,
        who: impl FnOnce() -> String,
        now: Instant,
        summaries: &mut Vec<String>,
    ) -> bool {
        if let Some(window) = self.windows.get_mut(&uid) {
            if window.ended(now) {
                summaries.extend(window.summary());
                *window = Window::new(std::mem::take(&mut window.who), now);
            }
            return window.admit();
        }
        if self.windows.len() >= MAX_TRACKED_UIDS {
            self.expire(now, summaries);
        }
        if self.windows.len() < MAX_TRACKED_UIDS {
            return self
                .windows
                .entry(uid)
                .or_insert_with(|| Window::new(who(), now))
                .admit();
        }
        let overflow = self
            .overflow
            .get_or_insert_with(|| Window::new("other uids".to_owned(), now));
        if overflow.ended(now) {
            summaries.extend(overflow.summary());
            *overflow = Window::new("other uids".to_owned(), now);
        }
        overflow.admit()
    }

    /// Drops the windows whose interval has ended, giving their summaries.
    pub fn expire(&mut self, now: Instant, summaries: &mut Vec<String>) {
        self.windows.retain(|_, window| {
            if window.ended(now) {
                summaries.extend(window.summary());
                false
            } else {
                true
            }
        });
        if self.overflow.as_ref().is_some_and(|w| w.ended(now)) {
            summaries.extend(self.overflow.take().and_then(|w| w.summary()));
        }
    }

    /// How many uids have a window now.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

/// The daemon's limiter, and when it was last swept for ended intervals.
struct Shared {
    limiter: Limiter,
    last_sweep: Instant,
}

fn shared() -> std::sync::MutexGuard<'static, Shared> {
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    let lock = SHARED.get_or_init(|| {
        Mutex::new(Shared {
            limiter: Limiter::new(),
            last_sweep: Instant::now(),
        })
    });
    match lock.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Logs a refusal made to `caller` at warning level: always for root and
/// PAM callers, within the per-uid limit for anyone else.
pub fn warn(caller: &Caller, message: fmt::Arguments<'_>) {
    limited(log::Level::Warn, caller, message);
}

/// Logs something done to `caller`'s connection (closed at a deadline) at
/// info level, within the same per-uid limit as refusals.
pub fn info(caller: &Caller, message: fmt::Arguments<'_>) {
    limited(log::Level::Info, caller, message);
}

fn limited(level: log::Level, caller: &Caller, message: fmt::Arguments<'_>) {
    if caller.is_privileged() {
        log::log!(level, "{message}");
        return;
    }
    log_limited(level, caller.uid, || caller.describe(), message);
}

/// The window shared by attempts refused because their account or host is
/// locked (no uid is this large: it is `(uid_t) -1`).
const LOCKED_ATTEMPTS: u32 = u32::MAX;

/// Logs an attempt refused, unchecked, because its account or host is
/// locked: the lines of all of them share one window, so an attack on a
/// locked account is no flood of log lines (nor of writes: such an
/// attempt is not stored).
pub fn warn_locked(message: fmt::Arguments<'_>) {
    log_limited(
        log::Level::Warn,
        LOCKED_ATTEMPTS,
        || "attempts on locked accounts and hosts".to_owned(),
        message,
    );
}

/// The window shared by refused continuation tokens (`resume`).
const SPENT_CONTINUATIONS: u32 = u32::MAX - 1;

/// Logs a `resume` refused for an unknown, used, expired or foreign
/// continuation token: all of them share one window, whoever sends them.
pub fn warn_continuation(message: fmt::Arguments<'_>) {
    log_limited(
        log::Level::Warn,
        SPENT_CONTINUATIONS,
        || "refused continuation tokens".to_owned(),
        message,
    );
}

fn log_limited(
    level: log::Level,
    key: u32,
    who: impl FnOnce() -> String,
    message: fmt::Arguments<'_>,
) {
    let mut summaries = Vec::new();
    let admitted = shared()
        .limiter
        .admit(key, who, Instant::now(), &mut summaries);
    for summary in summaries {
        log::warn!("{summary}");
    }
    if admitted {
        log::log!(level, "{message}");
    }
}

/// Logs the summaries of intervals that have ended. The server calls it
/// between connections; it sweeps at most once a second.
pub fn flush() {
    let now = Instant::now();
    let mut summaries = Vec::new();
    {
        let mut shared = shared();
        if now.saturating_duration_since(shared.last_sweep) < Duration::from_secs(1) {
            return;
        }
        shared.last_sweep = now;
        shared.limiter.expire(now, &mut summaries);
    }
    for summary in summaries {
        log::warn!("{summary}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> String {
        "uid 1000 (bob)".to_owned()
    }

    #[test]
    fn a_uid_gets_its_allowance_then_one_summary() {
        let mut limiter = Limiter::new();
        let start = Instant::now();
        let mut summaries = Vec::new();
        let admitted = (0..5_133)
            .filter(|_| limiter.admit(1000, bob, start, &mut summaries))
            .count();
        assert_eq!(admitted, LINES_PER_INTERVAL as usize);
        assert!(summaries.is_empty());

        let later = start + INTERVAL;
        assert!(limiter.admit(1000, bob, later, &mut summaries));
        assert_eq!(
            summaries,
            ["uid 1000 (bob): 5123 more refusals in the last 60 s not logged"]
        );
    }

    #[test]
    fn uids_are_limited_separately() {
        let mut limiter = Limiter::new();
        let now = Instant::now();
        let mut summaries = Vec::new();
        for _ in 0..LINES_PER_INTERVAL {
            assert!(limiter.admit(1000, bob, now, &mut summaries));
        }
        assert!(!limiter.admit(1000, bob, now, &mut summaries));
        assert!(limiter.admit(1001, || "uid 1001".to_owned(), now, &mut summaries));
    }

    #[test]
    fn expire_reports_quiet_uids_and_frees_their_windows() {
        let mut limiter = Limiter::new();
        let now = Instant::now();
        let mut summaries = Vec::new();
        for _ in 0..LINES_PER_INTERVAL + 3 {
            limiter.admit(1000, bob, now, &mut summaries);
        }
        limiter.expire(now + INTERVAL / 2, &mut summaries);
        assert_eq!(limiter.tracked(), 1);
        limiter.expire(now + INTERVAL, &mut summaries);
        assert_eq!(limiter.tracked(), 0);
        assert_eq!(summaries.len(), 1);
        assert!(summaries[0].contains("3 more refusals"), "{summaries:?}");
    }

    #[test]
    fn memory_is_bounded_and_extra_uids_share_a_window() {
        let mut limiter = Limiter::new();
        let now = Instant::now();
        let mut summaries = Vec::new();
        let mut admitted = 0;
        for uid in 0..(MAX_TRACKED_UIDS as u32 + 5_000) {
            if limiter.admit(uid, || format!("uid {uid}"), now, &mut summaries) {
                admitted += 1;
            }
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_UIDS);
        assert_eq!(admitted, MAX_TRACKED_UIDS + LINES_PER_INTERVAL as usize);
        limiter.expire(now + INTERVAL, &mut summaries);
        assert!(
            summaries
                .contains(&"other uids: 4990 more refusals in the last 60 s not logged".to_owned()),
            "{summaries:?}"
        );
    }
}
