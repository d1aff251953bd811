//! Failed attempts and the temporary locks they lead to, per account and
//! per remote host.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreResult};

/// What is being counted: an account name or a remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey<'a> {
    Account(&'a str),
    Host(&'a str),
}

impl LimitKey<'_> {
    fn parts(&self) -> (&'static str, &str) {
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

/// Forgets the failures counted against `key`.
pub(super) fn clear_failures_in(conn: &Connection, key: LimitKey<'_>) -> rusqlite::Result<()> {
    let (kind, name) = key.parts();
    conn.execute(
        "DELETE FROM failures WHERE kind = ?1 AND key = ?2",
        params![kind, name],
    )?;
    Ok(())
}

/// Rows deleted per transaction when pruning.
const PRUNE_BATCH_ROWS: usize = 500;

impl Store {
    /// When the lock on `key` ends, if it is locked now.
    pub fn locked_until(&self, key: LimitKey<'_>, now: i64) -> StoreResult<Option<i64>> {
        let (kind, key) = key.parts();
        Ok(self
            .conn
            .query_row(
                "SELECT until FROM lockouts WHERE kind = ?1 AND key = ?2 AND until > ?3",
                params![kind, key, now],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Counts a failure against each key, in one transaction; a key that
    /// reaches the limit within the window is locked. Returns the keys that
    /// became locked.
    pub fn record_failure<'a>(
        &mut self,
        keys: &[LimitKey<'a>],
        limits: Limits,
        now: i64,
    ) -> StoreResult<Vec<LimitKey<'a>>> {
        let window_start = now - i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
        let until = now + i64::try_from(limits.lock_seconds).unwrap_or(i64::MAX / 2);
        let tx = self.conn.transaction()?;
        let mut locked = Vec::new();
        for key in keys {
            let (kind, name) = key.parts();
            tx.execute(
                "DELETE FROM failures WHERE kind = ?1 AND key = ?2 AND at <= ?3",
                params![kind, name, window_start],
            )?;
            tx.execute(
                "INSERT INTO failures (kind, key, at) VALUES (?1, ?2, ?3)",
                params![kind, name, now],
            )?;
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM failures WHERE kind = ?1 AND key = ?2",
                params![kind, name],
                |r| r.get(0),
            )?;
            if count >= i64::from(limits.max_failures) {
                tx.execute(
                    "INSERT OR REPLACE INTO lockouts (kind, key, until) VALUES (?1, ?2, ?3)",
                    params![kind, name, until],
                )?;
                tx.execute(
                    "DELETE FROM failures WHERE kind = ?1 AND key = ?2",
                    params![kind, name],
                )?;
                locked.push(*key);
            }
        }
        tx.commit()?;
        Ok(locked)
    }

    /// Forgets the failures counted against `key` (after a success).
    pub fn clear_failures(&mut self, key: LimitKey<'_>) -> StoreResult<()> {
        Ok(clear_failures_in(&self.conn, key)?)
    }

    /// Deletes failures older than the window and locks that have ended;
    /// returns how many rows went. It deletes in small transactions, so
    /// the WAL stays small (and the deletion works on a nearly full disk).
    pub fn prune_limits(&mut self, limits: Limits, now: i64) -> StoreResult<usize> {
        let window_start = now - i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
        let mut total = 0;
        for (table, column, before) in
            [("failures", "at", window_start), ("lockouts", "until", now)]
        {
            let sql = format!(
                "DELETE FROM {table} WHERE rowid IN \
                 (SELECT rowid FROM {table} WHERE {column} <= ?1 LIMIT {PRUNE_BATCH_ROWS})"
            );
            loop {
                let n = self.conn.execute(&sql, params![before])?;
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
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM lockouts WHERE kind = ?1 AND key = ?2",
            params![kind, name],
        )?;
        tx.execute(
            "DELETE FROM failures WHERE kind = ?1 AND key = ?2",
            params![kind, name],
        )?;
        tx.commit()?;
        Ok(n > 0)
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
