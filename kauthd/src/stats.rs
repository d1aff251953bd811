//! kauthd's counters, in memory, for `kauthctl stats`: logins by outcome
//! and service, codes refused by reason, recovery codes used and login
//! latency, since start and over the last minute; and the connections in
//! use by class. One small mutex for the counts (a login takes it once or
//! twice), atomics for the connections (the event loop changes them).
//!
//! The last minute is 60 one-second buckets on the monotonic clock, so a
//! wall clock that jumps changes nothing here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kauth_proto::{
    CodesRefused, ConnectionsInUse, Latency, LoginCounts, Outcome, ServiceLogins, StatsPeriod,
};

/// The services counted by name; the logins of any further service are
/// counted under [`OTHER_SERVICES`] (a caller names the service, so the
/// map must not grow without bound).
const MAX_SERVICES: usize = 64;
pub const OTHER_SERVICES: &str = "(other)";

/// Seconds in "the last minute".
const WINDOW_SECONDS: u64 = 60;

/// Latency buckets: bucket `i` holds latencies up to
/// `FIRST_BUCKET_US * 2^(i/4)` (a fourth of a doubling apart, so a
/// quantile is known within 19 %); the last takes everything longer.
const BUCKETS: usize = 96;
const FIRST_BUCKET_US: f64 = 100.0;

/// Why a code given at a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    Wrong,
    Replayed,
    Locked,
}

/// The class of a connection's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClass {
    Root,
    PamCaller,
    User,
}

#[derive(Debug, Clone)]
struct Histogram([u64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram([0; BUCKETS])
    }
}

impl Histogram {
    fn bucket_of(latency: Duration) -> usize {
        let us = latency.as_secs_f64() * 1e6;
        if us <= FIRST_BUCKET_US {
            return 0;
        }
        let index = (4.0 * (us / FIRST_BUCKET_US).log2()).ceil();
        // Saturating: a latency beyond the last bound lands in the last.
        (index as usize).min(BUCKETS - 1)
    }

    fn upper_bound_ms(bucket: usize) -> f64 {
        FIRST_BUCKET_US * 2f64.powf(bucket as f64 / 4.0) / 1000.0
    }

    fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// The upper bound of the bucket holding quantile `q`, in ms.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: at least 1.
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some((Histogram::upper_bound_ms(bucket) * 1000.0).round() / 1000.0);
            }
        }
        None
    }
}

/// What one period counted.
#[derive(Debug, Clone, Default)]
struct Tallies {
    logins: BTreeMap<String, LoginCounts>,
    refused: CodesRefused,
    recovery_codes_used: u64,
    latency: Histogram,
}

impl Tallies {
    fn add(&mut self, other: &Tallies) {
        for (service, counts) in &other.logins {
            let mine = self.logins.entry(service.clone()).or_default();
            mine.success += counts.success;
            mine.denied += counts.denied;
            mine.locked += counts.locked;
        }
        self.refused.wrong += other.refused.wrong;
        self.refused.replayed += other.refused.replayed;
        self.refused.locked += other.refused.locked;
        self.recovery_codes_used += other.recovery_codes_used;
        self.latency.add(&other.latency);
    }

    fn login(&mut self, service: &str, outcome: Outcome, latency: Duration) {
        let known = self.logins.contains_key(service) || self.logins.len() < MAX_SERVICES;
        let key = if known { service } else { OTHER_SERVICES };
        let counts = self.logins.entry(key.to_owned()).or_default();
        match outcome {
            Outcome::Success => counts.success += 1,
            Outcome::Denied => counts.denied += 1,
            Outcome::Locked => counts.locked += 1,
        }
        self.latency.0[Histogram::bucket_of(latency)] += 1;
    }

    fn period(&self) -> StatsPeriod {
        let mut total = LoginCounts::default();
        for counts in self.logins.values() {
            total.success += counts.success;
            total.denied += counts.denied;
            total.locked += counts.locked;
        }
        StatsPeriod {
            logins: total,
            services: self
                .logins
                .iter()
                .map(|(service, logins)| ServiceLogins {
                    service: service.clone(),
                    logins: *logins,
                })
                .collect(),
            codes_refused: self.refused,
            recovery_codes_used: self.recovery_codes_used,
            latency_ms: Latency {
                p50: self.latency.quantile_ms(0.50),
                p99: self.latency.quantile_ms(0.99),
            },
        }
    }
}

/// The counts since start and per second of the last minute.
struct Counts {
    started: Instant,
    since_start: Tallies,
    /// (second since start, what it counted), oldest first.
    recent: VecDeque<(u64, Tallies)>,
}

impl Counts {
    /// The bucket of the current second, dropping those out of the window.
    fn now_bucket(&mut self, now: Instant) -> &mut Tallies {
        let second = now.saturating_duration_since(self.started).as_secs();
        while let Some((oldest, _)) = self.recent.front() {
            if oldest + WINDOW_SECONDS > second {
                break;
            }
            self.recent.pop_front();
        }
        if self.recent.back().map(|(s, _)| *s) != Some(second) {
            self.recent.push_back((second, Tallies::default()));
        }
        // Not empty: the current second's bucket is there.
        let last = self.recent.len() - 1;
        &mut self.recent[last].1
    }

    /// Applies `change` to since-start and to the current second.
    fn count(&mut self, change: impl Fn(&mut Tallies)) {
        change(&mut self.since_start);
        change(self.now_bucket(Instant::now()));
    }

    fn last_minute(&mut self, now: Instant) -> Tallies {
        self.now_bucket(now);
        let mut sum = Tallies::default();
        for (_, tallies) in &self.recent {
            sum.add(tallies);
        }
        sum
    }
}

static COUNTS: LazyLock<Mutex<Counts>> = LazyLock::new(|| {
    Mutex::new(Counts {
        started: Instant::now(),
        since_start: Tallies::default(),
        recent: VecDeque::new(),
    })
});

/// A poisoned lock still holds consistent counts (no update can panic
/// half-way in a way that matters for counters).
fn counts() -> MutexGuard<'static, Counts> {
    match COUNTS.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A login on `service` ended with `outcome`, after kauthd spent
/// `latency` on it.
pub fn login_ended(service: &str, outcome: Outcome, latency: Duration) {
    counts().count(|t| t.login(service, outcome, latency));
}

/// A code given at a login was refused.
pub fn code_refused(why: CodeRefusal) {
    counts().count(|t| match why {
        CodeRefusal::Wrong => t.refused.wrong += 1,
        CodeRefusal::Replayed => t.refused.replayed += 1,
        CodeRefusal::Locked => t.refused.locked += 1,
    });
}

/// A login used a recovery code.
pub fn recovery_code_used() {
    counts().count(|t| t.recovery_codes_used += 1);
}

/// The periods: since start and over the last minute.
pub fn periods() -> (StatsPeriod, StatsPeriod) {
    let mut counts = counts();
    let recent = counts.last_minute(Instant::now());
    (counts.since_start.period(), recent.period())
}

static CONNECTIONS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn slot(class: ConnectionClass) -> &'static AtomicU64 {
    match class {
        ConnectionClass::Root => &CONNECTIONS[0],
        ConnectionClass::PamCaller => &CONNECTIONS[1],
        ConnectionClass::User => &CONNECTIONS[2],
    }
}

/// A connection of `class` was admitted.
pub fn connection_opened(class: ConnectionClass) {
    slot(class).fetch_add(1, Ordering::Relaxed);
}

/// A connection of `class` was closed.
pub fn connection_closed(class: ConnectionClass) {
    // Never below zero, even if a close were counted twice.
    let _ = slot(class).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(1))
    });
}

/// The connections in use now.
pub fn connections() -> ConnectionsInUse {
    ConnectionsInUse {
        root: slot(ConnectionClass::Root).load(Ordering::Relaxed),
        pam_callers: slot(ConnectionClass::PamCaller).load(Ordering::Relaxed),
        users: slot(ConnectionClass::User).load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let mut t = Tallies::default();
        for _ in 0..98 {
            t.login("sshd", Outcome::Success, ms(10));
        }
        t.login("sshd", Outcome::Denied, ms(1000));
        t.login("sshd", Outcome::Denied, ms(1000));
        let p50 = t.latency.quantile_ms(0.5).unwrap();
        let p99 = t.latency.quantile_ms(0.99).unwrap();
        assert!((10.0..12.0).contains(&p50), "{p50}");
        assert!((1000.0..1190.0).contains(&p99), "{p99}");
        assert_eq!(Tallies::default().latency.quantile_ms(0.5), None);
        // Beyond the last bound: the last bucket, not a panic.
        assert_eq!(
            Histogram::bucket_of(Duration::from_secs(1 << 40)),
            BUCKETS - 1
        );
        assert_eq!(Histogram::bucket_of(Duration::ZERO), 0);
    }

    #[test]
    fn periods_count_by_service_and_outcome() {
        let mut t = Tallies::default();
        t.login("sshd", Outcome::Success, ms(1));
        t.login("sshd", Outcome::Locked, ms(1));
        t.login("kpanel", Outcome::Denied, ms(1));
        let p = t.period();
        assert_eq!(
            p.logins,
            LoginCounts {
                success: 1,
                denied: 1,
                locked: 1
            }
        );
        let names: Vec<&str> = p.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["kpanel", "sshd"]);
    }

    #[test]
    fn services_beyond_the_limit_are_counted_together() {
        let mut t = Tallies::default();
        for i in 0..MAX_SERVICES + 5 {
            t.login(&format!("svc{i}"), Outcome::Denied, ms(1));
        }
        assert_eq!(t.logins.len(), MAX_SERVICES + 1);
        assert_eq!(t.logins[OTHER_SERVICES].denied, 5);
    }

    #[test]
    fn the_last_minute_forgets_older_seconds() {
        let started = Instant::now();
        let mut counts = Counts {
            started,
            since_start: Tallies::default(),
            recent: VecDeque::new(),
        };
        counts.now_bucket(started).refused.wrong += 1;
        counts
            .now_bucket(started + Duration::from_secs(30))
            .refused
            .wrong += 1;
        let at_59 = counts.last_minute(started + Duration::from_secs(59));
        assert_eq!(at_59.refused.wrong, 2);
        let at_60 = counts.last_minute(started + Duration::from_secs(60));
        assert_eq!(at_60.refused.wrong, 1);
        let at_200 = counts.last_minute(started + Duration::from_secs(200));
        assert_eq!(at_200.refused.wrong, 0);
    }
}
