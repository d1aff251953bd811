//! TOTP credentials, pending enrollments and recovery codes. Secrets are
//! sealed on the way in and opened on the way out (`secret_box`): the
//! database holds only ciphertext and the id of the key.

use zeroize::Zeroizing;

use super::db::{values, Exec, Row};
use super::{Store, StoreError, StoreResult};
use crate::secrets::secret_box::{self, Purpose};
use crate::twofactor::totp::TotpParams;

/// A confirmed TOTP credential.
#[derive(Debug, Clone)]
pub struct TotpCredential {
    pub secret: Zeroizing<Vec<u8>>,
    pub params: TotpParams,
    pub enabled_at: i64,
    pub last_counter: Option<u64>,
    pub last_used: Option<i64>,
    pub last_offset: Option<i64>,
    pub learned_offset: i64,
    pub skew_steps: Option<u32>,
}

/// What turning TOTP on stores.
#[derive(Debug, Clone, Copy)]
pub struct NewTotp<'a> {
    pub secret: &'a [u8],
    pub params: &'a TotpParams,
    pub now: i64,
    /// The step of a code already used (the confirming code), if any.
    pub first_counter: Option<u64>,
    /// A per-user window; `None`: `[totp] skew_steps`.
    pub skew_steps: Option<u32>,
    /// A new set of recovery codes: one salt and the hashes.
    pub codes: Option<(&'a [u8], &'a [[u8; 32]])>,
}

/// An enrollment waiting for its first code.
#[derive(Debug, Clone)]
pub struct PendingTotp {
    pub secret: Zeroizing<Vec<u8>>,
    pub params: TotpParams,
    pub created: i64,
}

/// One unused recovery code's stored form.
#[derive(Debug, Clone)]
pub struct StoredRecoveryCode {
    pub id: i64,
    pub salt: Vec<u8>,
    pub hash: [u8; 32],
}

/// A row of `kauthctl 2fa list`.
#[derive(Debug, Clone)]
pub struct TwoFactorRow {
    pub name: String,
    pub enabled_at: i64,
    pub last_used: Option<i64>,
    pub codes_left: u64,
}

/// One user's replay guard, for finding those a clock that ran ahead left
/// in the future.
#[derive(Debug, Clone)]
pub struct GuardRow {
    pub name: String,
    pub last_counter: u64,
    pub params: TotpParams,
    pub learned_offset: i64,
    pub skew_steps: Option<u32>,
}

/// A secret as stored: the sealed bytes (the wiped plaintext in a row from
/// before encryption at rest) and the id of the key that sealed them.
pub(super) struct Sealed {
    pub key_id: Option<u32>,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl Sealed {
    /// From columns 0 (`secret`) and 1 (`key_id`) of a row.
    pub fn from_row(row: &Row) -> StoreResult<Sealed> {
        Ok(Sealed {
            bytes: row.get(0)?,
            key_id: row.get(1)?,
        })
    }
}

/// The table that holds secrets of each purpose.
pub(super) fn table_of(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Enrolled => "totp",
        Purpose::Pending => "totp_pending",
    }
}

fn params_from(row: &Row, first: usize) -> StoreResult<TotpParams> {
    let algorithm: String = row.get(first)?;
    // An unknown value is a damaged row, never a silent SHA1.
    let algorithm = algorithm
        .parse()
        .map_err(|e| StoreError::BadRow(format!("column {first}: {e}")))?;
    Ok(TotpParams {
        algorithm,
        digits: row.get(first + 1)?,
        period: u64::try_from(row.get::<i64>(first + 2)?).unwrap_or(0),
    })
}

fn counter_from(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    pub fn totp(&self, account_id: i64) -> StoreResult<Option<TotpCredential>> {
        let row = self.db.run(|c| {
            c.query_opt(
                "SELECT secret, key_id, algorithm, digits, period, enabled_at, last_counter,
                        last_used, last_offset, learned_offset, skew_steps
                 FROM totp WHERE account_id = ?1",
                values![account_id],
            )
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed = Sealed::from_row(&row)?;
        Ok(Some(TotpCredential {
            secret: self.open_secret(Purpose::Enrolled, account_id, &sealed)?,
            params: params_from(&row, 2)?,
            enabled_at: row.get(5)?,
            last_counter: counter_from(row.get(6)?),
            last_used: row.get(7)?,
            last_offset: row.get(8)?,
            learned_offset: row.get(9)?,
            skew_steps: row.get(10)?,
        }))
    }

    /// Seals a secret for one row with the store's key.
    fn seal_secret(
        &self,
        purpose: Purpose,
        account_id: i64,
        secret: &[u8],
    ) -> StoreResult<Vec<u8>> {
        Ok(secret_box::seal(&self.key, purpose, account_id, secret)?)
    }

    fn open_secret(
        &self,
        purpose: Purpose,
        account_id: i64,
        sealed: &Sealed,
    ) -> StoreResult<Zeroizing<Vec<u8>>> {
        Ok(secret_box::open(
            &self.key,
            purpose,
            account_id,
            sealed.key_id,
            &sealed.bytes,
        )?)
    }

    /// Turns TOTP on (replacing any earlier credential and pending
    /// enrollment), and replaces the recovery codes if `new.codes` is given,
    /// in one transaction.
    pub fn enable_totp(&mut self, account_id: i64, new: &NewTotp<'_>) -> StoreResult<()> {
        let NewTotp {
            secret,
            params,
            now,
            first_counter,
            skew_steps,
            codes,
        } = *new;
        let sealed = self.seal_secret(Purpose::Enrolled, account_id, secret)?;
        let key_id = self.key.id();
        self.db.transaction(|tx| {
            delete_rows(tx, "totp", account_id)?;
            delete_rows(tx, "totp_pending", account_id)?;
            delete_rows(tx, "drift_observations", account_id)?;
            tx.execute(
                "INSERT INTO totp (account_id, secret, algorithm, digits, period, enabled_at,
                                   last_counter, last_used, skew_steps, key_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                values![
                    account_id,
                    &sealed,
                    params.algorithm.as_str(),
                    params.digits,
                    to_i64(params.period),
                    now,
                    first_counter.map(to_i64),
                    first_counter.map(|_| now),
                    skew_steps,
                    key_id
                ],
            )?;
            if let Some((salt, hashes)) = codes {
                replace_codes(tx, account_id, salt, hashes)?;
            }
            Ok(())
        })
    }

    /// Removes TOTP, any pending enrollment and all recovery codes.
    pub fn disable_totp(&mut self, account_id: i64) -> StoreResult<bool> {
        let n = self.db.transaction(|tx| {
            let n = delete_rows(tx, "totp", account_id)?;
            delete_rows(tx, "totp_pending", account_id)?;
            delete_rows(tx, "recovery_codes", account_id)?;
            delete_rows(tx, "drift_observations", account_id)?;
            Ok(n)
        })?;
        Ok(n > 0)
    }

    /// Puts the replay guard back to `counter` when it is beyond it (never
    /// forward). False when it was not beyond it.
    pub fn lower_guard(&mut self, account_id: i64, counter: u64) -> StoreResult<bool> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE totp SET last_counter = ?2 WHERE account_id = ?1 AND last_counter > ?2",
                values![account_id, to_i64(counter)],
            )
        })?;
        Ok(n == 1)
    }

    /// Every user's replay guard (users who never used a code have none).
    pub fn guards(&self) -> StoreResult<Vec<GuardRow>> {
        let rows = self.db.run(|c| {
            c.query(
                "SELECT a.name, t.last_counter, t.algorithm, t.digits, t.period, t.learned_offset,
                        t.skew_steps
                 FROM totp t JOIN accounts a ON a.id = t.account_id
                 WHERE t.last_counter IS NOT NULL ORDER BY a.name",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(GuardRow {
                    name: r.get(0)?,
                    last_counter: counter_from(r.get(1)?).unwrap_or(0),
                    params: params_from(r, 2)?,
                    learned_offset: r.get(5)?,
                    skew_steps: r.get(6)?,
                })
            })
            .collect()
    }

    pub fn set_learned_offset(&mut self, account_id: i64, offset: i64) -> StoreResult<()> {
        self.db.transaction(|tx| {
            tx.execute(
                "UPDATE totp SET learned_offset = ?2 WHERE account_id = ?1",
                values![account_id, offset],
            )?;
            delete_rows(tx, "drift_observations", account_id)?;
            Ok(())
        })
    }

    /// Keeps the newest few out-of-window observations per account.
    pub fn add_drift_observation(
        &mut self,
        account_id: i64,
        server_counter: u64,
        offset: i64,
    ) -> StoreResult<Vec<(u64, i64)>> {
        self.db.transaction(|tx| {
            tx.execute(
                "INSERT INTO drift_observations (account_id, server_counter, offset_steps)
                 VALUES (?1, ?2, ?3)",
                values![account_id, to_i64(server_counter), offset],
            )?;
            tx.execute(
                "DELETE FROM drift_observations WHERE account_id = ?1 AND id NOT IN
                   (SELECT id FROM drift_observations WHERE account_id = ?1 ORDER BY id DESC LIMIT 5)",
                values![account_id],
            )?;
            let rows = tx.query(
                "SELECT server_counter, offset_steps FROM drift_observations
                 WHERE account_id = ?1 ORDER BY id",
                values![account_id],
            )?;
            rows.iter()
                .map(|r| Ok((u64::try_from(r.get::<i64>(0)?).unwrap_or(0), r.get(1)?)))
                .collect()
        })
    }

    /// The offset of every user's last accepted code (for clock-drift checks).
    pub fn recent_offsets(&self, since: i64) -> StoreResult<Vec<i64>> {
        let rows = self.db.run(|c| {
            c.query(
                "SELECT last_offset FROM totp WHERE last_offset IS NOT NULL AND last_used >= ?1",
                values![since],
            )
        })?;
        rows.iter().map(|r| r.get(0)).collect()
    }

    pub fn pending_totp(&self, account_id: i64) -> StoreResult<Option<PendingTotp>> {
        let row = self.db.run(|c| {
            c.query_opt(
                "SELECT secret, key_id, algorithm, digits, period, created
                 FROM totp_pending WHERE account_id = ?1",
                values![account_id],
            )
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed = Sealed::from_row(&row)?;
        let params = params_from(&row, 2)?;
        Ok(Some(PendingTotp {
            secret: self.open_secret(Purpose::Pending, account_id, &sealed)?,
            params,
            created: row.get(5)?,
        }))
    }

    pub fn set_pending_totp(
        &mut self,
        account_id: i64,
        secret: &[u8],
        params: &TotpParams,
        now: i64,
    ) -> StoreResult<()> {
        let sealed = self.seal_secret(Purpose::Pending, account_id, secret)?;
        let key_id = self.key.id();
        self.db.run(|c| {
            c.execute(
                "INSERT INTO totp_pending (account_id, secret, algorithm, digits, period,
                                           created, key_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id) DO UPDATE SET
                     secret = excluded.secret, algorithm = excluded.algorithm,
                     digits = excluded.digits, period = excluded.period,
                     created = excluded.created, key_id = excluded.key_id, wrong_codes = 0",
                values![
                    account_id,
                    &sealed,
                    params.algorithm.as_str(),
                    params.digits,
                    to_i64(params.period),
                    now,
                    key_id
                ],
            )
        })?;
        Ok(())
    }

    /// Restarts the pending enrollment's time window at `now`, keeping its
    /// secret and its count of wrong codes.
    pub fn renew_pending_totp(&mut self, account_id: i64, now: i64) -> StoreResult<()> {
        self.db.run(|c| {
            c.execute(
                "UPDATE totp_pending SET created = ?2 WHERE account_id = ?1",
                values![account_id, now],
            )
        })?;
        Ok(())
    }

    pub fn clear_pending_totp(&mut self, account_id: i64) -> StoreResult<()> {
        self.db.run(|c| {
            c.execute(
                "DELETE FROM totp_pending WHERE account_id = ?1",
                values![account_id],
            )
        })?;
        Ok(())
    }

    /// Counts a wrong code given to confirm the pending enrollment; returns
    /// how many wrong codes it has had (0 if there is none pending).
    pub fn count_wrong_pending_code(&mut self, account_id: i64) -> StoreResult<u32> {
        let row = self.db.run(|c| {
            c.query_opt(
                "UPDATE totp_pending SET wrong_codes = wrong_codes + 1
                 WHERE account_id = ?1 RETURNING wrong_codes",
                values![account_id],
            )
        })?;
        Ok(match row {
            Some(row) => row.get(0)?,
            None => 0,
        })
    }

    pub fn unused_recovery_codes(&self, account_id: i64) -> StoreResult<Vec<StoredRecoveryCode>> {
        let rows = self.db.run(|c| {
            c.query(
                "SELECT id, salt, hash FROM recovery_codes
                 WHERE account_id = ?1 AND used_at IS NULL ORDER BY id",
                values![account_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                let hash: Vec<u8> = r.get(2)?;
                let mut fixed = [0u8; 32];
                if hash.len() == 32 {
                    fixed.copy_from_slice(&hash);
                }
                Ok(StoredRecoveryCode {
                    id: r.get(0)?,
                    salt: r.get(1)?,
                    hash: fixed,
                })
            })
            .collect()
    }

    /// Replaces the account's recovery codes with a new set.
    pub fn replace_recovery_codes(
        &mut self,
        account_id: i64,
        salt: &[u8],
        hashes: &[[u8; 32]],
    ) -> StoreResult<()> {
        self.db
            .transaction(|tx| replace_codes(tx, account_id, salt, hashes))
    }

    pub fn recovery_codes_left(&self, account_id: i64) -> StoreResult<u64> {
        self.db.run(|c| recovery_codes_left_in(c, account_id))
    }

    /// One page of `kauthctl 2fa list`: at most `limit` users with TOTP on
    /// whose names sort after `after`, by name.
    pub fn two_factor_rows(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<TwoFactorRow>> {
        // Every name is at least one byte long, so all sort after "".
        let rows = self.db.run(|c| {
            c.query(
                "SELECT a.name, t.enabled_at, t.last_used,
                        (SELECT COUNT(*) FROM recovery_codes r
                         WHERE r.account_id = a.id AND r.used_at IS NULL)
                 FROM accounts a JOIN totp t ON t.account_id = a.id
                 WHERE a.name > ?1 ORDER BY a.name LIMIT ?2",
                values![after.unwrap_or(""), limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(TwoFactorRow {
                    name: r.get(0)?,
                    enabled_at: r.get(1)?,
                    last_used: r.get(2)?,
                    codes_left: u64::try_from(r.get::<i64>(3)?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Whether the account has TOTP on.
    pub fn has_totp(&self, account_id: i64) -> StoreResult<bool> {
        let n: i64 = self.db.run(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM totp WHERE account_id = ?1",
                values![account_id],
            )?
            .get(0)
        })?;
        Ok(n > 0)
    }
}

/// Records an accepted code: the replay guard moves to `counter`, only
/// forward. Returns the rows changed: 0 (nothing changed) if a code at or
/// after `counter` was accepted before, on this server or any other one
/// sharing the database (the conditional update is the atomic step).
pub(super) fn accept_totp_in(
    conn: &mut dyn Exec,
    account_id: i64,
    counter: u64,
    offset: i64,
    now: i64,
) -> StoreResult<usize> {
    conn.execute(
        "UPDATE totp SET last_counter = ?2, last_used = ?3, last_offset = ?4
         WHERE account_id = ?1 AND (last_counter IS NULL OR last_counter < ?2)",
        values![account_id, to_i64(counter), now, offset],
    )
}

/// Marks a recovery code used; 0 rows changed if it was used before.
pub(super) fn spend_recovery_code_in(
    conn: &mut dyn Exec,
    code_id: i64,
    now: i64,
) -> StoreResult<usize> {
    conn.execute(
        "UPDATE recovery_codes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
        values![code_id, now],
    )
}

/// Sets when the account's second factor was last used (a recovery-code
/// login; a TOTP code sets it in [`accept_totp_in`]).
pub(super) fn touch_last_used_in(
    conn: &mut dyn Exec,
    account_id: i64,
    now: i64,
) -> StoreResult<usize> {
    conn.execute(
        "UPDATE totp SET last_used = ?2 WHERE account_id = ?1",
        values![account_id, now],
    )
}

pub(super) fn recovery_codes_left_in(conn: &mut dyn Exec, account_id: i64) -> StoreResult<u64> {
    let n: i64 = conn
        .query_one(
            "SELECT COUNT(*) FROM recovery_codes WHERE account_id = ?1 AND used_at IS NULL",
            values![account_id],
        )?
        .get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Deletes an account's rows from one of this module's tables.
fn delete_rows(tx: &mut dyn Exec, table: &str, account_id: i64) -> StoreResult<usize> {
    // `table` is always one of this file's constant names, never input.
    let sql = format!("DELETE FROM {table} WHERE account_id = ?1");
    tx.execute(&sql, values![account_id])
}

fn replace_codes(
    tx: &mut dyn Exec,
    account_id: i64,
    salt: &[u8],
    hashes: &[[u8; 32]],
) -> StoreResult<()> {
    delete_rows(tx, "recovery_codes", account_id)?;
    for hash in hashes {
        tx.execute(
            "INSERT INTO recovery_codes (account_id, salt, hash) VALUES (?1, ?2, ?3)",
            values![account_id, salt, &hash[..]],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn wrong_pending_codes_are_counted_until_a_new_enrollment_begins() {
        let (_dir, mut store) = test_store();
        let ann = store.add_account("ann", None, None, 0).unwrap();
        assert_eq!(store.count_wrong_pending_code(ann.id).unwrap(), 0);
        let params = TotpParams::default();
        store
            .set_pending_totp(ann.id, &[1; 20], &params, 10)
            .unwrap();
        assert_eq!(store.count_wrong_pending_code(ann.id).unwrap(), 1);
        assert_eq!(store.count_wrong_pending_code(ann.id).unwrap(), 2);
        store
            .set_pending_totp(ann.id, &[2; 20], &params, 20)
            .unwrap();
        assert_eq!(store.count_wrong_pending_code(ann.id).unwrap(), 1);
    }

    #[test]
    fn unknown_algorithm_in_a_row_is_a_store_error() {
        let (_dir, mut store) = test_store();
        let ann = store.add_account("ann", None, None, 0).unwrap();
        store
            .set_pending_totp(ann.id, &[1; 20], &TotpParams::default(), 10)
            .unwrap();
        store
            .db
            .run(|c| c.execute("UPDATE totp_pending SET algorithm = 'MD5'", &[]))
            .unwrap();
        assert!(matches!(
            store.pending_totp(ann.id),
            Err(crate::store::StoreError::BadRow(_))
        ));
    }
}
