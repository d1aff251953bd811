//! Who is asking: decided from the socket peer's credentials alone
//! (SO_PEERCRED), never from anything the client says; and which account
//! a request is about (their own, or any for root and PAM callers).

use kauth_proto::peer::PeerCred;
use kauth_proto::{ErrorCode, Response};

use crate::clock;
use crate::config::{CallerSpec, Config};
use crate::daemon::Daemon;
use crate::escape;
use crate::names;
use crate::server::api::error;
use crate::server::refusal_log;
use crate::store::{Account, StoreError};
use crate::unix_users;

/// The three classes of caller in the SPEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// uid 0: everything.
    Root,
    /// Listed in `[access] pam_callers` (e.g. the panel's service user):
    /// login conversations, sessions and self-service for any user.
    PamCaller,
    /// Any other local uid: self-service on its own account only.
    User,
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub role: Role,
    /// The local user name for `uid`, from `/etc/passwd`.
    pub name: Option<String>,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.role == Role::Root
    }

    /// Root or a listed PAM caller.
    pub fn is_privileged(&self) -> bool {
        matches!(self.role, Role::Root | Role::PamCaller)
    }

    /// Who did something, for activity details: the user name (`root`,
    /// `ann`), or `uid 1234` when /etc/passwd has none.
    pub fn by_whom(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("uid {}", self.uid),
        }
    }

    /// For log lines: `uid 1000 (ann)`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("uid {} ({name})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

pub fn classify(cred: PeerCred, config: &Config) -> Caller {
    let local = unix_users::user_by_uid(cred.uid);
    let role = if cred.uid == 0 {
        Role::Root
    } else if config
        .access
        .pam_callers
        .iter()
        .any(|spec| matches_spec(spec, cred, local.as_ref()))
    {
        Role::PamCaller
    } else {
        Role::User
    };
    Caller {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid,
        role,
        name: local.map(|u| u.name),
    }
}

/// A name in `pam_callers` is a user name if `/etc/passwd` has it, else a
/// group name (the peer is in it by primary gid or membership).
fn matches_spec(spec: &CallerSpec, cred: PeerCred, local: Option<&unix_users::UnixUser>) -> bool {
    match spec {
        CallerSpec::Uid(uid) => *uid == cred.uid,
        CallerSpec::Name(name) => {
            if let Some(user) = unix_users::user_by_name(name) {
                return user.uid == cred.uid;
            }
            match unix_users::group_by_name(name) {
                Some(group) => {
                    cred.gid == group.gid || local.is_some_and(|u| unix_users::is_member(u, &group))
                }
                None => false,
            }
        }
    }
}

/// The account a request is about: the caller's own (no `user`, or their
/// own name), or — for root and PAM callers — any named one. With
/// `create`, an account is made for a name that has none yet (a system
/// user enrolling from their shell needs no `user add`).
// The error side is the answer sent back as it is.
#[allow(clippy::result_large_err)]
pub fn target(
    daemon: &Daemon,
    caller: &Caller,
    user: Option<&str>,
    create: bool,
) -> Result<Account, Response> {
    if let Some(name) = user {
        // Before anything logs it.
        names::check_login_name(name)?;
    }
    let own = own_name(daemon, caller)?;
    let name = match user {
        None => own.ok_or_else(|| {
            error(
                ErrorCode::NotFound,
                format!("{} has no user name in /etc/passwd and no kauthd account; name one with --user", caller.describe()),
            )
        })?,
        Some(name) if own.as_deref() == Some(name) => name.to_owned(),
        Some(name) if caller.is_privileged() => name.to_owned(),
        Some(name) => {
            refusal_log::warn(
                caller,
                format_args!(
                    "refused a request for {} from {}: not their account",
                    escape::for_log(name),
                    caller.describe()
                ),
            );
            return Err(error(
                ErrorCode::Forbidden,
                format!("you may only manage your own account, not {name}"),
            ));
        }
    };
    if let Err(why) = names::check_login_name(&name) {
        return Err(Response::from(why));
    }
    let existing = daemon.store().account(&name)?;
    match existing {
        Some(account) => Ok(account),
        None if create => add_account(daemon, &name).map_err(Response::from),
        None => Err(error(
            ErrorCode::NotFound,
            format!("{name} has no kauthd account and no two-factor authentication"),
        )),
    }
}

/// A new account without a password for `name`, bound to the system
/// user's uid when there is one (unbound when another account holds it).
pub fn add_account(daemon: &Daemon, name: &str) -> Result<Account, StoreError> {
    let uid = unix_users::user_by_name(name).map(|u| u.uid);
    let mut store = daemon.store();
    match store.add_account(name, uid, None, clock::now()) {
        Err(StoreError::AlreadyExists) if uid.is_some() => {
            store.add_account(name, None, None, clock::now())
        }
        other => other,
    }
}

/// The caller's own login name: the account bound to their uid, else their
/// name in /etc/passwd.
#[allow(clippy::result_large_err)]
pub fn own_name(daemon: &Daemon, caller: &Caller) -> Result<Option<String>, Response> {
    let bound = daemon.store().account_by_uid(caller.uid)?;
    Ok(bound.map(|a| a.name).or_else(|| caller.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32) -> PeerCred {
        PeerCred {
            pid: 1,
            uid,
            gid: uid,
        }
    }

    #[test]
    fn uid_zero_is_root() {
        let c = classify(cred(0), &Config::default());
        assert_eq!(c.role, Role::Root);
    }

    #[test]
    fn unlisted_uid_is_an_ordinary_user() {
        let c = classify(cred(4242), &Config::default());
        assert_eq!(c.role, Role::User);
    }

    #[test]
    fn listed_uid_is_a_pam_caller() {
        let config = Config::parse("[access]\npam_callers = [4242]\n").unwrap();
        assert_eq!(classify(cred(4242), &config).role, Role::PamCaller);
        assert_eq!(classify(cred(4243), &config).role, Role::User);
    }
}
