//! Locks: the list of account and host locks in force, lifting one
//! host's lock, and lifting the host locks a user failed from (with
//! `user unlock`). Root only.

use kauth_proto::{ErrorCode, LockInfo, Response};

use super::{error, paging, root_only, Reply};
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::host_net;
use crate::server::access::Caller;
use crate::store::{LimitKey, StoreError};
use crate::twofactor::code_check;

/// One page of the locks in force, by kind and name, after `after`.
pub fn list(daemon: &Daemon, caller: &Caller, after: Option<&str>, limit: Option<u32>) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "list locks"));
    }
    let after = match after {
        Some(cursor) => Some(cursor.split_once(':').ok_or_else(paging::bad_cursor)?),
        None => None,
    };
    let size = paging::page_size(limit, paging::MAX_ROWS);
    let rows = daemon.store().locks(clock::now(), after, size + 1)?;
    let locks = rows
        .into_iter()
        .map(|row| LockInfo {
            kind: row.kind,
            name: row.key,
            until: row.until,
            by_root: row.by_root,
        })
        .collect();
    let (locks, next) = paging::fit(locks, size, |l| format!("{}:{}", l.kind, l.name));
    Ok(Response::LockList { locks, next })
}

/// Lifts the lock on `host` and forgets its failures.
pub fn clear_host(daemon: &Daemon, caller: &Caller, host: &str) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "lift host locks"));
    }
    // An address inside a locked network lifts the network's lock.
    let key = host_net::limit_key(host, code_check::prefixes(&daemon.config()));
    if !daemon.store().unlock(LimitKey::Host(&key))? {
        return Err(error(
            ErrorCode::NotFound,
            format!("the host {key} is not locked; `kauthctl locks` lists the locks in force"),
        ));
    }
    activity::record(
        daemon,
        &crate::store::NewEvent {
            user: None,
            event: EventKind::Admin,
            service: None,
            rhost: Some(&key),
            detail: &format!("host lock lifted by {}", caller.by_whom()),
        },
    );
    Ok(Response::Done)
}

/// Lifts the locks of the hosts `user` failed from (those locked now whose
/// lock that user's failures may have helped set). Returns the hosts.
pub fn lift_hosts_failed_from(daemon: &Daemon, user: &str) -> Result<Vec<String>, StoreError> {
    let config = daemon.config();
    let now = clock::now();
    let since = now - code_check::limits(&config).lookback_seconds();
    let prefixes = code_check::prefixes(&config);
    let mut store = daemon.store();
    let mut keys: Vec<String> = store
        .hosts_failed_from(user, since)?
        .iter()
        .map(|host| host_net::limit_key(host, prefixes))
        .collect();
    keys.sort();
    keys.dedup();
    let mut lifted = Vec::new();
    for key in keys {
        let host = LimitKey::Host(&key);
        if store.locked_until(host, now)?.is_some() && store.unlock(host)? {
            lifted.push(key);
        }
    }
    Ok(lifted)
}
