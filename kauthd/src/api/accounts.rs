//! Account administration: add, delete, list, lock, unlock. Root only.

use kauth_proto::{ErrorCode, Response, Secret, UserSummary};

use super::{error, internal, root_only};
use crate::access::Caller;
use crate::clock;
use crate::daemon::Daemon;
use crate::names;
use crate::password;
use crate::store::{LimitKey, StoreError};

pub fn add(
    daemon: &Daemon,
    caller: &Caller,
    name: &str,
    password: Option<Secret>,
    uid: Option<u32>,
) -> Response {
    if !caller.is_root() {
        return root_only(caller, "add accounts");
    }
    if let Err(why) = names::check_login_name(name) {
        return error(ErrorCode::Invalid, why);
    }
    let config = daemon.config();
    let hash = match password {
        Some(password) => {
            if let Err(why) = password::check_acceptable(password.expose(), &config.password) {
                return error(ErrorCode::Invalid, why);
            }
            match password::hash(password.expose(), &config.password) {
                Ok(hash) => Some(hash),
                Err(why) => {
                    log::error!("cannot hash a password: {why}");
                    return error(ErrorCode::Internal, "kauthd could not hash the password");
                }
            }
        }
        None => None,
    };
    let result = daemon
        .store()
        .add_account(name, uid, hash.as_deref(), clock::now());
    match result {
        Ok(_) => {
            log::info!("account {name} added by {}", caller.describe());
            Response::Done
        }
        Err(StoreError::AlreadyExists) => error(
            ErrorCode::AlreadyExists,
            match uid {
                Some(uid) => {
                    format!("an account named {name} or bound to uid {uid} already exists")
                }
                None => format!("an account named {name} already exists"),
            },
        ),
        Err(e) => internal(&e),
    }
}

pub fn delete(daemon: &Daemon, caller: &Caller, name: &str) -> Response {
    if !caller.is_root() {
        return root_only(caller, "delete accounts");
    }
    match daemon.store().delete_account(name) {
        Ok(()) => {
            log::info!("account {name} deleted by {}", caller.describe());
            Response::Done
        }
        Err(StoreError::NotFound) => not_found(name),
        Err(e) => internal(&e),
    }
}

pub fn list(daemon: &Daemon, caller: &Caller) -> Response {
    if !caller.is_root() {
        return root_only(caller, "list accounts");
    }
    let store = daemon.store();
    let result = store.accounts().and_then(|accounts| {
        accounts
            .into_iter()
            .map(|a| {
                Ok(UserSummary {
                    has_password: a.password_hash.is_some(),
                    two_factor: store.has_totp(a.id)?,
                    name: a.name,
                    uid: a.uid,
                    locked: a.locked,
                    created: a.created,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
    });
    match result {
        Ok(users) => Response::Users { users },
        Err(e) => internal(&e),
    }
}

pub fn set_locked(daemon: &Daemon, caller: &Caller, name: &str, locked: bool) -> Response {
    let verb = if locked { "lock" } else { "unlock" };
    if !caller.is_root() {
        return root_only(caller, &format!("{verb} accounts"));
    }
    let mut store = daemon.store();
    // Unlocking also lifts a lock from too many failures, which a system
    // user without an account can have too.
    let lifted = !locked && matches!(store.unlock(LimitKey::Account(name)), Ok(true));
    match store.set_locked(name, locked) {
        Err(StoreError::NotFound) if lifted => {
            log::info!("failure lock on {name} lifted by {}", caller.describe());
            Response::Done
        }
        Ok(()) => {
            log::info!("account {name} {verb}ed by {}", caller.describe());
            Response::Done
        }
        Err(StoreError::NotFound) => not_found(name),
        Err(e) => internal(&e),
    }
}

fn not_found(name: &str) -> Response {
    error(
        ErrorCode::NotFound,
        format!("there is no account named {name}; `kauthctl user list` shows them"),
    )
}
