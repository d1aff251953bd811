//! The steps every way of setting a password shares (a change over the
//! protocol, the PAM `password` conversation, a reset token): whether the
//! new password may be used, storing it, and redoing an outdated hash
//! after a successful login.

use kauth_proto::{ErrorCode, Response, Secret};
use subtle::ConstantTimeEq;

use crate::daemon::Daemon;
use crate::error::Error;
use crate::passwords::argon2_pool::QueueKey;
use crate::passwords::{hashing, strength};
use crate::store::{Account, StoreError};

/// Why a new password could not be stored.
#[derive(Debug)]
pub enum StoreNewError {
    /// Hashing failed (already logged).
    Hash,
    Store(StoreError),
}

impl From<StoreNewError> for Response {
    fn from(e: StoreNewError) -> Response {
        match e {
            StoreNewError::Hash => Response::Error {
                code: ErrorCode::Internal,
                message: "kauthd could not hash the password; see its log".to_owned(),
            },
            StoreNewError::Store(e) => Response::from(e),
        }
    }
}

/// Whether `new` may become `user`'s password: the policy, and not the
/// current password again. The error is the reason, for the person.
pub fn check_new_password(
    daemon: &Daemon,
    user: &str,
    new: &Secret,
    current: Option<&Secret>,
) -> Result<(), Error> {
    strength::check(new.expose(), user, &daemon.config().password)?;
    let same =
        current.is_some_and(|c| bool::from(c.expose().as_bytes().ct_eq(new.expose().as_bytes())));
    if same {
        return Err(Error::invalid(
            "The new password is the same as the current one: choose another.",
        ));
    }
    Ok(())
}

/// Hashes and stores an accepted new password. Unused reset tokens of the
/// account stop working.
pub fn store_new_password(
    daemon: &Daemon,
    account: &Account,
    new: &Secret,
) -> Result<(), StoreNewError> {
    let config = daemon.config();
    let key = QueueKey::Account(account.name.clone());
    let hash = hashing::hash(&key, new.expose(), &config.password).map_err(|why| {
        log::error!("cannot hash a password: {why}");
        StoreNewError::Hash
    })?;
    let mut store = daemon.store();
    store
        .void_reset_tokens(account.id)
        .and_then(|_| store.set_password_hash(account.id, &hash))
        .map_err(StoreNewError::Store)
}

/// After a successful password check: redoes a hash made with another
/// cost than `[password]` asks for now. Failing here fails no login.
pub fn rehash_if_outdated(daemon: &Daemon, account: &Account, given: &Secret) {
    let config = daemon.config();
    let Some(old) = account.password_hash.as_deref() else {
        return;
    };
    if !hashing::needs_rehash(old, &config.password) {
        return;
    }
    let key = QueueKey::Account(account.name.clone());
    let new = match hashing::hash(&key, given.expose(), &config.password) {
        Ok(new) => new,
        Err(why) => {
            log::error!(
                "could not redo the password hash of {}: {why}",
                account.name
            );
            return;
        }
    };
    match daemon.store().replace_password_hash(account.id, old, &new) {
        Ok(true) => log::info!(
            "password hash of {} redone with the current [password] cost",
            account.name
        ),
        Ok(false) => {} // the password changed meanwhile
        Err(e) => log::error!(
            "could not store the redone password hash of {}: {e}",
            account.name
        ),
    }
}
