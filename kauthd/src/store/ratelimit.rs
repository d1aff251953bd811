//! Failed attempts and the temporary locks they lead to, per account and
//! per remote host.

use super::db::{values, Dialect, Exec};
use super::{Store, StoreResult};

/// What is being counted: an account name or a remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey<'a> {
    Account(&'a str),
    Host(&'a str),
}

impl LimitKey<'_> {
    pub(super) fn parts(&self) -> (&'static str, &str) {
        match self {
            LimitKey::Account(name) => ("account", name),
            LimitKey::Host(host) => ("host", host),
        }
    }
}

/// The `[ratelimit]` numbers in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures: u32,
    pub window_seconds: u64,
    pub lock_seconds: u64,
}

impl Limits {
    /// How far back a failure can have helped set a lock that still
    /// holds: the lock's length plus the counting window before it.
    pub fn lookback_seconds(&self) -> i64 {
        i64::try_from(self.lock_seconds.saturating_add(self.window_seconds)).unwrap_or(i64::MAX)
    }
}

/// The activity events that are failed attempts from a remote host (the
/// host's failures are counted without names; these rows keep the names).
const FAILED_FROM_HOST: &str = "event IN ('login_failure', 'password_change_failure', 'lockout')";

/// How many of the latest activity events are searched for the users who
/// failed from a host.
const RECENT_EVENTS_SEARCHED: u32 = 2000;

/// One lock in force, from failures, root, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    /// `"account"` or `"host"`.
    pub kind: String,
    pub key: String,
    /// When the lock from failures ends, if there is one.
    pub until: Option<i64>,
    /// Root locked the account.
    pub by_root: bool,
}

/// Forgets the failures counted against `key`.
pub(super) fn clear_failures_in(conn: &mut dyn Exec, key: LimitKey<'_>) -> StoreResult<()> {
    let (kind, name) = key.parts();
    conn.execute(
        "DELETE FROM failures WHERE kind = ?1 AND key = ?2",
        values![kind, name],
    )?;
    Ok(())
}

/// Rows deleted per transaction when pruning.
const PRUNE_BATCH_ROWS: usize = 500;

impl Store {
    /// When the lock on `key` ends, if it is locked now.
    pub fn locked_until(&self, key: LimitKey<'_>, now: i64) -> StoreResult<Option<i64>> {
        let (kind, key) = key.parts();
        let row = self.db.run(|c| {
            c.query_opt(
                "SELECT until FROM lockouts WHERE kind = ?1 AND key = ?2 AND until > ?3",
                values![kind, key, now],
            )
        })?;
        row.map(|r| r.get(0)).transpose()
    }

    /// Counts a failure against each key; a key that reaches the limit
    /// within the window is locked. Returns the keys that became locked.
    ///
    /// On SQLite a failure that locks nothing is held in memory and
    /// written behind (see `write_behind`); one that locks writes the
    /// held ones, itself and the lock in one transaction. On a shared
    /// database every failure is written at once, and failures counted
    /// by every server add up (each key's count is taken under a lock of
    /// its own, so two servers cannot both miss the limit).
    pub fn record_failure<'a>(
        &mut self,
        keys: &[LimitKey<'a>],
        limits: Limits,
        now: i64,
    ) -> StoreResult<Vec<LimitKey<'a>>> {
        let mut locks = false;
        for key in keys {
            let counted = self.failure_count(*key, limits, now)?;
            locks |= counted.saturating_add(1) >= limits.max_failures;
        }
        if !locks && self.writes_behind() {
            self.hold_failures(keys, now)?;
            return Ok(Vec::new());
        }
        self.write_behind_now()?;
        self.write_failures(keys, limits, now)
    }

    /// Writes a failure against each key, in one transaction, locking the
    /// keys that reach the limit within the window.
    fn write_failures<'a>(
        &mut self,
        keys: &[LimitKey<'a>],
        limits: Limits,
        now: i64,
    ) -> StoreResult<Vec<LimitKey<'a>>> {
        let window_start = now - i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
        let until = now + i64::try_from(limits.lock_seconds).unwrap_or(i64::MAX / 2);
        let dialect = self.db.dialect();
        self.db.transaction(|tx| {
            let mut locked = Vec::new();
            for key in keys {
                let (kind, name) = key.parts();
                if dialect == Dialect::Postgres {
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(
                             CAST(?1 AS TEXT) || ':' || CAST(?2 AS TEXT), 0))",
                        values![kind, name],
                    )?;
                }
                tx.execute(
                    "DELETE FROM failures WHERE kind = ?1 AND key = ?2 AND at <= ?3",
                    values![kind, name, window_start],
                )?;
                tx.execute(
                    "INSERT INTO failures (kind, key, at) VALUES (?1, ?2, ?3)",
                    values![kind, name, now],
                )?;
                let count: i64 = tx
                    .query_one(
                        "SELECT COUNT(*) FROM failures WHERE kind = ?1 AND key = ?2",
                        values![kind, name],
                    )?
                    .get(0)?;
                if count >= i64::from(limits.max_failures) {
                    tx.execute(
                        "INSERT INTO lockouts (kind, key, until) VALUES (?1, ?2, ?3)
                         ON CONFLICT (kind, key) DO UPDATE SET until = excluded.until",
                        values![kind, name, until],
                    )?;
                    clear_failures_in(tx, *key)?;
                    locked.push(*key);
                }
            }
            Ok(locked)
        })
    }

    /// The failures counted against `key` within the window before `now`
    /// (cleared by a success and by a lock).
    pub fn failure_count(&self, key: LimitKey<'_>, limits: Limits, now: i64) -> StoreResult<u32> {
        let (kind, name) = key.parts();
        let window_start = now - i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
        let count: i64 = self.db.run(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM failures WHERE kind = ?1 AND key = ?2 AND at > ?3",
                values![kind, name, window_start],
            )?
            .get(0)
        })?;
        let held = self.held_failures(key, window_start);
        Ok(u32::try_from(count)
            .unwrap_or(u32::MAX)
            .saturating_add(u32::try_from(held).unwrap_or(u32::MAX)))
    }

    /// Forgets the failures counted against `key` (after a success).
    pub fn clear_failures(&mut self, key: LimitKey<'_>) -> StoreResult<()> {
        self.db.run(|c| clear_failures_in(c, key))?;
        self.forget_held_failures(key);
        Ok(())
    }

    /// Deletes failures older than the window and locks that have ended;
    /// returns how many rows went. It deletes in small transactions, so
    /// the WAL stays small (and the deletion works on a nearly full disk).
    pub fn prune_limits(&mut self, limits: Limits, now: i64) -> StoreResult<usize> {
        self.write_behind_now()?;
        let window_start = now - i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
        let mut total = 0;
        for (table, key, column, before) in [
            ("failures", "id", "at", window_start),
            ("lockouts", "kind, key", "until", now),
        ] {
            let sql = format!(
                "DELETE FROM {table} WHERE ({key}) IN \
                 (SELECT {key} FROM {table} WHERE {column} <= ?1 LIMIT {PRUNE_BATCH_ROWS})"
            );
            loop {
                let n = self.db.run(|c| c.execute(&sql, values![before]))?;
                total += n;
                if n < PRUNE_BATCH_ROWS {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Lifts a lock and its failures. True if there was a lock.
    pub fn unlock(&mut self, key: LimitKey<'_>) -> StoreResult<bool> {
        let (kind, name) = key.parts();
        let n = self.db.transaction(|tx| {
            let n = tx.execute(
                "DELETE FROM lockouts WHERE kind = ?1 AND key = ?2",
                values![kind, name],
            )?;
            clear_failures_in(tx, key)?;
            Ok(n)
        })?;
        self.forget_held_failures(key);
        Ok(n > 0)
    }

    /// The remote hosts `user` failed from since `since` (as the activity
    /// log tells), by name. Their locks are keyed by network: the caller
    /// maps each to its key (see `host_net`).
    pub fn hosts_failed_from(&self, user: &str, since: i64) -> StoreResult<Vec<String>> {
        self.write_behind_now()?;
        // The user's recent activity (the `(user, at)` index) only.
        let sql = format!(
            "SELECT DISTINCT rhost FROM activity
             WHERE \"user\" = ?1 AND at >= ?2 AND {FAILED_FROM_HOST} AND rhost IS NOT NULL
             ORDER BY rhost"
        );
        let rows = self.db.run(|c| c.query(&sql, values![user, since]))?;
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// The (user, remote host) pairs of the failures since `since`. Only
    /// the latest [`RECENT_EVENTS_SEARCHED`] events are looked at (there
    /// is no index by host), so the cost stays small in a flood.
    pub fn failures_from_hosts(&self, since: i64) -> StoreResult<Vec<(String, String)>> {
        self.write_behind_now()?;
        let sql = format!(
            "SELECT DISTINCT \"user\", rhost FROM (
                 SELECT \"user\", rhost, event FROM activity WHERE at >= ?1
                 ORDER BY at DESC LIMIT {RECENT_EVENTS_SEARCHED}) AS recent
             WHERE rhost IS NOT NULL AND \"user\" IS NOT NULL AND {FAILED_FROM_HOST}
             ORDER BY \"user\", rhost"
        );
        let rows = self.db.run(|c| c.query(&sql, values![since]))?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }

    /// How many accounts (locked by failures or by root) and how many
    /// remote hosts are locked at `now`.
    pub fn locks_in_force(&self, now: i64) -> StoreResult<(u64, u64)> {
        let row = self.db.run(|c| {
            c.query_one(
                "SELECT
                     (SELECT COUNT(*) FROM (
                         SELECT key FROM lockouts WHERE kind = 'account' AND until > ?1
                         UNION SELECT name FROM accounts WHERE locked = 1) AS locked),
                     (SELECT COUNT(*) FROM lockouts WHERE kind = 'host' AND until > ?1)",
                values![now],
            )
        })?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((count(row.get(0)?), count(row.get(1)?)))
    }

    /// The locks in force at `now`, by kind and name: locks from failures
    /// and root's account locks (one row when an account has both). At
    /// most `limit` of those after `after` (kind, name).
    pub fn locks(
        &self,
        now: i64,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<LockRow>> {
        let (kind, key) = after.unwrap_or(("", ""));
        // Each side gives at most a page after the cursor (the lockouts
        // over their primary key), then the two are merged.
        let rows = self.db.run(|c| {
            c.query(
                "SELECT kind, key, MAX(until), MAX(by_root) FROM (
                     SELECT * FROM (
                         SELECT kind, key, until, 0 AS by_root FROM lockouts
                         WHERE (kind, key) > (?2, ?3) AND until > ?1
                         ORDER BY kind, key LIMIT ?4) AS timed
                     UNION ALL
                     SELECT * FROM (
                         SELECT CAST('account' AS TEXT) AS kind, name AS key,
                                CAST(NULL AS BIGINT) AS until, 1 AS by_root
                         FROM accounts WHERE locked = 1 AND ('account', name) > (?2, ?3)
                         ORDER BY name LIMIT ?4) AS by_root_locks) AS merged
                 GROUP BY kind, key ORDER BY kind, key LIMIT ?4",
                values![now, kind, key, limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(LockRow {
                    kind: r.get(0)?,
                    key: r.get(1)?,
                    until: r.get(2)?,
                    by_root: r.get::<i64>(3)? != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    const LIMITS: Limits = Limits {
        max_failures: 3,
        window_seconds: 60,
        lock_seconds: 100,
    };

    #[test]
    fn reaching_the_limit_locks_until_the_lock_ends() {
        let (_dir, mut store) = test_store();
        let key = LimitKey::Account("ann");
        assert!(store.record_failure(&[key], LIMITS, 10).unwrap().is_empty());
        assert!(store.record_failure(&[key], LIMITS, 11).unwrap().is_empty());
        assert_eq!(store.record_failure(&[key], LIMITS, 12).unwrap(), vec![key]);
        assert_eq!(store.locked_until(key, 13).unwrap(), Some(112));
        assert_eq!(store.locked_until(key, 112).unwrap(), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let (_dir, mut store) = test_store();
        let key = LimitKey::Host("203.0.113.9");
        store.record_failure(&[key], LIMITS, 0).unwrap();
        store.record_failure(&[key], LIMITS, 1).unwrap();
        assert!(store
            .record_failure(&[key], LIMITS, 100)
            .unwrap()
            .is_empty());
        assert_eq!(store.locked_until(key, 100).unwrap(), None);
    }

    #[test]
    fn pruning_drops_old_failures_and_ended_locks_only() {
        let (_dir, mut store) = test_store();
        let locked = LimitKey::Account("ann");
        for t in 0..3 {
            store.record_failure(&[locked], LIMITS, t).unwrap();
        }
        store
            .record_failure(&[LimitKey::Host("a")], LIMITS, 10)
            .unwrap();
        store
            .record_failure(&[LimitKey::Host("b")], LIMITS, 90)
            .unwrap();
        // At 100: the failure at 10 is out of the window, the one at 90 is
        // not; the lock (until 102) has not ended.
        assert_eq!(store.prune_limits(LIMITS, 100).unwrap(), 1);
        assert_eq!(store.locked_until(locked, 100).unwrap(), Some(102));
        // At 200: the rest goes.
        assert_eq!(store.prune_limits(LIMITS, 200).unwrap(), 2);
    }

    fn failed(store: &mut Store, user: &str, host: &str, at: i64) {
        let event = crate::store::NewEvent {
            user: Some(user),
            event: crate::activity::EventKind::LoginFailure,
            service: Some("sshd"),
            rhost: Some(host),
            detail: "wrong verification code",
        };
        store.record_activity(&event, at).unwrap();
        store
            .record_failure(&[LimitKey::Host(host)], LIMITS, at)
            .unwrap();
    }

    #[test]
    fn the_hosts_a_user_failed_from_and_who_failed_from_hosts_are_found() {
        let (_dir, mut store) = test_store();
        for (t, user) in [(10, "ann"), (11, "bob"), (12, "bob")] {
            failed(&mut store, user, "203.0.113.7", t);
        }
        failed(&mut store, "ann", "198.51.100.1", 13);
        assert_eq!(
            store.hosts_failed_from("ann", 0).unwrap(),
            ["198.51.100.1", "203.0.113.7"]
        );
        assert_eq!(
            store.hosts_failed_from("ann", 13).unwrap(),
            ["198.51.100.1"]
        );
        assert!(store.hosts_failed_from("carol", 0).unwrap().is_empty());
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(u, h)| ((*u).to_owned(), (*h).to_owned()))
                .collect()
        };
        assert_eq!(
            store.failures_from_hosts(11).unwrap(),
            pairs(&[("ann", "198.51.100.1"), ("bob", "203.0.113.7")])
        );
    }

    #[test]
    fn locks_list_failure_locks_and_root_locks_once_each_in_pages() {
        let (_dir, mut store) = test_store();
        for t in 0..3 {
            store
                .record_failure(&[LimitKey::Account("ann"), LimitKey::Host("h1")], LIMITS, t)
                .unwrap();
        }
        store.add_account("ann", None, None, 0).unwrap();
        store.add_account("bob", None, None, 0).unwrap();
        store.set_locked("ann", true).unwrap();
        store.set_locked("bob", true).unwrap();
        let all = store.locks(5, None, 10).unwrap();
        let seen: Vec<_> = all
            .iter()
            .map(|l| (l.kind.as_str(), l.key.as_str(), l.until, l.by_root))
            .collect();
        assert_eq!(
            seen,
            [
                ("account", "ann", Some(102), true),
                ("account", "bob", None, true),
                ("host", "h1", Some(102), false)
            ]
        );
        assert_eq!(store.locks_in_force(5).unwrap(), (2, 1));
        assert_eq!(store.locks_in_force(200).unwrap(), (2, 0));
        let second = store.locks(5, Some(("account", "ann")), 1).unwrap();
        assert_eq!(second[0].key, "bob");
        // An ended lock is not listed.
        assert_eq!(store.locks(200, None, 10).unwrap().len(), 2);
    }

    #[test]
    fn unlock_lifts_the_lock() {
        let (_dir, mut store) = test_store();
        let key = LimitKey::Account("ann");
        for t in 0..3 {
            store.record_failure(&[key], LIMITS, t).unwrap();
        }
        assert!(store.unlock(key).unwrap());
        assert_eq!(store.locked_until(key, 5).unwrap(), None);
    }
}
