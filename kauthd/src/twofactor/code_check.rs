//! Checking a verification code or a recovery code for an account: the
//! rate limit first (a locked account or host has nothing checked, counted
//! or written), then TOTP with the replay guard, then recovery codes.
//!
//! What is durable before the answer (see `store::durability`):
//! - an accepted code is spent, the account's failure count cleared and
//!   the login's activity rows stored in one transaction, made durable
//!   (one shared sync) before the login is acknowledged;
//! - a counted failure that locks nothing is held in memory with its
//!   activity row and answered at once; held failures are written in one
//!   transaction a quarter second apart and synced within a second after
//!   (`store::write_behind`). So a failure count may be lost on a
//!   `kill -9` of kauthd or a power loss, never on a clean stop;
//! - a failure that locks the account or the host is durable, with its
//!   lockout activity row, before the answer: a lock that was reported is
//!   always durable.

use std::cell::{Cell, RefCell};

use kauth_proto::Secret;

use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::host_net;
use crate::passwords::argon2_pool::{QueueKey, Turn};
use crate::store::{self, Account, LimitKey, Limits, LoginEvents, NewEvent, Spend, StoreError};
use crate::twofactor::drift::{self, Observation};
use crate::twofactor::recovery::{self, HashCost};
use crate::twofactor::replay_guard::{self, Guard};
use crate::twofactor::totp;

/// How far outside the window a code is still recognised, to notice a
/// drifting clock (±25 steps: about 12 minutes at 30 s).
const WIDE_STEPS: u32 = 25;

/// The cost of hashing a recovery code. Fixed, because stored hashes must
/// be recomputable whatever the config says later.
pub const RECOVERY_COST: HashCost = HashCost {
    memory_kib: 19456,
    iterations: 2,
    parallelism: 1,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A TOTP code; `learned_offset` is the clock offset (in seconds,
    /// positive: the authenticator is ahead) learned at this very code.
    Totp {
        learned_offset: Option<i64>,
    },
    Recovery {
        left: u64,
    },
}

/// Why a code was refused, as far as the person may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Nothing more to say (also: no account, no 2FA, not a code).
    Wrong,
    /// Right for the current window, but that code was accepted before.
    AlreadyUsed,
    /// Right for a time step outside the window: the authenticator's clock
    /// looks this many seconds off (positive: ahead).
    ClockOff { seconds: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOutcome {
    Accepted(Factor),
    Rejected(Rejection),
    /// Too many failures: nothing was checked.
    Locked {
        until: i64,
    },
}

pub fn limits(config: &Config) -> Limits {
    Limits {
        max_failures: config.ratelimit.max_failures,
        window_seconds: config.ratelimit.window_seconds,
        lock_seconds: config.ratelimit.lock_seconds,
    }
}

/// The lock on this name or host, if any, as of now.
pub fn current_lock(
    daemon: &Daemon,
    name: &str,
    rhost: Option<&str>,
) -> Result<Option<i64>, StoreError> {
    let now = clock::now();
    let host = host_key(&daemon.config(), rhost);
    let store = daemon.store();
    if let Some(until) = store.locked_until(LimitKey::Account(name), now)? {
        return Ok(Some(until));
    }
    match host {
        Some(host) => store.locked_until(LimitKey::Host(&host), now),
        None => Ok(None),
    }
}

/// The key a remote host's failures and lock are counted under: its
/// network (see `host_net`); `None` when the attempt names no host.
pub fn host_key(config: &Config, rhost: Option<&str>) -> Option<String> {
    let rhost = rhost.filter(|h| !h.is_empty())?;
    Some(host_net::limit_key(rhost, prefixes(config)))
}

/// The `[ratelimit]` prefix lengths in force.
pub fn prefixes(config: &Config) -> host_net::Prefixes {
    host_net::Prefixes {
        ipv4: config.ratelimit.ipv4_prefix,
        ipv6: config.ratelimit.ipv6_prefix,
    }
}

/// The failed attempts counted against this name (whether or not it has
/// an account) since its last success, within the counting window.
pub fn failures_of(daemon: &Daemon, name: &str) -> Result<u32, StoreError> {
    let config = daemon.config();
    daemon
        .store()
        .failure_count(LimitKey::Account(name), limits(&config), clock::now())
}

/// Counts a failed attempt against the name and the remote host.
pub fn record_failure(daemon: &Daemon, name: &str, rhost: Option<&str>) -> Result<(), StoreError> {
    let config = daemon.config();
    let host = host_key(&config, rhost);
    let mut keys = vec![LimitKey::Account(name)];
    if let Some(host) = &host {
        keys.push(LimitKey::Host(host));
    }
    let locked = store::durability::relaxed(|| {
        daemon
            .store()
            .record_failure(&keys, limits(&config), clock::now())
    })?;
    if !locked.is_empty() {
        // The lock is reported in the answer: it must be durable first.
        store::durability::require_sync();
    }
    let detail = format!(
        "locked for {} s after {} failed attempts",
        config.ratelimit.lock_seconds, config.ratelimit.max_failures
    );
    for key in locked {
        let (user, rhost) = match key {
            LimitKey::Account(name) => (Some(name), None),
            LimitKey::Host(host) => (None, Some(host)),
        };
        activity::record(
            daemon,
            &NewEvent {
                user,
                event: EventKind::Lockout,
                rhost,
                detail: &detail,
                service: None,
            },
        );
        if let LimitKey::Host(host) = key {
            record_host_lockout_for_users(daemon, name, host, &detail);
        }
    }
    Ok(())
}

/// The most users a host lockout is recorded for.
const HOST_LOCKOUT_USERS: u32 = 20;

/// A host lockout in the activity of each user who failed from the host
/// within the window (`name`, whose failure locked it, first), so that
/// `kauthctl activity` shows it to them.
fn record_host_lockout_for_users(daemon: &Daemon, name: &str, host: &str, detail: &str) {
    let config = daemon.config();
    let since = clock::now() - i64::try_from(config.ratelimit.window_seconds).unwrap_or(i64::MAX);
    let failed = daemon.store().failures_from_hosts(since);
    let failed = failed.unwrap_or_else(|e| {
        log::error!("cannot find who failed from a locked host: {e}");
        Vec::new()
    });
    // The users who failed from an address in the locked network.
    let prefixes = prefixes(&config);
    let mut others: Vec<String> = failed
        .into_iter()
        .filter(|(user, rhost)| user != name && host_net::limit_key(rhost, prefixes) == host)
        .map(|(user, _)| user)
        .collect();
    others.sort();
    others.dedup();
    let mut users = vec![name.to_owned()];
    users.extend(others);
    users.truncate(HOST_LOCKOUT_USERS as usize);
    let detail = format!("the host this user failed from was {detail}");
    for user in &users {
        activity::record(
            daemon,
            &NewEvent {
                user: Some(user),
                event: EventKind::Lockout,
                rhost: Some(host),
                detail: &detail,
                service: None,
            },
        );
    }
}

/// Where an attempt comes from: the remote host a login names, if any,
/// and the local uid that connected. The locks are counted per remote
/// network (`host_net`); argon2 runs queue per remote network, else per
/// uid.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub rhost: Option<&'a str>,
    pub uid: u32,
}

impl Origin<'_> {
    /// An attempt that names no remote host (self-service, kauthctl).
    pub fn local(uid: u32) -> Origin<'static> {
        Origin { rhost: None, uid }
    }

    fn queue_key(&self, prefixes: host_net::Prefixes) -> QueueKey {
        QueueKey::of(self.rhost, self.uid, prefixes)
    }
}

/// What came of one attempt made under the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The answer was right; `T` says what it was.
    Right(T),
    /// The answer was wrong, and counted as a failure.
    Wrong,
    /// The name or the host is locked: nothing was checked or counted.
    Locked { until: i64 },
}

/// The one rule for every password, code, recovery code or token a person
/// gives: the locks on `name` and the origin's host first (while locked,
/// nothing is checked, so a locked attempt costs no argon2 run and tells
/// nothing), then `verify`, and a wrong answer counts as a failure against
/// the name and the host, locking them at `[ratelimit] max_failures`.
///
/// `verify` returns what the right answer was, or `None` when it is
/// wrong. Its argon2 runs wait in the origin's queue with the `Turn` it is
/// given, which looks at the locks again when the run's turn comes: an
/// attempt that queued before a lock was set is answered as locked, with
/// no argon2 run and nothing counted.
pub fn attempt<T>(
    daemon: &Daemon,
    name: &str,
    origin: Origin<'_>,
    verify: impl FnOnce(&Turn<'_>) -> Result<Option<T>, StoreError>,
) -> Result<Attempt<T>, StoreError> {
    let rhost = origin.rhost;
    if let Some(until) = current_lock(daemon, name, rhost)? {
        return Ok(Attempt::Locked { until });
    }
    // What the check at the turn found, when it stopped the run.
    let stopped: RefCell<Option<Result<i64, StoreError>>> = RefCell::new(None);
    let still_unlocked = || match current_lock(daemon, name, rhost) {
        Ok(None) => true,
        Ok(Some(until)) => {
            stopped.replace(Some(Ok(until)));
            false
        }
        Err(e) => {
            stopped.replace(Some(Err(e)));
            false
        }
    };
    let key = origin.queue_key(prefixes(&daemon.config()));
    let right = verify(&Turn::checked(key, &still_unlocked))?;
    if let Some(lock) = stopped.into_inner() {
        return Ok(Attempt::Locked { until: lock? });
    }
    if let Some(right) = right {
        return Ok(Attempt::Right(right));
    }
    record_failure(daemon, name, rhost)?;
    Ok(Attempt::Wrong)
}

/// Checks `answer` as a TOTP code, then as a recovery code, for `name`
/// (whose account may not exist: the answer is then simply wrong). For a
/// login on `service`, the login's activity rows are stored with the
/// spent code; without a service (a proof outside a login), the caller
/// records its own events.
pub fn check(
    daemon: &Daemon,
    name: &str,
    account: Option<&Account>,
    origin: Origin<'_>,
    service: Option<&str>,
    answer: &Secret,
) -> Result<CodeOutcome, StoreError> {
    let commit = Commit {
        name,
        rhost: origin.rhost,
        service,
    };
    let rejection = Cell::new(Rejection::Wrong);
    let outcome = attempt(daemon, name, origin, |turn| {
        let Some(account) = account else {
            return Ok(None);
        };
        match check_totp(daemon, account, answer.expose(), &commit)? {
            TotpCheck::Accepted { learned_offset } => {
                return Ok(Some(Factor::Totp { learned_offset }))
            }
            TotpCheck::Refused(why) => rejection.set(why),
        }
        let left = check_recovery(daemon, turn, account, answer.expose(), &commit)?;
        Ok(left.map(|left| Factor::Recovery { left }))
    })?;
    Ok(match outcome {
        Attempt::Right(factor) => {
            commit.log(factor);
            match (factor, account) {
                (Factor::Recovery { .. }, Some(account)) => {
                    repair_guard_at_recovery(daemon, account)
                }
                (
                    Factor::Totp {
                        learned_offset: Some(seconds),
                    },
                    _,
                ) => commit.record_learned_offset(daemon, seconds),
                _ => {}
            }
            CodeOutcome::Accepted(factor)
        }
        Attempt::Wrong => CodeOutcome::Rejected(rejection.get()),
        Attempt::Locked { until } => CodeOutcome::Locked { until },
    })
}

/// What the TOTP check found.
enum TotpCheck {
    /// Accepted and spent; with the clock offset (seconds) learned at it.
    Accepted {
        learned_offset: Option<i64>,
    },
    Refused(Rejection),
}

/// The code with spaces removed, if it has the shape of a TOTP code.
fn totp_shape(answer: &str, digits: u32) -> Option<String> {
    let code: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == digits as usize && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// What an accepted code is committed with: the account's failure count
/// is cleared and, at a login, the login's activity rows stored.
struct Commit<'a> {
    name: &'a str,
    rhost: Option<&'a str>,
    service: Option<&'a str>,
}

impl Commit<'_> {
    /// Spends the code in one transaction with the rest (see
    /// `Store::spend_code`); `None` if it was spent already.
    fn spend(
        &self,
        store: &mut store::Store,
        spend: Spend,
        now: i64,
    ) -> Result<Option<Option<u64>>, StoreError> {
        let login = self.service.map(|service| LoginEvents {
            user: self.name,
            service,
            rhost: self.rhost,
            events: &login_events,
        });
        store.spend_code(spend, LimitKey::Account(self.name), login.as_ref(), now)
    }

    /// Logs the login's events stored with the spent code (after the
    /// store lock is released).
    fn log(&self, factor: Factor) {
        let Some(service) = self.service else {
            return;
        };
        let left = match factor {
            Factor::Totp { .. } => None,
            Factor::Recovery { left } => Some(left),
        };
        for (event, detail) in login_events(left) {
            activity::log(&NewEvent {
                user: Some(self.name),
                event,
                service: Some(service),
                rhost: self.rhost,
                detail: &detail,
            });
        }
    }
}

impl Commit<'_> {
    /// A clock offset learned at this code: in the user's activity (with
    /// the login's service and host, when it is a login).
    fn record_learned_offset(&self, daemon: &Daemon, seconds: i64) {
        let direction = if seconds > 0 { "ahead" } else { "behind" };
        let detail = format!(
            "the authenticator's clock is {} s {direction}: learned from consecutive codes, later codes are checked around it",
            seconds.abs()
        );
        activity::record(
            daemon,
            &NewEvent {
                user: Some(self.name),
                event: EventKind::ClockOffset,
                service: self.service,
                rhost: self.rhost,
                detail: &detail,
            },
        );
    }
}

/// The activity rows of a login whose code was accepted, given the
/// recovery codes left (`None`: it was a TOTP code).
fn login_events(recovery_left: Option<u64>) -> Vec<(EventKind, String)> {
    match recovery_left {
        None => vec![(
            EventKind::LoginSuccess,
            "with a verification code".to_owned(),
        )],
        Some(left) => {
            let how = format!("recovery code ({left} left)");
            vec![
                (EventKind::LoginSuccess, format!("with a {how}")),
                (EventKind::RecoveryCodeUsed, how),
            ]
        }
    }
}

/// TOTP with the replay guard. The check and the guard's update happen
/// under one store lock, so two connections cannot both spend one code.
/// A refused code says why when the secret explains it: already used, or
/// right for another time (a clock that is off).
fn check_totp(
    daemon: &Daemon,
    account: &Account,
    answer: &str,
    commit: &Commit<'_>,
) -> Result<TotpCheck, StoreError> {
    const WRONG: TotpCheck = TotpCheck::Refused(Rejection::Wrong);
    let config = daemon.config();
    let now = clock::now();
    let now_u = u64::try_from(now).unwrap_or(0);
    let mut store = daemon.store();
    let Some(cred) = store.totp(account.id)? else {
        return Ok(WRONG);
    };
    let Some(code) = totp_shape(answer, cred.params.digits) else {
        return Ok(WRONG);
    };
    let skew = cred.skew_steps.unwrap_or(config.totp.skew_steps);
    if let Some(ahead) = Guard::of(&cred, skew).and_then(|g| g.ahead_seconds(now_u)) {
        warn_guard_ahead(daemon, &account.name, ahead);
    }
    let in_window = |learned_offset: i64, last_counter: Option<u64>| {
        totp::find_match_after(
            &cred.secret,
            &cred.params,
            &code,
            now_u,
            skew,
            learned_offset,
            last_counter,
        )
    };
    if let Some(m) = in_window(cred.learned_offset, cred.last_counter) {
        let spend = Spend::Totp {
            account_id: account.id,
            counter: m.counter,
            offset: m.offset,
        };
        let accepted = commit.spend(&mut store, spend, now)?.is_some();
        if accepted && m.offset != 0 {
            report_server_drift(daemon, &store, cred.params.period, now);
        }
        return Ok(if accepted {
            TotpCheck::Accepted {
                learned_offset: None,
            }
        } else {
            TotpCheck::Refused(Rejection::AlreadyUsed)
        });
    }
    if in_window(cred.learned_offset, None).is_some() {
        // Right for now, but the replay guard has it (or a later code).
        return Ok(TotpCheck::Refused(Rejection::AlreadyUsed));
    }
    // Outside the window: where did it match? A clock that is off, and
    // when consecutive codes agree, an offset to learn (a phone or server
    // clock that drifted).
    let Some(offset) = totp::find_wide(&cred.secret, &cred.params, &code, now_u, WIDE_STEPS) else {
        return Ok(WRONG);
    };
    let server_counter = cred.params.counter_at(now_u);
    let matched = server_counter.saturating_add_signed(offset);
    if cred.last_counter.is_some_and(|last| matched <= last) {
        return Ok(WRONG); // a spent code: never evidence of drift
    }
    let period = i64::try_from(cred.params.period).unwrap_or(30);
    let clock_off = TotpCheck::Refused(Rejection::ClockOff {
        seconds: offset.saturating_mul(period),
    });
    if !config.totp.learn_skew {
        return Ok(clock_off);
    }
    let history = store.add_drift_observation(account.id, server_counter, offset)?;
    let observations: Vec<Observation> = history
        .iter()
        .map(|&(server_counter, offset)| Observation {
            server_counter,
            offset,
        })
        .collect();
    let Some(learned) = drift::learn_offset(&observations, i64::from(WIDE_STEPS)) else {
        log::info!(
            "a code for {} matched {offset} time steps away from the server clock; not accepted",
            account.name
        );
        return Ok(clock_off);
    };
    store.set_learned_offset(account.id, learned)?;
    let learned_seconds = learned.saturating_mul(period);
    log::warn!(
        "learned a clock offset of {learned} time steps ({learned_seconds} s) for {} from consecutive codes",
        account.name
    );
    let Some(m) = in_window(learned, cred.last_counter) else {
        return Ok(clock_off);
    };
    let spend = Spend::Totp {
        account_id: account.id,
        counter: m.counter,
        offset: m.offset,
    };
    Ok(match commit.spend(&mut store, spend, now)? {
        Some(_) => TotpCheck::Accepted {
            learned_offset: Some(learned_seconds),
        },
        None => TotpCheck::Refused(Rejection::AlreadyUsed),
    })
}

/// A guard beyond the window refuses every code until the clock catches
/// up, with nothing else to tell why: say so (at most every ten minutes
/// per user), with the way out.
fn warn_guard_ahead(daemon: &Daemon, name: &str, ahead_seconds: u64) {
    if !daemon.may_warn_about_guard(name) {
        return;
    }
    let gap = replay_guard::describe(ahead_seconds);
    log::error!(
        "every code of {name} is refused: the last accepted code is {gap} in the future (the server clock probably ran ahead when it was accepted); `kauthctl 2fa reset-guard --user {name}` repairs it, as does a login with a recovery code"
    );
}

/// Puts `account`'s replay guard back to the end of its current window if
/// it is beyond it. Returns how many seconds ahead it was (0: it was not,
/// nothing changed). Codes accepted up to now stay refused; codes accepted
/// while the clock was ahead work again when their time comes.
pub fn reset_guard(daemon: &Daemon, account: &Account) -> Result<u64, StoreError> {
    let skew = daemon.config().totp.skew_steps;
    let now = u64::try_from(clock::now()).unwrap_or(0);
    let mut store = daemon.store();
    let Some(guard) = store.totp(account.id)?.and_then(|c| Guard::of(&c, skew)) else {
        return Ok(0);
    };
    let Some(ahead) = guard.ahead_seconds(now) else {
        return Ok(0);
    };
    if !store.lower_guard(account.id, guard.window_end(now))? {
        return Ok(0);
    }
    Ok(ahead)
}

/// A recovery code proves the person as well as a code would: a guard the
/// clock left in the future is repaired on the way in.
fn repair_guard_at_recovery(daemon: &Daemon, account: &Account) {
    match reset_guard(daemon, account) {
        Ok(0) => {}
        Ok(ahead) => activity::event(
            daemon,
            Some(&account.name),
            EventKind::GuardReset,
            &format!(
                "replay guard repaired at a recovery-code login: it was {} ahead of the clock",
                replay_guard::describe(ahead)
            ),
        ),
        Err(e) => log::error!(
            "could not repair the replay guard of {} after a recovery-code login: {e}",
            account.name
        ),
    }
}

/// When most users' codes of the last day matched off-centre in the same
/// direction, the server clock is the likely culprit: say so (at most
/// every ten minutes). `kauthctl doctor` shows the same figures.
fn report_server_drift(daemon: &Daemon, store: &crate::store::Store, period: u64, now: i64) {
    let Ok(offsets) = store.recent_offsets(now - drift::RECENT_SECONDS) else {
        return;
    };
    let Some(summary) = drift::server_clock_verdict(&offsets) else {
        return;
    };
    if !daemon.may_warn_about_drift(now) {
        return;
    }
    let fast = summary.server_fast_by_seconds(period);
    let direction = if fast > 0 { "fast" } else { "slow" };
    log::warn!(
        "the server clock looks about {} s {direction}: {} of {} users' recent codes matched off-centre (median {} steps); check time synchronisation (timedatectl, chrony or ntpd)",
        fast.abs(),
        summary.off_centre,
        summary.users,
        summary.median_offset_steps
    );
}

/// A recovery code: one argon2 run (outside the store lock, when `turn`
/// comes), then the code is spent atomically. Returns the number left
/// after spending.
fn check_recovery(
    daemon: &Daemon,
    turn: &Turn<'_>,
    account: &Account,
    answer: &str,
    commit: &Commit<'_>,
) -> Result<Option<u64>, StoreError> {
    let Some(normalized) = recovery::normalize(answer) else {
        return Ok(None);
    };
    let codes = daemon.store().unused_recovery_codes(account.id)?;
    let mut salts: Vec<&[u8]> = codes.iter().map(|c| c.salt.as_slice()).collect();
    salts.dedup();
    for salt in salts {
        let candidate = match recovery::hash(turn, &normalized, salt, &RECOVERY_COST) {
            Ok(hash) => hash,
            Err(recovery::RecoveryError::Stopped) => return Ok(None),
            Err(e) => {
                log::error!("cannot hash a recovery code: {e}");
                return Ok(None);
            }
        };
        let same_salt: Vec<_> = codes.iter().filter(|c| c.salt == salt).collect();
        let hashes: Vec<[u8; 32]> = same_salt.iter().map(|c| c.hash).collect();
        if let Some(index) = recovery::find(&candidate, &hashes) {
            let spend = Spend::Recovery {
                account_id: account.id,
                code_id: same_salt[index].id,
            };
            let spent = commit.spend(&mut daemon.store(), spend, clock::now())?;
            // `None`: spent by a concurrent attempt.
            return Ok(spent.map(|left| left.unwrap_or(0)));
        }
    }
    Ok(None)
}

/// Hashes a new set of recovery codes for `user` under one fresh salt.
pub fn hash_codes(user: &str, codes: &[Secret]) -> Result<([u8; 16], Vec<[u8; 32]>), String> {
    let turn = Turn::new(QueueKey::Account(user.to_owned()));
    let salt = recovery::new_salt().map_err(|e| e.to_string())?;
    let mut hashes = Vec::with_capacity(codes.len());
    for code in codes {
        let normalized = recovery::normalize(code.expose())
            .ok_or_else(|| "a recovery code is malformed".to_owned())?;
        let hash = recovery::hash(&turn, &normalized, &salt, &RECOVERY_COST);
        hashes.push(hash.map_err(|e| e.to_string())?);
    }
    Ok((salt, hashes))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::passwords::hashing;
    use crate::store::durability::take_unsynced;
    use crate::store::Store;

    const HOST: &str = "192.0.2.7";

    fn daemon() -> (tempfile::TempDir, Daemon) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[ratelimit]\nmax_failures = 3\n",
        )
        .unwrap();
        let store = Store::open(&dir.path().join("state"), crate::store::test_key()).unwrap();
        let daemon = Daemon::new(config, store, dir.path().join("kauthd.toml"));
        (dir, daemon)
    }

    /// A right password, checked by `attempt`; `meanwhile` runs after the
    /// first lock check and before the argon2 run's turn. Returns the
    /// outcome and whether the password was found right.
    fn right_password_after(meanwhile: impl FnOnce(&Daemon)) -> (Attempt<()>, bool) {
        let (_dir, daemon) = daemon();
        let phc = hashing::hash(&QueueKey::Uid(0), "right", &daemon.config().password).unwrap();
        let origin = Origin {
            rhost: Some(HOST),
            uid: 0,
        };
        let checked_right = Cell::new(false);
        let outcome = attempt(&daemon, "ann", origin, |turn| {
            meanwhile(&daemon);
            checked_right.set(hashing::verify(turn, "right", &phc));
            Ok(checked_right.get().then_some(()))
        })
        .unwrap();
        (outcome, checked_right.get())
    }

    #[test]
    fn a_right_password_passes_when_nothing_is_locked() {
        let (outcome, checked_right) = right_password_after(|_| {});
        assert_eq!(outcome, Attempt::Right(()));
        assert!(checked_right);
    }

    #[test]
    fn an_attempt_whose_turn_comes_after_its_host_was_locked_is_not_checked() {
        // Other attempts from the same host fail while this one waits.
        let (outcome, checked_right) = right_password_after(|daemon| {
            for _ in 0..3 {
                record_failure(daemon, "someone-else", Some(HOST)).unwrap();
            }
        });
        assert!(
            matches!(outcome, Attempt::Locked { .. }),
            "answered {outcome:?}"
        );
        assert!(!checked_right, "argon2 ran for a locked host");
    }

    #[test]
    fn an_attempt_whose_turn_comes_after_its_name_was_locked_is_not_checked() {
        let (outcome, checked_right) = right_password_after(|daemon| {
            for _ in 0..3 {
                record_failure(daemon, "ann", Some("198.51.100.1")).unwrap();
            }
        });
        assert!(
            matches!(outcome, Attempt::Locked { .. }),
            "answered {outcome:?}"
        );
        assert!(!checked_right, "argon2 ran for a locked name");
    }

    #[test]
    fn a_failure_waits_for_no_sync_until_it_locks() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse("[ratelimit]\nmax_failures = 2\n").unwrap();
        let store = store::Store::open(&dir.path().join("state"), store::test_key()).unwrap();
        let daemon = Daemon::new(config, store, dir.path().join("kauthd.toml"));
        take_unsynced();
        record_failure(&daemon, "ann", Some("192.0.2.1")).unwrap();
        assert!(!take_unsynced(), "a failure that locks nothing waits");
        record_failure(&daemon, "ann", Some("192.0.2.2")).unwrap();
        assert!(
            take_unsynced(),
            "the lock must be durable before the answer"
        );
        assert!(current_lock(&daemon, "ann", None).unwrap().is_some());
    }

    /// `ann` with TOTP on (default parameters), and her secret.
    fn ann_with_totp(daemon: &Daemon) -> (Account, &'static [u8]) {
        const SECRET: &[u8] = b"12345678901234567890";
        let mut store = daemon.store();
        let account = store.add_account("ann", None, None, 0).unwrap();
        let params = totp::TotpParams::default();
        let new = store::NewTotp {
            secret: SECRET,
            params: &params,
            now: 0,
            first_counter: None,
            skew_steps: None,
            codes: None,
        };
        store.enable_totp(account.id, &new).unwrap();
        (account, SECRET)
    }

    fn check_code(daemon: &Daemon, account: &Account, code: &str) -> CodeOutcome {
        let origin = Origin::local(0);
        check(
            daemon,
            "ann",
            Some(account),
            origin,
            Some("sshd"),
            &Secret::from(code),
        )
        .unwrap()
    }

    #[test]
    fn a_code_accepted_before_is_refused_as_already_used() {
        let (_dir, daemon) = daemon();
        let (account, secret) = ann_with_totp(&daemon);
        let now = u64::try_from(clock::now()).unwrap();
        let code = totp::code_at(secret, &totp::TotpParams::default(), now);
        assert_eq!(
            check_code(&daemon, &account, &code),
            CodeOutcome::Accepted(Factor::Totp {
                learned_offset: None
            })
        );
        assert_eq!(
            check_code(&daemon, &account, &code),
            CodeOutcome::Rejected(Rejection::AlreadyUsed)
        );
    }

    #[test]
    fn a_code_for_another_time_says_how_far_the_clock_is_off() {
        let (_dir, daemon) = daemon();
        let (account, secret) = ann_with_totp(&daemon);
        let now = u64::try_from(clock::now()).unwrap();
        let slow = totp::code_at(secret, &totp::TotpParams::default(), now - 300);
        assert_eq!(
            check_code(&daemon, &account, &slow),
            CodeOutcome::Rejected(Rejection::ClockOff { seconds: -300 })
        );
        assert_eq!(
            check_code(&daemon, &account, "000000x"),
            CodeOutcome::Rejected(Rejection::Wrong)
        );
    }
}
