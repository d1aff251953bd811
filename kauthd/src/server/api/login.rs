//! The login conversation (PAM `auth`) and the PAM `account` check. kauthd
//! decides every step; the module only relays. A denial never says which
//! factor failed nor whether the account exists.

use std::collections::VecDeque;

use kauth_proto::{ErrorCode, LoginMode, MessageStyle, Outcome, Response, Secret};

use super::error;
use super::password_change::ChangeConversation;
use super::passwords::rehash_if_outdated;
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::names;
use crate::passwords::hashing;
use crate::policy::{self, Decision, Subject};
use crate::server::access::Caller;
use crate::server::refusal_log;
use crate::store::{Account, StoreError};
use crate::twofactor::code_check::{self, Attempt, CodeOutcome, Factor};

pub const PASSWORD_PROMPT: &str = "Password: ";
pub const CODE_PROMPT: &str = "Verification code: ";

/// A conversation in progress on one connection.
#[derive(Debug)]
pub struct Conversation {
    user: String,
    service: String,
    rhost: Option<String>,
    /// The process running the login (SO_PEERCRED), for the account step.
    pid: i32,
    stage: Stage,
    /// The first factor passed (always true in `otp_only` mode).
    first_factor_ok: bool,
    /// Responses still to send, one per `continue`.
    queued: VecDeque<Response>,
    /// A PAM `password` change (mode `change_password`).
    change: Option<ChangeConversation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitPassword,
    AwaitCode,
    /// A password change: its answers go to `change`.
    ChangePassword,
    /// Only `continue` is expected (messages are queued), or it is over.
    Relaying,
}

/// What the caller gave to start a conversation.
#[derive(Debug)]
pub struct BeginArgs {
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub mode: LoginMode,
    pub authtok: Option<Secret>,
}

fn finished(outcome: Outcome) -> Response {
    Response::Finished { outcome }
}

fn prompt(message: &str) -> Response {
    Response::Prompt {
        echo: false,
        message: message.to_owned(),
    }
}

fn message(style: MessageStyle, text: String) -> Response {
    Response::Message { style, text }
}

/// Starts a conversation; returns its first step.
pub fn begin(
    daemon: &Daemon,
    caller: &Caller,
    slot: &mut Option<Conversation>,
    args: BeginArgs,
) -> Response {
    if !caller.is_privileged() {
        refusal_log::warn(
            caller,
            format_args!(
                "refused a login conversation from {}: not root and not in [access] pam_callers",
                caller.describe()
            ),
        );
        return error(
            ErrorCode::Forbidden,
            format!(
                "{} may not run login conversations; add it to [access] pam_callers",
                caller.describe()
            ),
        );
    }
    *slot = None;
    if names::check_login_name(&args.user).is_err() {
        log::info!("login refused for an invalid user name on {}", args.service);
        return finished(Outcome::Denied);
    }
    let mut conv = Conversation {
        user: args.user,
        service: args.service,
        rhost: args.rhost.filter(|h| !h.is_empty()),
        pid: caller.pid,
        stage: Stage::Relaying,
        first_factor_ok: true,
        queued: VecDeque::new(),
        change: None,
    };
    let first = match args.mode {
        LoginMode::OtpOnly => conv.after_first_factor(daemon),
        LoginMode::Password => match args.authtok {
            Some(password) => conv.password_answer(daemon, &password),
            None => {
                conv.stage = Stage::AwaitPassword;
                prompt(PASSWORD_PROMPT)
            }
        },
        LoginMode::ChangePassword => {
            let (change, steps) =
                ChangeConversation::start(daemon, &conv.user, &conv.service, conv.rhost.as_deref());
            conv.change = Some(change);
            conv.stage = Stage::ChangePassword;
            conv.relay(steps)
        }
    };
    *slot = Some(conv);
    first
}

/// The user's answer to the last prompt.
pub fn answer(daemon: &Daemon, slot: &mut Option<Conversation>, text: &Secret) -> Response {
    let Some(conv) = slot.as_mut() else {
        return error(
            ErrorCode::BadRequest,
            "no login conversation is in progress",
        );
    };
    let response = match conv.stage {
        Stage::AwaitPassword => conv.password_answer(daemon, text),
        Stage::AwaitCode => conv.code_answer(daemon, text),
        Stage::ChangePassword => conv.change_answer(daemon, text),
        Stage::Relaying => error(
            ErrorCode::BadRequest,
            "no question is waiting for an answer",
        ),
    };
    let over = conv.is_over(&response);
    if over {
        *slot = None;
    }
    response
}

/// The client showed a message; send the next step.
pub fn next(slot: &mut Option<Conversation>) -> Response {
    let Some(conv) = slot.as_mut() else {
        return error(
            ErrorCode::BadRequest,
            "no login conversation is in progress",
        );
    };
    let response = conv
        .queued
        .pop_front()
        .unwrap_or_else(|| error(ErrorCode::BadRequest, "nothing more to say"));
    let over = conv.is_over(&response);
    if over {
        *slot = None;
    }
    response
}

impl Conversation {
    /// The conversation ends with its `finished` step.
    fn is_over(&self, response: &Response) -> bool {
        matches!(response, Response::Finished { .. }) && self.queued.is_empty()
    }

    /// Sends the first of `steps` now and queues the rest, one per
    /// `continue`.
    fn relay(&mut self, steps: Vec<Response>) -> Response {
        let mut steps = steps.into_iter();
        let first = steps.next().unwrap_or_else(|| finished(Outcome::Denied));
        self.queued.extend(steps);
        first
    }

    fn change_answer(&mut self, daemon: &Daemon, text: &Secret) -> Response {
        let steps = match self.change.as_mut() {
            Some(change) => change.answer(daemon, text),
            None => vec![error(
                ErrorCode::BadRequest,
                "no password change is in progress",
            )],
        };
        self.relay(steps)
    }

    fn account(&self, daemon: &Daemon) -> Result<Option<Account>, StoreError> {
        daemon.store().account(&self.user)
    }

    /// The password, checked only when neither root's lock nor a rate
    /// limit lock holds: a locked attempt gets the same answer whatever
    /// the password, without an argon2 run.
    fn password_answer(&mut self, daemon: &Daemon, password: &Secret) -> Response {
        let config = daemon.config();
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return Response::from(e),
        };
        if let Some(refused) = self.refuse_if_root_locked(daemon, account.as_ref()) {
            return refused;
        }
        let hash = account.as_ref().and_then(|a| a.password_hash.as_deref());
        let outcome = code_check::attempt(daemon, &self.user, self.rhost.as_deref(), || {
            Ok(hashing::verify_or_dummy(password.expose(), hash, &config.password).then_some(()))
        });
        match outcome {
            Ok(Attempt::Right(())) => {
                self.first_factor_ok = true;
                if let Some(account) = account.as_ref() {
                    rehash_if_outdated(daemon, account, password);
                }
            }
            Ok(Attempt::Wrong) => {
                self.first_factor_ok = false;
                self.record(daemon, EventKind::LoginFailure, "wrong password");
            }
            Ok(Attempt::Locked { until }) => return self.refuse_locked(daemon, until),
            Err(e) => return Response::from(e),
        }
        self.after_first_factor(daemon)
    }

    /// Root locked the account: refused before any password is checked.
    fn refuse_if_root_locked(
        &self,
        daemon: &Daemon,
        account: Option<&Account>,
    ) -> Option<Response> {
        if !account.is_some_and(|a| a.locked) {
            return None;
        }
        self.record(daemon, EventKind::LoginFailure, "account locked by root");
        Some(finished(Outcome::Locked))
    }

    /// Locked after repeated failures (of this name or this host).
    fn refuse_locked(&self, daemon: &Daemon, until: i64) -> Response {
        let detail = format!(
            "locked after repeated failures until {}",
            clock::format_time(until)
        );
        self.record(daemon, EventKind::LoginFailure, &detail);
        finished(Outcome::Locked)
    }

    /// Decides what follows the first factor: a code prompt, a notice, or
    /// the end.
    fn after_first_factor(&mut self, daemon: &Daemon) -> Response {
        let config = daemon.config();
        if !self.first_factor_ok {
            // Same shape as a real attempt: ask for a code whenever one could
            // be asked here, then deny.
            let could_ask =
                config.policy.enabled && !config.policy.exempt_services.contains(&self.service);
            if could_ask {
                self.stage = Stage::AwaitCode;
                return prompt(CODE_PROMPT);
            }
            return finished(Outcome::Denied);
        }
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return Response::from(e),
        };
        if let Some(refused) = self.refuse_if_root_locked(daemon, account.as_ref()) {
            return refused;
        }
        match code_check::current_lock(daemon, &self.user, self.rhost.as_deref()) {
            Ok(Some(until)) => return self.refuse_locked(daemon, until),
            Ok(None) => {}
            Err(e) => return Response::from(e),
        }
        let decision = match decide(daemon, &self.user, account.as_ref(), &self.service) {
            Ok(decision) => decision,
            Err(e) => return Response::from(e),
        };
        match decision {
            Decision::AskCode { .. } => {
                self.stage = Stage::AwaitCode;
                prompt(CODE_PROMPT)
            }
            Decision::Skip { rule, notice } => {
                self.record(
                    daemon,
                    EventKind::LoginSuccess,
                    &format!("without a code ({rule})"),
                );
                self.stage = Stage::Relaying;
                match notice {
                    Some(text) => {
                        self.queued.push_back(finished(Outcome::Success));
                        message(MessageStyle::Info, text)
                    }
                    None => finished(Outcome::Success),
                }
            }
            Decision::Deny {
                rule,
                message: text,
            } => {
                self.record(
                    daemon,
                    EventKind::LoginFailure,
                    &format!("refused by the policy ({rule})"),
                );
                self.stage = Stage::Relaying;
                self.queued.push_back(finished(Outcome::Denied));
                message(MessageStyle::Error, text)
            }
        }
    }

    fn code_answer(&mut self, daemon: &Daemon, code: &Secret) -> Response {
        self.stage = Stage::Relaying;
        if !self.first_factor_ok {
            // The code is not even looked at after a wrong password.
            return finished(Outcome::Denied);
        }
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return Response::from(e),
        };
        let outcome = code_check::check(
            daemon,
            &self.user,
            account.as_ref(),
            self.rhost.as_deref(),
            code,
        );
        match outcome {
            Ok(CodeOutcome::Accepted(factor)) => {
                daemon.remember_code(self.pid, &self.user);
                let how = match factor {
                    Factor::Totp => "verification code".to_owned(),
                    Factor::Recovery { left } => format!("recovery code ({left} left)"),
                };
                self.record(daemon, EventKind::LoginSuccess, &format!("with a {how}"));
                if matches!(factor, Factor::Recovery { .. }) {
                    self.record(daemon, EventKind::RecoveryCodeUsed, &how);
                }
                match factor {
                    Factor::Recovery { left } => {
                        self.queued.push_back(finished(Outcome::Success));
                        message(
                            MessageStyle::Info,
                            format!(
                                "Recovery code accepted. You have {left} left; if you lost your authenticator, set up 2FA again with `kauthctl 2fa enroll`."
                            ),
                        )
                    }
                    Factor::Totp => finished(Outcome::Success),
                }
            }
            Ok(CodeOutcome::Rejected) => {
                self.record(daemon, EventKind::LoginFailure, "wrong verification code");
                finished(Outcome::Denied)
            }
            Ok(CodeOutcome::Locked { .. }) => {
                self.record(
                    daemon,
                    EventKind::LoginFailure,
                    "locked after repeated failures",
                );
                finished(Outcome::Locked)
            }
            Err(e) => Response::from(e),
        }
    }

    /// Records an event of this login (syslog and the activity table).
    fn record(&self, daemon: &Daemon, event: EventKind, detail: &str) {
        activity::login_event(
            daemon,
            &self.user,
            &self.service,
            self.rhost.as_deref(),
            event,
            detail,
        );
    }
}

/// The policy's decision for `name` on `service` now.
pub fn decide(
    daemon: &Daemon,
    name: &str,
    account: Option<&Account>,
    service: &str,
) -> Result<Decision, StoreError> {
    let config = daemon.config();
    let store = daemon.store();
    let enrolled = match account {
        Some(account) => store.has_totp(account.id)?,
        None => false,
    };
    let user_override = store.policy_override(name)?;
    drop(store);
    let subject = Subject {
        name,
        enrolled,
        user_override,
    };
    Ok(policy::decide(
        &config.policy,
        &subject,
        service,
        clock::now(),
    ))
}

/// The PAM `account` step: locked accounts and users who must have 2FA but
/// have none (after the deadline) are refused; a user who must give a code
/// is refused if this login's process did not give one.
pub fn account_check(daemon: &Daemon, caller: &Caller, user: &str, service: &str) -> Vec<Response> {
    if !caller.is_privileged() {
        return vec![error(
            ErrorCode::Forbidden,
            format!(
                "{} may not run account checks; add it to [access] pam_callers",
                caller.describe()
            ),
        )];
    }
    if names::check_login_name(user).is_err() {
        return vec![finished(Outcome::Denied)];
    }
    let account = match daemon.store().account(user) {
        Ok(account) => account,
        Err(e) => return vec![Response::from(e)],
    };
    if account.as_ref().is_some_and(|a| a.locked) {
        return vec![
            message(
                MessageStyle::Error,
                "This account is locked. Ask the administrator.".to_owned(),
            ),
            finished(Outcome::Locked),
        ];
    }
    match code_check::current_lock(daemon, user, None) {
        Ok(Some(_)) => return vec![finished(Outcome::Locked)],
        Ok(None) => {}
        Err(e) => return vec![Response::from(e)],
    }
    match decide(daemon, user, account.as_ref(), service) {
        Ok(Decision::Deny {
            rule,
            message: text,
        }) => {
            log::warn!("account check refused {user} on {service}: {rule}");
            vec![
                message(MessageStyle::Error, text),
                finished(Outcome::Denied),
            ]
        }
        Ok(Decision::AskCode { .. }) if !daemon.code_given_recently(caller.pid, user) => {
            log::warn!(
                "account check refused {user} on {service}: the login gave no verification code"
            );
            vec![
                message(
                    MessageStyle::Error,
                    "A verification code is required for this account.".to_owned(),
                ),
                finished(Outcome::Denied),
            ]
        }
        Ok(_) => vec![finished(Outcome::Success)],
        Err(e) => vec![Response::from(e)],
    }
}
