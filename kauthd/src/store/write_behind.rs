//! Failed attempts written behind: a failure that locks nothing (its row in
//! `failures` and its activity row) is kept in memory and written later,
//! with the others that came meanwhile, in one transaction. A wrong code
//! then costs no write of its own; a flood of them costs one small
//! transaction per [`WRITE_BEHIND_INTERVAL`].
//!
//! Crash semantics: failures still in memory are lost on a `kill -9` (or a
//! power loss), at most those of the last [`WRITE_BEHIND_INTERVAL`] (plus
//! the flusher's second before an fsync). A lock is never lost: the
//! failure that reaches `[ratelimit] max_failures` writes everything held
//! here and the lock in one transaction, made durable before the lock is
//! reported. A clean stop writes them (the checkpoint at stop does).
//!
//! What reads these tables sees the held rows too: the failure counts add
//! them, and every other reader of `failures` or `activity`, and every
//! writer of `activity`, writes them first (`Store::write_behind_now`).

use std::time::Duration;

use super::activity::{self, NewEvent};
use super::db::{values, Dialect, Exec};
use super::ratelimit::LimitKey;
use super::{Store, StoreResult};
use crate::activity::EventKind;

/// How long a failure may wait in memory before it is written.
pub const WRITE_BEHIND_INTERVAL: Duration = Duration::from_millis(250);

/// Held rows beyond which the next failure writes them all at once.
const MAX_HELD: usize = 4096;

/// One failure counted against a name or a host.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    key: String,
    at: i64,
}

/// One failure's activity row.
#[derive(Debug)]
struct Event {
    at: i64,
    user: Option<String>,
    event: EventKind,
    service: Option<String>,
    rhost: Option<String>,
    detail: String,
}

/// The rows not written yet.
#[derive(Debug, Default)]
pub(super) struct WriteBehind {
    failures: Vec<Failure>,
    events: Vec<Event>,
    /// The last write failed (a full state filesystem): each new failure
    /// tries to write at once, so that its request is refused with why.
    failing: bool,
}

impl WriteBehind {
    fn is_empty(&self) -> bool {
        self.failures.is_empty() && self.events.is_empty()
    }

    /// Whether a new row must be written at once: too many are held, or
    /// the last write failed.
    fn must_write(&self) -> bool {
        self.failing || self.failures.len() + self.events.len() >= MAX_HELD
    }

    /// Held failures of `key` after `window_start`.
    pub(super) fn count(&self, key: LimitKey<'_>, window_start: i64) -> usize {
        let (kind, name) = key.parts();
        self.failures
            .iter()
            .filter(|f| f.kind == kind && f.key == name && f.at > window_start)
            .count()
    }

    pub(super) fn add_failure(&mut self, key: LimitKey<'_>, at: i64) {
        let (kind, name) = key.parts();
        self.failures.push(Failure {
            kind,
            key: name.to_owned(),
            at,
        });
    }

    /// Drops the held failures of `key` (a success or an unlock cleared it).
    pub(super) fn forget(&mut self, key: LimitKey<'_>) {
        let (kind, name) = key.parts();
        self.failures.retain(|f| !(f.kind == kind && f.key == name));
    }

    /// Writes everything held through `conn` (inside a transaction of the
    /// caller's), the activity rows with this server's `host` name; the
    /// rows stay held until [`WriteBehind::clear`].
    pub(super) fn write(&self, conn: &mut dyn Exec, host: &str) -> StoreResult<()> {
        for f in &self.failures {
            conn.execute(
                "INSERT INTO failures (kind, key, at) VALUES (?1, ?2, ?3)",
                values![f.kind, f.key.as_str(), f.at],
            )?;
        }
        for e in &self.events {
            let row = NewEvent {
                user: e.user.as_deref(),
                event: e.event,
                service: e.service.as_deref(),
                rhost: e.rhost.as_deref(),
                detail: &e.detail,
            };
            activity::insert(conn, &row, host, e.at)?;
        }
        Ok(())
    }

    /// Forgets the rows once written.
    pub(super) fn clear(&mut self) {
        self.failures.clear();
        self.events.clear();
        self.failing = false;
    }
}

impl Store {
    /// Whether failures that lock nothing may wait in memory: only on
    /// SQLite. On a shared database every server must see every failure at
    /// once, so that failures spread over the fleet add up.
    pub(super) fn writes_behind(&self) -> bool {
        self.db.dialect() == Dialect::Sqlite
    }

    /// Writes the held failures and their activity rows now, in one
    /// transaction. On an error they stay held (and the error is returned).
    pub fn write_behind_now(&self) -> StoreResult<()> {
        let mut held = self.write_behind.borrow_mut();
        if held.is_empty() {
            return Ok(());
        }
        // The store is used by one thread at a time (behind its mutex), so
        // no other transaction is open on the connection.
        let host = self.host_name.as_str();
        let written = self.db.transaction(|tx| held.write(tx, host));
        held.failing = written.is_err();
        written?;
        held.clear();
        Ok(())
    }

    /// Holds a failure's activity row, to be written with the next batch.
    pub fn record_failure_activity(&mut self, event: &NewEvent<'_>, now: i64) -> StoreResult<()> {
        if !self.writes_behind() {
            return self.record_activity(event, now);
        }
        let full = {
            let mut held = self.write_behind.borrow_mut();
            held.events.push(Event {
                at: now,
                user: event.user.map(str::to_owned),
                event: event.event,
                service: event.service.map(str::to_owned),
                rhost: event.rhost.map(str::to_owned),
                detail: event.detail.to_owned(),
            });
            held.must_write()
        };
        if full {
            self.write_behind_now()?;
        }
        Ok(())
    }

    /// Held failures of `key` after `window_start`.
    pub(super) fn held_failures(&self, key: LimitKey<'_>, window_start: i64) -> usize {
        self.write_behind.borrow().count(key, window_start)
    }

    /// Holds failures of `keys` at `now`; written at once when too many are
    /// held.
    pub(super) fn hold_failures(&mut self, keys: &[LimitKey<'_>], now: i64) -> StoreResult<()> {
        let full = {
            let mut held = self.write_behind.borrow_mut();
            for key in keys {
                held.add_failure(*key, now);
            }
            held.must_write()
        };
        if full {
            self.write_behind_now()?;
        }
        Ok(())
    }

    /// Forgets the held failures of `key`.
    pub(super) fn forget_held_failures(&mut self, key: LimitKey<'_>) {
        self.write_behind.borrow_mut().forget(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::activity::EventKind;
    use crate::store::{test_store, LimitKey, Limits, NewEvent};

    const LIMITS: Limits = Limits {
        max_failures: 3,
        window_seconds: 300,
        lock_seconds: 600,
    };

    fn rows(store: &crate::store::Store, table: &str) -> i64 {
        let crate::store::Db::Sqlite(conn) = &store.db else {
            panic!("a test store is SQLite");
        };
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn failure_event(user: &str) -> NewEvent<'_> {
        NewEvent {
            user: Some(user),
            event: EventKind::LoginFailure,
            service: Some("sshd"),
            rhost: None,
            detail: "wrong verification code",
        }
    }

    #[test]
    fn a_failure_that_locks_nothing_is_counted_before_it_is_written() {
        let (_dir, mut store) = test_store();
        let ann = LimitKey::Account("ann");
        let locked = store.record_failure(&[ann], LIMITS, 1000).unwrap();
        assert!(locked.is_empty());
        store
            .record_failure_activity(&failure_event("ann"), 1000)
            .unwrap();
        assert_eq!(rows(&store, "failures"), 0, "held, not written");
        assert_eq!(store.failure_count(ann, LIMITS, 1001).unwrap(), 1);
        store.write_behind_now().unwrap();
        assert_eq!(rows(&store, "failures"), 1);
        assert_eq!(rows(&store, "activity"), 1);
        assert_eq!(store.failure_count(ann, LIMITS, 1001).unwrap(), 1);
    }

    #[test]
    fn the_failure_that_locks_writes_the_held_ones_and_the_lock_together() {
        let (_dir, mut store) = test_store();
        let ann = LimitKey::Account("ann");
        for at in [1000, 1001] {
            assert!(store.record_failure(&[ann], LIMITS, at).unwrap().is_empty());
            store
                .record_failure_activity(&failure_event("ann"), at)
                .unwrap();
        }
        let locked = store.record_failure(&[ann], LIMITS, 1002).unwrap();
        assert_eq!(locked, vec![ann]);
        assert_eq!(rows(&store, "lockouts"), 1);
        assert_eq!(rows(&store, "activity"), 2, "the held activity rows too");
        assert!(store.write_behind.borrow().is_empty());
        assert_eq!(store.locked_until(ann, 1003).unwrap(), Some(1602));
    }

    #[test]
    fn failures_out_of_the_window_do_not_count() {
        let (_dir, mut store) = test_store();
        let ann = LimitKey::Account("ann");
        store.record_failure(&[ann], LIMITS, 1000).unwrap();
        store.record_failure(&[ann], LIMITS, 1001).unwrap();
        let later = 1001 + 300;
        assert_eq!(store.failure_count(ann, LIMITS, later).unwrap(), 0);
        assert!(store
            .record_failure(&[ann], LIMITS, later)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_success_forgets_held_failures() {
        let (_dir, mut store) = test_store();
        let ann = LimitKey::Account("ann");
        let bob = LimitKey::Account("bob");
        store.record_failure(&[ann, bob], LIMITS, 1000).unwrap();
        store.clear_failures(ann).unwrap();
        assert_eq!(store.failure_count(ann, LIMITS, 1001).unwrap(), 0);
        assert_eq!(store.failure_count(bob, LIMITS, 1001).unwrap(), 1);
    }

    #[test]
    fn readers_of_the_activity_see_held_rows_and_a_checkpoint_writes_them() {
        let (_dir, mut store) = test_store();
        store
            .record_failure_activity(&failure_event("ann"), 1000)
            .unwrap();
        let listed = store.activity(Some("ann"), 0, None, 10).unwrap();
        assert_eq!(listed.len(), 1);
        store
            .record_failure_activity(&failure_event("ann"), 1001)
            .unwrap();
        store
            .record_failure(&[LimitKey::Account("ann")], LIMITS, 1001)
            .unwrap();
        store.checkpoint();
        assert_eq!(rows(&store, "activity"), 2);
        assert_eq!(rows(&store, "failures"), 1);
    }
}
