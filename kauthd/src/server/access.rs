//! Who is asking: decided from the socket peer's credentials alone
//! (SO_PEERCRED), never from anything the client says.

use kauth_proto::peer::PeerCred;

use crate::config::{CallerSpec, Config};
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
