//! Accounts: a login name and what kauthd holds for it.

use kauth_proto::UserSummary;

use super::db::{values, Row};
use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub uid: Option<u32>,
    pub password_hash: Option<String>,
    pub locked: bool,
    pub created: i64,
}

const COLUMNS: &str = "id, name, uid, password_hash, locked, created";

fn from_row(row: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        uid: row.get(2)?,
        password_hash: row.get(3)?,
        locked: row.get(4)?,
        created: row.get(5)?,
    })
}

impl Store {
    pub fn add_account(
        &mut self,
        name: &str,
        uid: Option<u32>,
        password_hash: Option<&str>,
        now: i64,
    ) -> StoreResult<Account> {
        let result = self.db.run(|c| {
            c.execute(
                "INSERT INTO accounts (name, uid, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
                values![name, uid, password_hash, now],
            )
        });
        match result {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => return Err(StoreError::AlreadyExists),
            Err(e) => return Err(e),
        }
        self.account(name)?.ok_or(StoreError::NotFound)
    }

    pub fn delete_account(&mut self, name: &str) -> StoreResult<()> {
        let n = self
            .db
            .run(|c| c.execute("DELETE FROM accounts WHERE name = ?1", values![name]))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub fn account(&self, name: &str) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE name = ?1");
        self.db
            .run(|c| c.query_opt(&sql, values![name]))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    pub fn account_by_uid(&self, uid: u32) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE uid = ?1");
        self.db
            .run(|c| c.query_opt(&sql, values![uid]))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Every account, by id (for copying a store: `store migrate`).
    pub fn all_accounts(&self) -> StoreResult<Vec<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts ORDER BY id");
        self.db
            .run(|c| c.query(&sql, &[]))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// One page of `kauthctl user list`: at most `limit` accounts whose
    /// names sort after `after`, by name (the unique index on `name`).
    pub fn account_summaries(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<UserSummary>> {
        // Every name is at least one byte long, so all sort after "".
        let rows = self.db.run(|c| {
            c.query(
                "SELECT a.name, a.uid, a.password_hash IS NOT NULL, a.locked, a.created,
                        EXISTS (SELECT 1 FROM totp t WHERE t.account_id = a.id)
                 FROM accounts a WHERE a.name > ?1 ORDER BY a.name LIMIT ?2",
                values![after.unwrap_or(""), limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(UserSummary {
                    name: r.get(0)?,
                    uid: r.get(1)?,
                    has_password: r.get(2)?,
                    locked: r.get(3)?,
                    created: r.get(4)?,
                    two_factor: r.get(5)?,
                })
            })
            .collect()
    }

    pub fn count_accounts(&self) -> StoreResult<u64> {
        let n: i64 = self
            .db
            .run(|c| c.query_one("SELECT COUNT(*) FROM accounts", &[])?.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Sets (or replaces) the account's password hash.
    pub fn set_password_hash(&mut self, account_id: i64, hash: &str) -> StoreResult<()> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                values![account_id, hash],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replaces the hash only if it is still `old`: redoing a hash with new
    /// costs must not undo a password change made meanwhile.
    pub fn replace_password_hash(
        &mut self,
        account_id: i64,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE accounts SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
                values![account_id, old, new],
            )
        })?;
        Ok(n == 1)
    }

    pub fn set_locked(&mut self, name: &str, locked: bool) -> StoreResult<()> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE accounts SET locked = ?2 WHERE name = ?1",
                values![name, locked],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{test_store, StoreError};

    #[test]
    fn added_account_is_listed_and_counted() {
        let (_dir, mut store) = test_store();
        store.add_account("ann", Some(1000), None, 5).unwrap();
        let all = store.account_summaries(None, 10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "ann");
        assert_eq!(all[0].uid, Some(1000));
        assert_eq!(store.count_accounts().unwrap(), 1);
    }

    #[test]
    fn summaries_come_by_name_a_page_at_a_time() {
        let (_dir, mut store) = test_store();
        for name in ["cy", "ann", "bob", "dee"] {
            store.add_account(name, None, Some("h"), 5).unwrap();
        }
        let names = |after, limit| -> Vec<String> {
            let page = store.account_summaries(after, limit).unwrap();
            page.into_iter().map(|u| u.name).collect()
        };
        assert_eq!(names(None, 2), ["ann", "bob"]);
        assert_eq!(names(Some("bob"), 2), ["cy", "dee"]);
        assert_eq!(names(Some("dee"), 2), Vec::<String>::new());
        let first = &store.account_summaries(None, 1).unwrap()[0];
        assert!(first.has_password && !first.two_factor && !first.locked);
    }

    #[test]
    fn duplicate_name_is_refused() {
        let (_dir, mut store) = test_store();
        store.add_account("ann", None, None, 5).unwrap();
        let again = store.add_account("ann", None, None, 6);
        assert!(matches!(again, Err(StoreError::AlreadyExists)));
    }

    #[test]
    fn a_rehash_does_not_undo_a_newer_password() {
        let (_dir, mut store) = test_store();
        let id = store.add_account("ann", None, Some("h1"), 5).unwrap().id;
        store.set_password_hash(id, "h2").unwrap();
        assert!(!store.replace_password_hash(id, "h1", "h1-redone").unwrap());
        assert!(store.replace_password_hash(id, "h2", "h2-redone").unwrap());
        let hash = store.account("ann").unwrap().unwrap().password_hash;
        assert_eq!(hash.as_deref(), Some("h2-redone"));
        assert!(matches!(
            store.set_password_hash(9999, "x"),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn lock_and_delete_unknown_are_not_found() {
        let (_dir, mut store) = test_store();
        assert!(matches!(
            store.set_locked("nobody", true),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.delete_account("nobody"),
            Err(StoreError::NotFound)
        ));
    }
}
