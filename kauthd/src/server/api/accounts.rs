//! Account administration: add, delete, list, lock, unlock. Root only.

use kauth_proto::{ErrorCode, Response, Secret};

use super::{error, locks, paging, root_only};
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
                &format!("account added by {}", caller.by_whom()),
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
                &format!("account deleted by {}", caller.by_whom()),
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
    if !locked {
        return unlock(daemon, caller, name);
    }
    let result = daemon.store().set_locked(name, true);
    match result {
        Ok(()) => {
            activity::event(
                daemon,
                Some(name),
                EventKind::Admin,
                &format!("account locked by {}", caller.by_whom()),
            );
            Response::Done
        }
        Err(StoreError::NotFound) => not_found(name),
        Err(e) => Response::from(e),
    }
}

/// Lifts root's lock, the lock from too many failures (which a system user
/// without an account can have too), and the locks of the remote hosts
/// the user failed from: all that stops the user logging in.
fn unlock(daemon: &Daemon, caller: &Caller, name: &str) -> Response {
    if let Err(why) = names::check_login_name(name) {
        return Response::from(why);
    }
    let lifted = (|| {
        let failure_lock = daemon.store().unlock(LimitKey::Account(name))?;
        // Bound first: the store guard must be dropped before the next call.
        let account = daemon.store().account(name)?;
        let root_lock = match account {
            Some(account) => {
                daemon.store().set_locked(name, false)?;
                Some(account.locked)
            }
            None => None,
        };
        let hosts = locks::lift_hosts_failed_from(daemon, name)?;
        Ok::<_, StoreError>((failure_lock, root_lock, hosts))
    })();
    let (failure_lock, root_lock, hosts) = match lifted {
        Ok(lifted) => lifted,
        Err(e) => return Response::from(e),
    };
    if root_lock.is_none() && !failure_lock && hosts.is_empty() {
        return not_found(name);
    }
    let mut detail = format!("account unlocked by {}", caller.by_whom());
    if !hosts.is_empty() {
        detail.push_str(&format!(
            "; lifted the locks on the hosts it failed from: {}",
            hosts.join(", ")
        ));
    }
    activity::event(daemon, Some(name), EventKind::Admin, &detail);
    Response::Unlocked {
        user: name.to_owned(),
        account: failure_lock || root_lock == Some(true),
        hosts,
    }
}

fn not_found(name: &str) -> Response {
    error(
        ErrorCode::NotFound,
        format!("there is no account named {name}; `kauthctl user list` shows them"),
    )
}
