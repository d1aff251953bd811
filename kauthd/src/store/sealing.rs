//! Which key seals the stored TOTP secrets, and re-sealing them all: the
//! plaintext rows of a database from before encryption at rest (at the
//! first start), or every row under a new key (`kauthctl rekey`).

use super::db::{values, Db};
use super::twofactor::{table_of, Sealed};
use super::{Store, StoreResult};
use crate::secrets::secret_box::{self, Purpose, SecretKey};

/// How many stored secrets a key id (`None`: plain text) seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: Option<u32>,
    pub secrets: u64,
}

const PURPOSES: [Purpose; 2] = [Purpose::Enrolled, Purpose::Pending];

impl Store {
    /// The id of the key this store seals with.
    pub fn key_id(&self) -> u32 {
        self.key.id()
    }

    /// The keys the stored secrets are sealed with, and how many each.
    pub fn key_use(&self) -> StoreResult<Vec<KeyUse>> {
        let mut uses: Vec<KeyUse> = Vec::new();
        for purpose in PURPOSES {
            let sql = format!(
                "SELECT key_id, COUNT(*) FROM {} GROUP BY key_id",
                table_of(purpose)
            );
            let rows = self.db.run(|c| c.query(&sql, &[]))?;
            for row in rows {
                let key_id: Option<u32> = row.get(0)?;
                let n = u64::try_from(row.get::<i64>(1)?).unwrap_or(0);
                match uses.iter_mut().find(|u| u.key_id == key_id) {
                    Some(u) => u.secrets += n,
                    None => uses.push(KeyUse { key_id, secrets: n }),
                }
            }
        }
        Ok(uses)
    }

    /// Seals the secrets still stored in plain text (a database from before
    /// encryption at rest), then, if any were or `scrub` is set, rewrites
    /// the file so that no plaintext is left in it (deleted rows included)
    /// or in its WAL (SQLite). Returns how many were sealed.
    pub(super) fn seal_plaintext_secrets(&mut self, scrub: bool) -> StoreResult<u64> {
        let key = self.key.clone();
        let sealed = self.reseal(&key, true)?;
        if let Db::Sqlite(conn) = &self.db {
            if sealed > 0 || scrub {
                conn.execute_batch("VACUUM;")?;
                conn.prepare_cached("PRAGMA wal_checkpoint(TRUNCATE)")?
                    .query_row([], |_| Ok(()))?;
            }
        }
        if sealed > 0 {
            log::info!("encrypted {sealed} TOTP secrets stored in plain text by an older kauthd");
        }
        Ok(sealed)
    }

    /// Re-seals every stored secret with `new` in one transaction, then
    /// seals with `new` from now on. Fails, changing nothing, if a secret
    /// does not open with the current key. Returns how many were re-sealed.
    pub fn reseal_all(&mut self, new: SecretKey) -> StoreResult<u64> {
        let n = self.reseal(&new, false)?;
        self.key = new;
        Ok(n)
    }

    /// From now on, open and seal with `key` (a rotation that committed
    /// before kauthd stopped).
    pub fn use_key(&mut self, key: SecretKey) {
        self.key = key;
    }

    fn reseal(&mut self, new: &SecretKey, only_plaintext: bool) -> StoreResult<u64> {
        let current = &self.key;
        self.db.transaction(|tx| {
            let mut count = 0;
            for purpose in PURPOSES {
                let table = table_of(purpose);
                let filter = if only_plaintext {
                    " WHERE key_id IS NULL"
                } else {
                    ""
                };
                let rows = tx.query(
                    &format!("SELECT secret, key_id, account_id FROM {table}{filter}"),
                    &[],
                )?;
                for row in rows {
                    let stored = Sealed::from_row(&row)?;
                    let account_id: i64 = row.get(2)?;
                    let plain = match stored.key_id {
                        None => stored.bytes,
                        Some(_) => secret_box::open(
                            current,
                            purpose,
                            account_id,
                            stored.key_id,
                            &stored.bytes,
                        )?,
                    };
                    let sealed = secret_box::seal(new, purpose, account_id, &plain)?;
                    tx.execute(
                        &format!(
                            "UPDATE {table} SET secret = ?2, key_id = ?3 WHERE account_id = ?1"
                        ),
                        values![account_id, &sealed, new.id()],
                    )?;
                    count += 1;
                }
            }
            Ok(count)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_key, test_store, DATABASE_FILE};
    use crate::twofactor::totp::TotpParams;

    const SECRET: &[u8] = b"rawsecret-0123456789";

    fn file_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
        ["", "-wal"].iter().any(|suffix| {
            let path = dir.join(format!("{DATABASE_FILE}{suffix}"));
            std::fs::read(path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
    }

    /// A database as kauthd wrote it before encryption at rest (schema
    /// version 4): ann's secret in plain text, and bob's deleted; with
    /// `ann_disabled`, ann's deleted too.
    fn old_database(dir: &std::path::Path, ann_disabled: bool) -> i64 {
        let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        for sql in &super::super::schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO accounts (id, name, created) VALUES (1, 'ann', 1), (2, 'bob', 1);",
        )
        .unwrap();
        for (id, secret) in [(1, SECRET), (2, DELETED)] {
            conn.execute(
                "INSERT INTO totp (account_id, secret, algorithm, digits, period, enabled_at)
                 VALUES (?1, ?2, 'SHA1', 6, 30, 1)",
                rusqlite::params![id, secret],
            )
            .unwrap();
        }
        let deleted = if ann_disabled { "1, 2" } else { "2" };
        conn.execute(
            &format!("DELETE FROM totp WHERE account_id IN ({deleted})"),
            [],
        )
        .unwrap();
        1
    }

    const DELETED: &[u8] = b"deletedsecret-987654";

    #[test]
    fn an_old_database_is_sealed_at_open_and_keeps_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let id = old_database(dir.path(), false);
        assert!(
            file_contains(dir.path(), SECRET),
            "the setup wrote no plaintext"
        );
        let key = test_key();
        let store = Store::open(dir.path(), key.clone()).unwrap();
        let cred = store.totp(id).unwrap().unwrap();
        assert_eq!(&cred.secret[..], SECRET);
        assert_eq!(
            store.key_use().unwrap(),
            vec![KeyUse {
                key_id: Some(key.id()),
                secrets: 1
            }]
        );
        for secret in [SECRET, DELETED] {
            assert!(
                !file_contains(dir.path(), secret),
                "plaintext left in the file"
            );
        }
    }

    #[test]
    fn an_old_database_with_only_deleted_secrets_is_scrubbed_too() {
        let dir = tempfile::tempdir().unwrap();
        old_database(dir.path(), true);
        assert!(
            file_contains(dir.path(), DELETED),
            "the setup wrote no plaintext"
        );
        let store = Store::open(dir.path(), test_key()).unwrap();
        assert!(store.key_use().unwrap().is_empty());
        for secret in [SECRET, DELETED] {
            assert!(
                !file_contains(dir.path(), secret),
                "plaintext left in the file"
            );
        }
    }

    #[test]
    fn resealing_moves_every_secret_to_the_new_key() {
        let (_dir, mut store) = test_store();
        let id = store.add_account("bob", None, None, 1).unwrap().id;
        let params = TotpParams::default();
        store.set_pending_totp(id, SECRET, &params, 1).unwrap();
        let new = test_key();
        assert_eq!(store.reseal_all(new.clone()).unwrap(), 1);
        assert_eq!(&store.pending_totp(id).unwrap().unwrap().secret[..], SECRET);
        assert_eq!(store.key_use().unwrap()[0].key_id, Some(new.id()));
    }
}
