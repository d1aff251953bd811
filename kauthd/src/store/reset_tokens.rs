//! Password reset tokens. Only a SHA-256 of each token is stored (the
//! token has enough random bits that no salt or slow hash is needed), and
//! a token is spent in the same transaction as the password it sets, so
//! two requests cannot both use it.

use super::db::values;

use super::{Store, StoreError, StoreResult};

impl Store {
    pub fn add_reset_token(
        &mut self,
        account_id: i64,
        token_hash: &[u8; 32],
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        self.db.transaction(|tx| {
            tx.execute(
                "DELETE FROM reset_tokens
                 WHERE account_id = ?1 OR used IS NOT NULL OR expires <= ?2",
                values![account_id, now],
            )?;
            tx.execute(
                "INSERT INTO reset_tokens (account_id, token_hash, created, expires)
                 VALUES (?1, ?2, ?3, ?4)",
                values![account_id, &token_hash[..], now, expires],
            )?;
            Ok(())
        })
    }

    pub fn reset_token_usable(
        &self,
        account_id: i64,
        token_hash: &[u8; 32],
        now: i64,
    ) -> StoreResult<bool> {
        let n: i64 = self.db.run(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM reset_tokens
                 WHERE account_id = ?1 AND token_hash = ?2 AND used IS NULL AND expires > ?3",
                values![account_id, &token_hash[..], now],
            )?
            .get(0)
        })?;
        Ok(n > 0)
    }

    pub fn reset_password(
        &mut self,
        account_id: i64,
        token_hash: &[u8; 32],
        new_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let done = self.db.transaction(|tx| {
            let spent = tx.execute(
                "UPDATE reset_tokens SET used = ?3
                 WHERE account_id = ?1 AND token_hash = ?2 AND used IS NULL AND expires > ?3",
                values![account_id, &token_hash[..], now],
            )?;
            if spent != 1 {
                return Err(StoreError::NotFound);
            }
            let updated = tx.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                values![account_id, new_hash],
            )?;
            if updated != 1 {
                // Rolls the spent token back too.
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "DELETE FROM reset_tokens WHERE account_id = ?1 AND used IS NULL",
                values![account_id],
            )?;
            Ok(())
        });
        match done {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn void_reset_tokens(&mut self, account_id: i64) -> StoreResult<usize> {
        self.db.run(|c| {
            c.execute(
                "DELETE FROM reset_tokens WHERE account_id = ?1 AND used IS NULL",
                values![account_id],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{test_store, Store};

    const TOKEN: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [8; 32];

    fn with_account() -> (tempfile::TempDir, Store, i64) {
        let (dir, mut store) = test_store();
        let id = store.add_account("ann", None, Some("old"), 0).unwrap().id;
        (dir, store, id)
    }

    fn hash_of(store: &Store) -> Option<String> {
        store.account("ann").unwrap().unwrap().password_hash
    }

    #[test]
    fn a_token_sets_the_password_once() {
        let (_dir, mut store, id) = with_account();
        store.add_reset_token(id, &TOKEN, 100, 200).unwrap();
        assert!(store.reset_token_usable(id, &TOKEN, 150).unwrap());
        assert!(store.reset_password(id, &TOKEN, "new", 150).unwrap());
        assert_eq!(hash_of(&store).as_deref(), Some("new"));
        assert!(!store.reset_token_usable(id, &TOKEN, 151).unwrap());
        assert!(!store.reset_password(id, &TOKEN, "newer", 151).unwrap());
        assert_eq!(hash_of(&store).as_deref(), Some("new"));
    }

    #[test]
    fn an_expired_or_unknown_token_changes_nothing() {
        let (_dir, mut store, id) = with_account();
        store.add_reset_token(id, &TOKEN, 100, 200).unwrap();
        assert!(!store.reset_token_usable(id, &TOKEN, 200).unwrap());
        assert!(!store.reset_password(id, &TOKEN, "new", 200).unwrap());
        assert!(!store.reset_password(id, &OTHER, "new", 150).unwrap());
        assert_eq!(hash_of(&store).as_deref(), Some("old"));
    }

    #[test]
    fn a_token_works_only_for_its_account() {
        let (_dir, mut store, id) = with_account();
        let bob = store.add_account("bob", None, None, 0).unwrap().id;
        store.add_reset_token(bob, &TOKEN, 100, 200).unwrap();
        assert!(!store.reset_password(id, &TOKEN, "new", 150).unwrap());
        assert_eq!(hash_of(&store).as_deref(), Some("old"));
    }

    #[test]
    fn a_newer_token_or_a_password_change_voids_older_tokens() {
        let (_dir, mut store, id) = with_account();
        store.add_reset_token(id, &TOKEN, 100, 200).unwrap();
        store.add_reset_token(id, &OTHER, 110, 210).unwrap();
        assert!(!store.reset_token_usable(id, &TOKEN, 150).unwrap());
        assert!(store.reset_token_usable(id, &OTHER, 150).unwrap());
        assert_eq!(store.void_reset_tokens(id).unwrap(), 1);
        assert!(!store.reset_token_usable(id, &OTHER, 150).unwrap());
    }
}
