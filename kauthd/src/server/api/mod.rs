//! Turns one request into one response, after checking that the caller
//! may make it. Each submodule serves one area of the protocol.

// Handlers' helpers return `Result<_, Response>`: the error side is the
// answer sent back as it is, so its size does not matter.
#![allow(clippy::result_large_err)]

mod accounts;
mod diagnostics;
mod keys;
mod locks;
pub mod login;
mod paging;
mod passwords;
mod policy;
mod sessions;
mod stats;
mod twofactor;

use kauth_proto::{ErrorCode, Request, Response};

use crate::daemon::Daemon;
use crate::host_net::Prefixes;
use crate::passwords::argon2_pool::QueueKey;
use crate::server::access::Caller;
use crate::server::client_fields;
use crate::server::refusal_log;
use crate::store::durability;

/// A handler written with `?`: store errors, `kauthd::Error`s and
/// refusals all leave early, and the error side is an answer too.
pub(crate) type Reply = Result<Response, Response>;

/// The answer a `Reply` gives, whichever side it is on.
pub(crate) fn answer(reply: Reply) -> Response {
    reply.unwrap_or_else(|refusal| refusal)
}

/// What a connection remembers between requests.
#[derive(Debug)]
pub struct ConnState {
    pub caller: Caller,
    /// The PAM requests' login conversation and queued steps.
    pam: login::Exchange,
}

impl ConnState {
    pub fn new(caller: Caller) -> ConnState {
        ConnState {
            caller,
            pam: login::Exchange::default(),
        }
    }

    /// Whether a login conversation is in progress on this connection.
    pub fn in_login_conversation(&self) -> bool {
        self.pam.in_conversation()
    }

    /// Whose turn the next request waits in for a worker: the network of
    /// the remote host of the login in progress or of the one `named_rhost`
    /// starts, else the connecting uid. Only root and PAM callers name remote hosts; a
    /// local user's requests all wait in their uid's turn.
    pub fn queue_key(
        &self,
        prefixes: Prefixes,
        named_rhost: impl FnOnce() -> Option<String>,
    ) -> QueueKey {
        if !self.caller.is_privileged() {
            return QueueKey::Uid(self.caller.uid);
        }
        match self.pam.rhost() {
            Some(rhost) => QueueKey::of(Some(rhost), self.caller.uid, prefixes),
            None => QueueKey::of(named_rhost().as_deref(), self.caller.uid, prefixes),
        }
    }
}

/// Answers one request. A request that changed the store is answered only
/// once its changes are durable (a group sync shared with the requests
/// waiting at the same time, see `store::durability`); if they cannot be
/// made durable, it is refused instead.
pub fn handle(daemon: &Daemon, state: &mut ConnState, request: Request) -> Response {
    durability::take_unsynced();
    let response = respond(daemon, state, request);
    if !durability::take_unsynced() {
        return response;
    }
    match daemon.durability().sync() {
        Ok(()) => response,
        Err(why) => error(ErrorCode::Internal, why.to_string()),
    }
}

fn respond(daemon: &Daemon, state: &mut ConnState, request: Request) -> Response {
    let caller = &state.caller;
    if let Err(why) = client_fields::check_request(&request) {
        return error(ErrorCode::BadRequest, format!("request refused: {why}"));
    }
    match request {
        Request::Hello { .. } => error(ErrorCode::BadRequest, "hello was already sent"),
        Request::Status => status(daemon),
        Request::UserAdd {
            name,
            password,
            uid,
        } => accounts::add(daemon, caller, &name, password, uid),
        Request::UserDel { name } => accounts::delete(daemon, caller, &name),
        Request::UserList { after, limit } => {
            accounts::list(daemon, caller, after.as_deref(), limit)
        }
        Request::UserLock { name } => accounts::set_locked(daemon, caller, &name, true),
        Request::UserUnlock { name } => accounts::set_locked(daemon, caller, &name, false),

        Request::Begin {
            user,
            service,
            rhost,
            mode,
            authtok,
            enroll_at_login,
            resumable,
            ..
        } => {
            let args = login::BeginArgs {
                user,
                service,
                rhost,
                mode,
                authtok,
                enroll_at_login,
                resumable,
            };
            login::begin(daemon, &state.caller, &mut state.pam, args)
        }
        Request::Answer { text } => login::answer(daemon, &mut state.pam, &text),
        Request::Continue => login::next(daemon, &mut state.pam),
        Request::AccountCheck { user, service } => {
            login::account_check(daemon, caller, &mut state.pam, &user, &service)
        }

        Request::TwoFactorStatus { user } => twofactor::status(daemon, caller, user.as_deref()),
        Request::EnrollBegin { user, proof } => answer(twofactor::enroll_begin(
            daemon,
            caller,
            user.as_deref(),
            &proof,
        )),
        Request::EnrollConfirm { user, code } => answer(twofactor::enroll_confirm(
            daemon,
            caller,
            user.as_deref(),
            &code,
        )),
        Request::TwoFactorDisable {
            users,
            proof,
            force,
        } => answer(twofactor::disable(daemon, caller, &users, &proof, force)),
        Request::RecoveryCodes {
            user,
            regenerate,
            proof,
        } => answer(twofactor::recovery_codes(
            daemon,
            caller,
            user.as_deref(),
            regenerate,
            &proof,
        )),
        Request::TwoFactorList { after, limit } => {
            twofactor::list(daemon, caller, after.as_deref(), limit)
        }
        Request::TwoFactorImport {
            user,
            secret,
            algorithm,
            digits,
            period,
        } => twofactor::import_secret(
            daemon,
            caller,
            &twofactor::ImportArgs {
                user: &user,
                secret: &secret,
                algorithm: algorithm.as_deref(),
                digits,
                period,
            },
        ),
        Request::ImportGoogleAuthenticator { user, contents } => {
            twofactor::import_google_authenticator(daemon, caller, &user, &contents)
        }
        Request::PolicyShow { user } => answer(policy::show(daemon, caller, user.as_deref())),
        Request::PolicySet { user, rule } => policy::set(daemon, caller, &user, rule.as_deref()),
        Request::SessionOpen {
            user,
            service,
            rhost,
            tty,
            client,
        } => sessions::open(
            daemon,
            caller,
            &user,
            &service,
            rhost.as_deref(),
            tty.as_deref(),
            client.as_deref(),
        ),
        Request::SessionClose { id } => sessions::close(daemon, caller, &id),
        Request::Sessions { user, after, limit } => answer(sessions::list(
            daemon,
            caller,
            user.as_deref(),
            after.as_deref(),
            limit,
        )),
        Request::SignOut {
            id,
            user,
            all,
            dry_run,
        } => answer(sessions::sign_out(
            daemon,
            caller,
            &sessions::SignOutArgs {
                id: id.as_deref(),
                user: user.as_deref(),
                all,
                dry_run,
            },
        )),
        Request::SessionCheck { id } => answer(sessions::check(daemon, caller, &id)),
        Request::Activity {
            user,
            since,
            limit,
            after,
        } => answer(sessions::activity(
            daemon,
            caller,
            &sessions::ActivityArgs {
                user: user.as_deref(),
                since,
                limit,
                after: after.as_deref(),
            },
        )),
        Request::Diagnostics => answer(diagnostics::report(daemon, caller)),
        Request::PasswordChange {
            user,
            current,
            new,
            sign_out_others,
        } => passwords::change(
            daemon,
            caller,
            user.as_deref(),
            current.as_ref(),
            &new,
            sign_out_others,
        ),
        Request::ResetTokenCreate { user } => {
            answer(passwords::create_reset_token(daemon, caller, &user))
        }
        Request::PasswordReset { user, token, new } => {
            answer(passwords::reset(daemon, caller, &user, &token, &new))
        }
        Request::TwoFactorResetGuard { user } => {
            answer(twofactor::reset_guard(daemon, caller, &user))
        }
        Request::Rekey => keys::rekey(daemon, caller),
        Request::Locks { after, limit } => {
            answer(locks::list(daemon, caller, after.as_deref(), limit))
        }
        Request::LockClear { host } => answer(locks::clear_host(daemon, caller, &host)),
        Request::Resume { continuation, text } => {
            login::resume(daemon, &state.caller, &mut state.pam, &continuation, &text)
        }
        Request::Stats => answer(stats::report(daemon, caller)),
    }
}

fn status(daemon: &Daemon) -> Response {
    match daemon.store().count_accounts() {
        Ok(accounts) => Response::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: daemon.started.elapsed().as_secs(),
            accounts,
        },
        Err(e) => Response::from(e),
    }
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

/// The standard refusal for a request that needs root.
pub(crate) fn root_only(caller: &Caller, what: &str) -> Response {
    refusal_log::warn(
        caller,
        format_args!("refused {what} for {}: root only", caller.describe()),
    );
    error(
        ErrorCode::Forbidden,
        format!(
            "only root may {what} (you are {}); run the command as root",
            caller.describe()
        ),
    )
}

/// The refusal while a rate-limit lock holds (nothing was checked).
pub(crate) fn too_many_failures(until: i64) -> Response {
    error(
        ErrorCode::Refused,
        format!(
            "too many failed attempts: nothing was checked; try again after {} (root can lift the lock with `kauthctl user unlock NAME`)",
            crate::clock::format_time(until)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::access::Role;

    fn state(uid: u32, role: Role) -> ConnState {
        ConnState::new(Caller {
            uid,
            gid: uid,
            pid: 1,
            role,
            name: None,
        })
    }

    const PREFIXES: Prefixes = Prefixes { ipv4: 32, ipv6: 64 };

    fn named() -> Option<String> {
        Some("203.0.113.9".to_owned())
    }

    #[test]
    fn a_pam_callers_login_waits_in_its_remote_hosts_turn() {
        let key = state(0, Role::Root).queue_key(PREFIXES, named);
        assert_eq!(key, QueueKey::Host("203.0.113.9".to_owned()));
        let key = state(0, Role::Root).queue_key(PREFIXES, || None);
        assert_eq!(key, QueueKey::Uid(0));
    }

    #[test]
    fn a_local_user_cannot_pick_a_turn_by_naming_a_host() {
        let key = state(1000, Role::User).queue_key(PREFIXES, named);
        assert_eq!(key, QueueKey::Uid(1000));
    }
}
