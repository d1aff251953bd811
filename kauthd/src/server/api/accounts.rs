//! Account administration: add, delete, list, lock, unlock. Root only.

use kauth_proto::{ErrorCode, Response, Secret};

use super::{error, paging, root_only};
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::names;
use crate::passwords::argon2_pool::QueueKey;
use crate::passwords::hashing;
use crate::passwords::strength;
use crate::server::access::Caller;
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
        return Response::from(why);
    }
    let config = daemon.config();
    let hash = match password {
        Some(password) => {
            if let Err(why) = strength::check(password.expose(), name, &config.password) {
                return Response::from(why);
            }
            let key = QueueKey::Account(name.to_owned());
            match hashing::hash(&key, password.expose(), &config.password) {
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
            activity::event(
                daemon,
                Some(name),
                EventKind::Admin,
                &format!("account added by {}", caller.describe()),
            );
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
        Err(e) => Response::from(e),
    }
}

pub fn delete(daemon: &Daemon, caller: &Caller, name: &str) -> Response {
    if !caller.is_root() {
        return root_only(caller, "delete accounts");
    }
    let deleted = daemon.store().delete_account(name);
    match deleted {
        Ok(()) => {
            activity::event(
                daemon,
                Some(name),
                EventKind::Admin,
                &format!("account deleted by {}", caller.describe()),
            );
            Response::Done
        }
        Err(StoreError::NotFound) => not_found(name),
        Err(e) => Response::from(e),
    }
}

/// One page of accounts, by name, after `after`.
pub fn list(daemon: &Daemon, caller: &Caller, after: Option<&str>, limit: Option<u32>) -> Response {
    if !caller.is_root() {
        return root_only(caller, "list accounts");
    }
    let size = paging::page_size(limit, paging::MAX_ROWS);
    let rows = daemon.store().account_summaries(after, size + 1);
    match rows {
        Ok(rows) => {
            let (users, next) = paging::fit(rows, size, |u| u.name.clone());
            Response::Users { users, next }
        }
        Err(e) => Response::from(e),
    }
}

pub fn set_locked(daemon: &Daemon, caller: &Caller, name: &str, locked: bool) -> Response {
    let verb = if locked { "lock" } else { "unlock" };
    if !caller.is_root() {
        return root_only(caller, &format!("{verb} accounts"));
    }
    // Unlocking also lifts a lock from too many failures, which a system
    // user without an account can have too.
    let (lifted, result) = {
        let mut store = daemon.store();
        let lifted = !locked && matches!(store.unlock(LimitKey::Account(name)), Ok(true));
        (lifted, store.set_locked(name, locked))
    };
    match result {
        Err(StoreError::NotFound) if lifted => {
            activity::event(
                daemon,
                Some(name),
                EventKind::Admin,
                &format!("failure lock lifted by {}", caller.describe()),
            );
            Response::Done
        }
        Ok(()) => {
            activity::event(
                daemon,
                Some(name),
                EventKind::Admin,
                &format!("account {verb}ed by {}", caller.describe()),
            );
            Response::Done
        }
        Err(StoreError::NotFound) => not_found(name),
        Err(e) => Response::from(e),
    }
}

fn not_found(name: &str) -> Response {
    error(
        ErrorCode::NotFound,
        format!("there is no account named {name}; `kauthctl user list` shows them"),
    )
}
