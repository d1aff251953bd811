//! Spending a code at a login: the spend, the cleared failure count and
//! the login's activity rows in one transaction, so a login costs one
//! commit (made durable by one shared sync before it is acknowledged).

use super::db::Exec;
use super::{activity, ratelimit, twofactor, LimitKey, NewEvent, Store, StoreResult};
use crate::activity::EventKind;

/// The code an accepted answer spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// A TOTP code: the replay guard moves to `counter` (only forward),
    /// `last_used` to now.
    Totp {
        account_id: i64,
        counter: u64,
        offset: i64,
    },
    /// A recovery code, marked used; `last_used` moves to now.
    Recovery { account_id: i64, code_id: i64 },
}

/// The activity rows of a login whose code was accepted: who, where, and
/// the events, given how many recovery codes are left (`None` for TOTP).
pub struct LoginEvents<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub events: &'a dyn Fn(Option<u64>) -> Vec<(EventKind, String)>,
}

impl std::fmt::Debug for LoginEvents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginEvents")
            .field("user", &self.user)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Spends a code if it is still unspent (a conditional update, so two
    /// connections can never both spend one code), and then, in the same
    /// transaction, forgets the failures counted against `clear` and stores
    /// `login`'s events. Returns `None` when the code was already spent
    /// (nothing is written), else the recovery codes left (`Some(None)`
    /// for TOTP).
    pub fn spend_code(
        &mut self,
        spend: Spend,
        clear: LimitKey<'_>,
        login: Option<&LoginEvents<'_>>,
        now: i64,
    ) -> StoreResult<Option<Option<u64>>> {
        let host = self.host_name.clone();
        self.db
            .transaction(|tx| {
                let Some(left) = spend_in(tx, spend, now)? else {
                    return Ok(None); // nothing was changed
                };
                // The failures held in memory go in first, so that the activity
                // keeps its order and the count cleared below is the whole count.
                self.write_behind.borrow().write(tx, &host)?;
                ratelimit::clear_failures_in(tx, clear)?;
                if let Some(login) = login {
                    for (event, detail) in (login.events)(left) {
                        let row = NewEvent {
                            user: Some(login.user),
                            event,
                            service: Some(login.service),
                            rhost: login.rhost,
                            detail: &detail,
                        };
                        activity::insert(tx, &row, &host, now)?;
                    }
                }
                Ok(Some(left))
            })
            .inspect(|left| {
                if left.is_some() {
                    self.write_behind.borrow_mut().clear();
                }
            })
    }
}

/// The conditional update of `spend`; `None` if the code was spent before.
fn spend_in(tx: &mut dyn Exec, spend: Spend, now: i64) -> StoreResult<Option<Option<u64>>> {
    match spend {
        Spend::Totp {
            account_id,
            counter,
            offset,
        } => {
            let n = twofactor::accept_totp_in(tx, account_id, counter, offset, now)?;
            Ok((n == 1).then_some(None))
        }
        Spend::Recovery {
            account_id,
            code_id,
        } => {
            if twofactor::spend_recovery_code_in(tx, code_id, now)? != 1 {
                return Ok(None);
            }
            twofactor::touch_last_used_in(tx, account_id, now)?;
            Ok(Some(Some(twofactor::recovery_codes_left_in(
                tx, account_id,
            )?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_store, NewTotp};
    use crate::twofactor::totp::TotpParams;

    fn login_success(left: Option<u64>) -> Vec<(EventKind, String)> {
        vec![(EventKind::LoginSuccess, format!("left {left:?}"))]
    }

    #[test]
    fn a_code_is_spent_once_with_its_cleared_failures_and_activity_row() {
        let (_dir, mut store) = test_store();
        let account = store.add_account("ann", None, None, 0).unwrap();
        let params = TotpParams::default();
        let new = NewTotp {
            secret: b"12345678901234567890",
            params: &params,
            now: 0,
            first_counter: None,
            skew_steps: None,
            codes: Some((b"saltsaltsaltsalt", &[[7; 32], [8; 32]])),
        };
        store.enable_totp(account.id, &new).unwrap();
        let key = LimitKey::Account("ann");
        let limits = crate::store::Limits {
            max_failures: 5,
            window_seconds: 60,
            lock_seconds: 60,
        };
        store.record_failure(&[key], limits, 10).unwrap();
        let login = LoginEvents {
            user: "ann",
            service: "sshd",
            rhost: None,
            events: &login_success,
        };
        let totp = Spend::Totp {
            account_id: account.id,
            counter: 100,
            offset: 0,
        };
        assert_eq!(
            store.spend_code(totp, key, Some(&login), 20).unwrap(),
            Some(None)
        );
        assert_eq!(store.totp(account.id).unwrap().unwrap().last_used, Some(20));
        // The failure was cleared: four more do not lock.
        for t in 0..4 {
            assert!(store
                .record_failure(&[key], limits, 30 + t)
                .unwrap()
                .is_empty());
        }
        // The same step again: nothing changes, nothing is recorded.
        let changes = store.db.total_changes();
        assert_eq!(store.spend_code(totp, key, Some(&login), 21).unwrap(), None);
        assert_eq!(store.db.total_changes(), changes);
        assert_eq!(store.activity(Some("ann"), 0, None, 10).unwrap().len(), 1);

        let code_id = store.unused_recovery_codes(account.id).unwrap()[0].id;
        let recovery = Spend::Recovery {
            account_id: account.id,
            code_id,
        };
        assert_eq!(
            store.spend_code(recovery, key, Some(&login), 22).unwrap(),
            Some(Some(1))
        );
        // A recovery-code login counts as a use of the second factor.
        assert_eq!(store.totp(account.id).unwrap().unwrap().last_used, Some(22));
        assert_eq!(
            store.spend_code(recovery, key, Some(&login), 23).unwrap(),
            None
        );
        let events = store.activity(Some("ann"), 0, None, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.detail, "left Some(1)");
        assert_eq!(events[0].event.service.as_deref(), Some("sshd"));
    }
}
