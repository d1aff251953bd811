//! Password reset tokens. Only a SHA-256 of each token is stored (the
//! token has enough random bits that no salt or slow hash is needed), and
//! a token is spent in the same transaction as the password it sets, so
//! two requests cannot both use it.

use rusqlite::params;

use super::{Store, StoreResult};

impl Store {
    /// Stores a new token for the account. The account's earlier unused
    /// tokens stop working (the newest mail's link is the one that works)
    /// and spent or expired tokens of anyone are dropped.
    pub fn add_reset_token(
        &mut self,
        account_id: i64,
        token_hash: &[u8; 32],
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "DELETE FROM reset_tokens WHERE account_id = ?1 OR used IS NOT NULL OR expires <= ?2",
        )?
        .execute(params![account_id, now])?;
        tx.prepare_cached(
            "INSERT INTO reset_tokens (account_id, token_hash, created, expires)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![account_id, &token_hash[..], now, expires])?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the token belongs to the account and is unused and not
    /// expired. A cheap look before the new password is hashed; spending
    /// it checks again.
    pub fn reset_token_usable(
        &self,
        account_id: i64,
        token_hash: &[u8; 32],
        now: i64,
    ) -> StoreResult<bool> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM reset_tokens
             WHERE account_id = ?1 AND token_hash = ?2 AND used IS NULL AND expires > ?3",
            )?
            .query_row(params![account_id, &token_hash[..], now], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Spends the token and sets the account's password hash, in one
    /// transaction. False, with nothing changed, when the token is not the
    /// account's, already used or expired.
    pub fn reset_password(
        &mut self,
        account_id: i64,
        token_hash: &[u8; 32],
        new_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let tx = self.conn.transaction()?;
        let spent = tx
            .prepare_cached(
                "UPDATE reset_tokens SET used = ?3
             WHERE account_id = ?1 AND token_hash = ?2 AND used IS NULL AND expires > ?3",
            )?
            .execute(params![account_id, &token_hash[..], now])?;
        if spent != 1 {
            return Ok(false); // the transaction rolls back on drop
        }
        let updated = tx
            .prepare_cached("UPDATE accounts SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![account_id, new_hash])?;
        if updated != 1 {
            return Ok(false);
        }
        tx.prepare_cached("DELETE FROM reset_tokens WHERE account_id = ?1 AND used IS NULL")?
            .execute(params![account_id])?;
        tx.commit()?;
        Ok(true)
    }

    /// Voids the account's unused tokens (its password was just changed).
    pub fn void_reset_tokens(&mut self, account_id: i64) -> StoreResult<usize> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM reset_tokens WHERE account_id = ?1 AND used IS NULL")?
            .execute(params![account_id])?)
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
