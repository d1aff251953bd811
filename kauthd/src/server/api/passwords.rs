//! Passwords over the protocol: a change (users their own, giving the
//! current password; root and PAM callers anyone's, without it), reset
//! tokens (made by root and PAM callers, spent by whoever holds one). The
//! steps every way of setting a password shares are in
//! `passwords::change`.

// The error side of these helpers is the response sent back as it is.
#![allow(clippy::result_large_err)]

use kauth_proto::{ErrorCode, Response, Secret};

use super::{error, too_many_failures, Reply};
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::escape;
use crate::names;
use crate::passwords::argon2_pool::QueueKey;
use crate::passwords::change::{check_new_password, store_new_password};
use crate::passwords::hashing;
use crate::passwords::reset_token;
use crate::server::access::{target, Caller};
use crate::server::refusal_log;
use crate::sessions;
use crate::store::Account;
use crate::twofactor::code_check::{self, Attempt, Origin};

/// `PasswordChange`. Answers `Done`, or `SignedOut` with the ids of the
/// other sessions that were ended when `sign_out_others` is set.
pub fn change(
    daemon: &Daemon,
    caller: &Caller,
    user: Option<&str>,
    current: Option<&Secret>,
    new: &Secret,
    sign_out_others: bool,
) -> Response {
    let account = match target(daemon, caller, user, false) {
        Ok(account) => account,
        Err(Response::Error {
            code: ErrorCode::NotFound,
            ..
        }) => {
            return error(
                ErrorCode::NotFound,
                format!(
                    "{} has no kauthd account, so no kauthd password; root creates one with `kauthctl user add NAME --password-stdin`",
                    user.unwrap_or("this user")
                ),
            )
        }
        Err(response) => return response,
    };
    if !caller.is_privileged() {
        if let Err(response) = self_service_allowed(&account, current) {
            return response;
        }
    }
    if let Some(current) = current {
        if let Err(response) = check_current(daemon, caller, &account, current) {
            return response;
        }
    }
    if let Err(why) = check_new_password(daemon, &account.name, new, current) {
        return Response::from(why);
    }
    if let Err(e) = store_new_password(daemon, &account, new) {
        return Response::from(e);
    }
    let by = caller.describe();
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::PasswordChanged,
        &format!("by {by}"),
    );
    if !sign_out_others {
        return Response::Done;
    }
    let keep = sessions::session_of_process(daemon, caller.pid, &account.name);
    match sessions::sign_out_user(daemon, &account.name, keep.as_deref(), &by) {
        Ok(ids) => Response::SignedOut { ids, current: None },
        Err(e) => {
            log::error!("store error: {e}");
            error(
                ErrorCode::Internal,
                "the password was changed, but signing out the other sessions failed; see kauthd's log and use `kauthctl sessions sign-out --all`",
            )
        }
    }
}

/// What an ordinary user needs to change their own password.
fn self_service_allowed(account: &Account, current: Option<&Secret>) -> Result<(), Response> {
    if account.locked {
        return Err(error(
            ErrorCode::Refused,
            "your account is locked; ask the administrator",
        ));
    }
    if account.password_hash.is_none() {
        return Err(error(
            ErrorCode::Refused,
            format!(
                "{} has no kauthd password to change; ask root to set one with `kauthctl user passwd {}`",
                account.name, account.name
            ),
        ));
    }
    if current.is_none() {
        return Err(error(
            ErrorCode::Refused,
            "give your current password to change it (`kauthctl passwd` asks for it)",
        ));
    }
    Ok(())
}

/// The current password, checked under the failure rate limit.
fn check_current(
    daemon: &Daemon,
    caller: &Caller,
    account: &Account,
    current: &Secret,
) -> Result<(), Response> {
    let config = daemon.config();
    let hash = account.password_hash.as_deref();
    let origin = Origin::local(caller.uid);
    let outcome = code_check::attempt(daemon, &account.name, origin, |turn| {
        let right = hashing::verify_or_dummy(turn, current.expose(), hash, &config.password);
        Ok(right.then_some(()))
    });
    match outcome? {
        Attempt::Right(()) => return Ok(()),
        Attempt::Wrong => {}
        Attempt::Locked { until } => return Err(too_many_failures(until)),
    }
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::PasswordChangeFailure,
        "wrong current password",
    );
    Err(error(
        ErrorCode::Refused,
        match hash {
            Some(_) => "the current password is wrong; nothing was changed".to_owned(),
            None => format!(
                "{} has no kauthd password yet, so there is no current password to give; leave it out",
                account.name
            ),
        },
    ))
}

/// `ResetTokenCreate`: root and PAM callers (a panel's "forgot your
/// password?" mail).
pub fn create_reset_token(daemon: &Daemon, caller: &Caller, user: &str) -> Reply {
    if !caller.is_privileged() {
        refusal_log::warn(
            caller,
            format_args!(
                "refused a reset token for {} to {}: not root and not in [access] pam_callers",
                escape::for_log(user),
                caller.describe()
            ),
        );
        return Err(error(
            ErrorCode::Forbidden,
            format!(
                "only root and [access] pam_callers may create reset tokens (you are {}); to change your own password use `kauthctl passwd`",
                caller.describe()
            ),
        ));
    }
    names::check_login_name(user)?;
    let Some(account) = daemon.store().account(user)? else {
        return Err(error(
            ErrorCode::NotFound,
            format!("there is no account named {user}; `kauthctl user list` shows them"),
        ));
    };
    let token = reset_token::generate().map_err(|why| {
        log::error!("cannot make a reset token: {why}");
        error(
            ErrorCode::Internal,
            "kauthd could not make a token; see its log",
        )
    })?;
    let now = clock::now();
    let lifetime = i64::try_from(daemon.config().password.reset_token_seconds).unwrap_or(3600);
    let expires = now.saturating_add(lifetime);
    let digest = reset_token::digest(token.expose());
    daemon
        .store()
        .add_reset_token(account.id, &digest, now, expires)?;
    activity::event(
        daemon,
        Some(user),
        EventKind::ResetTokenCreated,
        &format!(
            "by {}; valid until {}",
            caller.describe(),
            clock::format_time(expires)
        ),
    );
    Ok(Response::ResetToken {
        user: user.to_owned(),
        token,
        expires,
    })
}

/// `PasswordReset`: whoever holds a valid token may set a new password.
pub fn reset(daemon: &Daemon, caller: &Caller, user: &str, token: &Secret, new: &Secret) -> Reply {
    let refused = || {
        refusal_log::warn(
            caller,
            format_args!(
                "password reset for {} refused to {}: unknown, used or expired token",
                escape::for_log(user),
                caller.describe()
            ),
        );
        error(
            ErrorCode::Refused,
            "the reset token is wrong, already used or expired; ask for a new one",
        )
    };
    if names::check_login_name(user).is_err() {
        return Err(refused());
    }
    let digest = reset_token::digest(token.expose());
    // A wrong token counts as a failure for the name, known or not.
    let outcome = code_check::attempt(daemon, user, Origin::local(caller.uid), |_| {
        let Some(account) = daemon.store().account(user)? else {
            return Ok(None);
        };
        let usable = daemon
            .store()
            .reset_token_usable(account.id, &digest, clock::now())?;
        Ok(usable.then_some(account))
    });
    let account = match outcome? {
        Attempt::Right(account) => account,
        Attempt::Wrong => return Err(refused()),
        Attempt::Locked { until } => return Err(too_many_failures(until)),
    };
    // A refused password leaves the token usable for a better one.
    check_new_password(daemon, user, new, None)?;
    let config = daemon.config();
    let key = QueueKey::Account(account.name.clone());
    let hash = hashing::hash(&key, new.expose(), &config.password).map_err(|why| {
        log::error!("cannot hash a password: {why}");
        error(
            ErrorCode::Internal,
            "kauthd could not hash the password; see its log",
        )
    })?;
    let reset = daemon
        .store()
        .reset_password(account.id, &digest, &hash, clock::now())?;
    if !reset {
        return Err(refused()); // spent meanwhile, or expired while hashing
    }
    activity::event(
        daemon,
        Some(user),
        EventKind::PasswordReset,
        &format!("with a reset token, by {}", caller.describe()),
    );
    Ok(Response::Done)
}

#[cfg(test)]
mod tests {
    use kauth_proto::{LoginMode, Outcome};

    use super::*;
    use crate::config::Config;
    use crate::passwords::argon2_pool::Turn;
    use crate::server::access::Role;
    use crate::server::api::login::{self, BeginArgs, Exchange};
    use crate::store::Store;

    const OLD: &str = "vq7-lantern-kettle-bramble";
    const NEW: &str = "ochre-tundra-pivot-marmalade";

    fn daemon(extra: &str) -> (tempfile::TempDir, Daemon) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n{extra}\n[policy]\nrequire = \"none\"\n"
        );
        let config = Config::parse(&text).unwrap();
        let store = Store::open(&dir.path().join("state"), crate::store::test_key()).unwrap();
        let daemon = Daemon::new(config, store, dir.path().join("kauthd.toml"));
        (dir, daemon)
    }

    fn add(daemon: &Daemon, name: &str, uid: Option<u32>, password: &str) -> Account {
        let key = QueueKey::Account(name.to_owned());
        let hash = hashing::hash(&key, password, &daemon.config().password).unwrap();
        daemon
            .store()
            .add_account(name, uid, Some(&hash), 0)
            .unwrap()
    }

    fn password_matches(password: &str, phc: &str) -> bool {
        hashing::verify(&Turn::new(QueueKey::Uid(0)), password, phc)
    }

    fn caller(role: Role, uid: u32) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: std::process::id() as i32,
            role,
            name: None,
        }
    }

    fn hash_of(daemon: &Daemon, name: &str) -> String {
        daemon
            .store()
            .account(name)
            .unwrap()
            .unwrap()
            .password_hash
            .unwrap()
    }

    // The handlers' answers, as the dispatch sends them.
    fn create_reset_token(daemon: &Daemon, caller: &Caller, user: &str) -> Response {
        crate::server::api::answer(super::create_reset_token(daemon, caller, user))
    }

    fn reset(
        daemon: &Daemon,
        caller: &Caller,
        user: &str,
        token: &Secret,
        new: &Secret,
    ) -> Response {
        crate::server::api::answer(super::reset(daemon, caller, user, token, new))
    }

    fn code(response: &Response) -> Option<ErrorCode> {
        match response {
            Response::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn login(daemon: &Daemon, user: &str, password: &str) -> bool {
        let mut slot = Exchange::default();
        let args = BeginArgs {
            user: user.to_owned(),
            service: "test".to_owned(),
            rhost: None,
            mode: LoginMode::Password,
            authtok: Some(Secret::from(password)),
            enroll_at_login: false,
            resumable: false,
        };
        let mut response = login::begin(daemon, &caller(Role::Root, 0), &mut slot, args);
        for _ in 0..4 {
            response = match response {
                Response::Finished { outcome } => return outcome == Outcome::Success,
                Response::Prompt { .. } => login::answer(daemon, &mut slot, &Secret::from("")),
                Response::Message { .. } => login::next(daemon, &mut slot),
                other => panic!("{other:?}"),
            };
        }
        panic!("no outcome");
    }

    #[test]
    fn a_successful_login_redoes_an_outdated_hash() {
        let (_dir, daemon) = daemon("");
        let older = crate::config::PasswordConfig {
            argon2_memory_kib: 128,
            ..daemon.config().password.clone()
        };
        let key = QueueKey::Account("ann".to_owned());
        let hash = hashing::hash(&key, OLD, &older).unwrap();
        daemon
            .store()
            .add_account("ann", None, Some(&hash), 0)
            .unwrap();
        assert!(!login(&daemon, "ann", "wrong password here"));
        assert_eq!(hash_of(&daemon, "ann"), hash);
        assert!(login(&daemon, "ann", OLD));
        let redone = hash_of(&daemon, "ann");
        assert!(redone.contains("m=64,"), "{redone}");
        assert!(password_matches(OLD, &redone));
        assert!(login(&daemon, "ann", OLD));
    }

    #[test]
    fn a_user_changes_only_their_own_password_and_gives_the_current_one() {
        let (_dir, daemon) = daemon("");
        add(&daemon, "ann", Some(4242), OLD);
        add(&daemon, "bob", Some(4243), OLD);
        let ann = caller(Role::User, 4242);
        let new = Secret::from(NEW);
        let r = change(&daemon, &ann, None, None, &new, false);
        assert_eq!(code(&r), Some(ErrorCode::Refused), "{r:?}");
        let wrong = Secret::from("not the password at all");
        let r = change(&daemon, &ann, None, Some(&wrong), &new, false);
        assert_eq!(code(&r), Some(ErrorCode::Refused), "{r:?}");
        let r = change(
            &daemon,
            &ann,
            Some("bob"),
            Some(&Secret::from(OLD)),
            &new,
            false,
        );
        assert_eq!(code(&r), Some(ErrorCode::Forbidden), "{r:?}");
        let r = change(&daemon, &ann, None, Some(&Secret::from(OLD)), &new, false);
        assert!(matches!(r, Response::Done), "{r:?}");
        assert!(password_matches(NEW, &hash_of(&daemon, "ann")));
        assert!(password_matches(OLD, &hash_of(&daemon, "bob")));
    }

    #[test]
    fn root_sets_a_password_without_the_current_one_but_not_a_weak_one() {
        let (_dir, daemon) = daemon("");
        add(&daemon, "ann", None, OLD);
        let root = caller(Role::Root, 0);
        let weak = Secret::from("password123");
        let r = change(&daemon, &root, Some("ann"), None, &weak, false);
        assert_eq!(code(&r), Some(ErrorCode::Invalid), "{r:?}");
        let r = change(&daemon, &root, Some("ann"), None, &Secret::from(NEW), false);
        assert!(matches!(r, Response::Done), "{r:?}");
        assert!(password_matches(NEW, &hash_of(&daemon, "ann")));
    }

    #[test]
    fn a_reset_token_is_made_by_privileged_callers_and_works_once() {
        let (_dir, daemon) = daemon("");
        add(&daemon, "ann", Some(4242), OLD);
        let r = create_reset_token(&daemon, &caller(Role::User, 4242), "ann");
        assert_eq!(code(&r), Some(ErrorCode::Forbidden), "{r:?}");
        let Response::ResetToken { token, expires, .. } =
            create_reset_token(&daemon, &caller(Role::PamCaller, 33), "ann")
        else {
            panic!("no token");
        };
        assert!(expires > clock::now() + 3500);
        let anyone = caller(Role::User, 4999);
        let weak = reset(
            &daemon,
            &anyone,
            "ann",
            &token,
            &Secret::from("password123"),
        );
        assert_eq!(code(&weak), Some(ErrorCode::Invalid), "{weak:?}");
        let r = reset(&daemon, &anyone, "bob", &token, &Secret::from(NEW));
        assert_eq!(code(&r), Some(ErrorCode::Refused), "{r:?}");
        let r = reset(&daemon, &anyone, "ann", &token, &Secret::from(NEW));
        assert!(matches!(r, Response::Done), "{r:?}");
        assert!(password_matches(NEW, &hash_of(&daemon, "ann")));
        let again = reset(&daemon, &anyone, "ann", &token, &Secret::from(OLD));
        assert_eq!(code(&again), Some(ErrorCode::Refused), "{again:?}");
        assert!(password_matches(NEW, &hash_of(&daemon, "ann")));
    }

    #[test]
    fn a_password_change_voids_pending_reset_tokens() {
        let (_dir, daemon) = daemon("");
        add(&daemon, "ann", None, OLD);
        let root = caller(Role::Root, 0);
        let Response::ResetToken { token, .. } = create_reset_token(&daemon, &root, "ann") else {
            panic!("no token");
        };
        let r = change(&daemon, &root, Some("ann"), None, &Secret::from(NEW), false);
        assert!(matches!(r, Response::Done), "{r:?}");
        let r = reset(&daemon, &root, "ann", &token, &Secret::from(OLD));
        assert_eq!(code(&r), Some(ErrorCode::Refused), "{r:?}");
    }
}
