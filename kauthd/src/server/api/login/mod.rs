//! The login conversation (PAM `auth`) and the PAM `account` check. kauthd
//! decides every step; the module only relays. A denial never says which
//! factor failed nor whether the account exists.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kauth_proto::{ErrorCode, LoginMode, MessageStyle, Outcome, Response, Secret};

mod enroll;
mod parked;
mod password_change;

pub use parked::ParkedLogins;

use enroll::LoginEnrollment;
use password_change::ChangeConversation;

use super::error;
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::escape;
use crate::login_texts;
use crate::names;
use crate::passwords::change::rehash_if_outdated;
use crate::passwords::hashing;
use crate::passwords::reset_token;
use crate::policy::{self, AccountVerdict, Decision};
use crate::server::access::Caller;
use crate::server::refusal_log;
use crate::stats::{self, CodeRefusal};
use crate::store::{Account, StoreError};
use crate::twofactor::code_check::{self, Attempt, CodeOutcome, Factor, Origin, Rejection};

pub const PASSWORD_PROMPT: &str = "Password: ";
pub const CODE_PROMPT: &str = "Verification code: ";
/// The answer to a `resume` whose token continues nothing: the same
/// whether it was used, expired, unknown or another caller's.
pub const RESUME_NOT_FOUND: &str = "that sign-in has expired or was already used; sign in again";

/// After this many failures of a name in a row, a wrong code gets a hint
/// about the phone's clock.
const HINT_AFTER_FAILURES: u32 = 2;

/// A conversation in progress on one connection.
#[derive(Debug)]
struct Conversation {
    user: String,
    service: String,
    rhost: Option<String>,
    /// The process running the login (SO_PEERCRED), for the account step.
    pid: i32,
    /// Its uid: whose argon2 queue the checks wait in when no remote host
    /// is named.
    uid: u32,
    stage: Stage,
    /// The first factor passed (always true in `otp_only` mode).
    first_factor_ok: bool,
    /// Whether the first factor is known to have passed: kauthd checked
    /// the password, or the module's `enroll_at_login` option vouches that
    /// its stack runs it only after the first factor passed. Only then may
    /// the setup of a new code be shown (`otp_only` alone says nothing
    /// when an earlier `required` module failed).
    first_factor_vouched: bool,
    /// A PAM `password` change (mode `change_password`).
    change: Option<ChangeConversation>,
    /// An enrollment at login (stages `AwaitEnrollCode`, `AwaitSavedCodes`).
    enroll: Option<LoginEnrollment>,
    /// A login (counted in `stats` when it ends), not a password change.
    is_login: bool,
    /// The time kauthd spent on this conversation's requests so far.
    busy: Duration,
    /// A panel's login: parked at each secret prompt (see `parked`).
    resumable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitPassword,
    AwaitCode,
    /// A password change: its answers go to `change`.
    ChangePassword,
    /// Only `continue` is expected (messages are queued), or it is over.
    Relaying,
    /// A code from the secret being set up at login.
    AwaitEnrollCode,
    /// Any answer: the user saved the recovery codes; the login goes on.
    AwaitSavedCodes,
}

/// What the caller gave to start a conversation.
#[derive(Debug)]
pub struct BeginArgs {
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub mode: LoginMode,
    pub authtok: Option<Secret>,
    /// The module's `enroll_at_login` option (see `first_factor_vouched`).
    pub enroll_at_login: bool,
    /// Park the conversation at each secret prompt (a panel's login).
    pub resumable: bool,
}

fn finished(outcome: Outcome) -> Response {
    Response::Finished { outcome }
}

fn prompt(message: &str) -> Response {
    Response::Prompt {
        echo: false,
        message: message.to_owned(),
        continuation: None,
    }
}

fn message(style: MessageStyle, text: String) -> Response {
    Response::Message { style, text }
}

/// What a connection's PAM requests share: the login conversation in
/// progress, and the one queue of steps still to send, one per
/// `continue` (a conversation's or an account check's).
#[derive(Debug, Default)]
pub struct Exchange {
    conversation: Option<Conversation>,
    queued: VecDeque<Response>,
}

impl Exchange {
    /// Whether a login conversation is in progress.
    pub fn in_conversation(&self) -> bool {
        self.conversation.is_some()
    }

    /// The remote host the conversation in progress names, if any.
    pub fn rhost(&self) -> Option<&str> {
        self.conversation.as_ref()?.rhost.as_deref()
    }

    /// Sends the first of `steps` now and queues the rest, one per
    /// `continue`.
    fn relay(&mut self, steps: Vec<Response>) -> Response {
        let mut steps = steps.into_iter();
        let first = steps.next().unwrap_or_else(|| finished(Outcome::Denied));
        self.queued.extend(steps);
        first
    }

    /// The conversation ends with its `finished` step; a login's end is
    /// counted in `stats`.
    fn end_if_over(&mut self, response: &Response) {
        let Response::Finished { outcome } = response else {
            return;
        };
        if !self.queued.is_empty() {
            return;
        }
        if let Some(conv) = self.conversation.take() {
            if conv.is_login {
                stats::login_ended(&conv.service, *outcome, conv.busy);
            }
        }
    }
}

/// Starts a conversation; returns its first step.
pub fn begin(
    daemon: &Daemon,
    caller: &Caller,
    exchange: &mut Exchange,
    args: BeginArgs,
) -> Response {
    exchange.queued.clear();
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
    let started = Instant::now();
    exchange.conversation = None;
    if names::check_login_name(&args.user).is_err() {
        log::info!("login refused for an invalid user name on {}", args.service);
        stats::login_ended(&args.service, Outcome::Denied, started.elapsed());
        return finished(Outcome::Denied);
    }
    let mut conv = Conversation {
        user: args.user,
        service: args.service,
        rhost: args.rhost.filter(|h| !h.is_empty()),
        pid: caller.pid,
        uid: caller.uid,
        stage: Stage::Relaying,
        first_factor_ok: true,
        first_factor_vouched: match args.mode {
            LoginMode::OtpOnly => args.enroll_at_login,
            LoginMode::Password | LoginMode::ChangePassword => true,
        },
        change: None,
        enroll: None,
        is_login: args.mode != LoginMode::ChangePassword,
        busy: Duration::ZERO,
        resumable: args.resumable,
    };
    let steps = match args.mode {
        LoginMode::OtpOnly => conv.after_first_factor(daemon),
        LoginMode::Password => match args.authtok {
            Some(password) => conv.password_answer(daemon, &password),
            None => {
                conv.stage = Stage::AwaitPassword;
                vec![prompt(PASSWORD_PROMPT)]
            }
        },
        LoginMode::ChangePassword => {
            let (change, steps) =
                ChangeConversation::start(daemon, &conv.user, &conv.service, conv.origin());
            conv.change = Some(change);
            conv.stage = Stage::ChangePassword;
            steps
        }
    };
    conv.busy += started.elapsed();
    exchange.conversation = Some(conv);
    let response = exchange.relay(steps);
    exchange.end_if_over(&response);
    park_at_secret_prompt(daemon, exchange, response)
}

/// The user's answer to the last prompt.
pub fn answer(daemon: &Daemon, exchange: &mut Exchange, text: &Secret) -> Response {
    let started = Instant::now();
    let Some(conv) = exchange.conversation.as_mut() else {
        return error(
            ErrorCode::BadRequest,
            "no login conversation is in progress",
        );
    };
    let steps = match conv.stage {
        Stage::AwaitPassword => conv.password_answer(daemon, text),
        Stage::AwaitCode => conv.code_answer(daemon, text),
        Stage::ChangePassword => conv.change_answer(daemon, text),
        Stage::AwaitEnrollCode => conv.enroll_answer(daemon, text),
        Stage::AwaitSavedCodes => conv.codes_saved(daemon),
        Stage::Relaying => vec![error(
            ErrorCode::BadRequest,
            "no question is waiting for an answer",
        )],
    };
    conv.busy += started.elapsed();
    let response = exchange.relay(steps);
    exchange.end_if_over(&response);
    park_at_secret_prompt(daemon, exchange, response)
}

/// The client showed a message; send the next step.
pub fn next(daemon: &Daemon, exchange: &mut Exchange) -> Response {
    match exchange.queued.pop_front() {
        Some(response) => {
            exchange.end_if_over(&response);
            park_at_secret_prompt(daemon, exchange, response)
        }
        None if exchange.in_conversation() => error(ErrorCode::BadRequest, "nothing more to say"),
        None => error(
            ErrorCode::BadRequest,
            "no login conversation is in progress",
        ),
    }
}

/// In a resumable conversation, a secret prompt (a password or a code)
/// parks the conversation: the prompt carries a new continuation token,
/// and this connection's conversation is over. Any other step goes out
/// as it is.
fn park_at_secret_prompt(daemon: &Daemon, exchange: &mut Exchange, response: Response) -> Response {
    let Response::Prompt {
        echo: false,
        message: text,
        continuation: None,
    } = response
    else {
        return response;
    };
    let resumable = exchange.conversation.as_ref().is_some_and(|c| c.resumable);
    let conversation = match exchange.conversation.take() {
        Some(conversation) if resumable && exchange.queued.is_empty() => conversation,
        other => {
            exchange.conversation = other;
            return prompt(&text);
        }
    };
    // Made and kept (as a SHA-256) like a password reset token: 192
    // random bits.
    let token = match reset_token::generate() {
        Ok(token) => token,
        Err(why) => {
            log::error!("cannot park a resumable login: {why}");
            return error(
                ErrorCode::Internal,
                "kauthd could not continue the sign-in; see its log",
            );
        }
    };
    let lifetime = Duration::from_secs(daemon.config().daemon.idle_timeout);
    let uid = conversation.uid;
    daemon.parked_logins().park(
        reset_token::digest(token.expose()),
        uid,
        conversation,
        Instant::now(),
        lifetime,
    );
    Response::Prompt {
        echo: false,
        message: text,
        continuation: Some(token),
    }
}

/// Goes on with a parked login: `text` answers the prompt that carried
/// `token`, on this connection, as `answer` would have on the first one.
/// A token works once, for the uid that parked it, until it expires; any
/// other gets the same `not_found`.
pub fn resume(
    daemon: &Daemon,
    caller: &Caller,
    exchange: &mut Exchange,
    token: &Secret,
    text: &Secret,
) -> Response {
    if exchange.in_conversation() {
        return error(
            ErrorCode::BadRequest,
            "a login conversation is in progress on this connection; finish it, or resume on another connection",
        );
    }
    exchange.queued.clear();
    let digest = reset_token::digest(token.expose());
    let taken = daemon
        .parked_logins()
        .take(&digest, caller.uid, Instant::now());
    let mut conversation = match taken {
        Ok(conversation) => conversation,
        Err(why) => {
            refusal_log::warn_continuation(format_args!(
                "refused to resume a login for {}: the continuation token is {}",
                caller.describe(),
                match why {
                    parked::Refusal::Unknown => "unknown or already used",
                    parked::Refusal::Expired => "expired ([daemon] idle_timeout)",
                    parked::Refusal::OtherUid => "another uid's (now spent)",
                }
            ));
            return error(ErrorCode::NotFound, RESUME_NOT_FOUND);
        }
    };
    // The process that gives the answer is the one a PAM account step
    // would ask about.
    conversation.pid = caller.pid;
    exchange.conversation = Some(conversation);
    answer(daemon, exchange, text)
}

impl Conversation {
    fn change_answer(&mut self, daemon: &Daemon, text: &Secret) -> Vec<Response> {
        match self.change.as_mut() {
            Some(change) => change.answer(daemon, text),
            None => vec![error(
                ErrorCode::BadRequest,
                "no password change is in progress",
            )],
        }
    }

    /// Where the login comes from, for the rate limit and argon2 queue.
    fn origin(&self) -> Origin<'_> {
        Origin {
            rhost: self.rhost.as_deref(),
            uid: self.uid,
        }
    }

    fn account(&self, daemon: &Daemon) -> Result<Option<Account>, StoreError> {
        daemon.store().account(&self.user)
    }

    /// The password, checked only when neither root's lock nor a rate
    /// limit lock holds: a locked attempt gets the same answer whatever
    /// the password, without an argon2 run.
    fn password_answer(&mut self, daemon: &Daemon, password: &Secret) -> Vec<Response> {
        let config = daemon.config();
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return vec![Response::from(e)],
        };
        if let Some(refused) = self.refuse_if_root_locked(account.as_ref()) {
            return vec![refused];
        }
        let hash = account.as_ref().and_then(|a| a.password_hash.as_deref());
        let outcome = code_check::attempt(daemon, &self.user, self.origin(), |turn| {
            let right = hashing::verify_or_dummy(turn, password.expose(), hash, &config.password);
            Ok(right.then_some(()))
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
            Ok(Attempt::Locked { until }) => return self.refuse_locked(until),
            Err(e) => return vec![Response::from(e)],
        }
        self.after_first_factor(daemon)
    }

    /// Root locked the account: refused before any password is checked.
    fn refuse_if_root_locked(&self, account: Option<&Account>) -> Option<Response> {
        if !account.is_some_and(|a| a.locked) {
            return None;
        }
        self.log_locked("the account is locked by root");
        Some(finished(Outcome::Locked))
    }

    /// Locked after repeated failures (of this name or this host): said
    /// with until when, the same whether the account exists or not and
    /// whatever was typed.
    fn refuse_locked(&self, until: i64) -> Vec<Response> {
        stats::code_refused(CodeRefusal::Locked);
        self.log_locked(&format!(
            "locked after repeated failures until {}",
            clock::format_time(until)
        ));
        vec![
            message(
                MessageStyle::Error,
                login_texts::locked_until(until, clock::now()),
            ),
            finished(Outcome::Locked),
        ]
    }

    fn log_locked(&self, why: &str) {
        log_locked_attempt(
            EventKind::LoginFailure,
            &self.user,
            &self.service,
            self.rhost.as_deref(),
            why,
        );
    }

    /// Decides what follows the first factor: a code prompt, a notice, or
    /// the end.
    fn after_first_factor(&mut self, daemon: &Daemon) -> Vec<Response> {
        let config = daemon.config();
        if !self.first_factor_ok {
            // Same shape as a real attempt: ask for a code whenever one could
            // be asked here, then deny.
            if policy::may_ask_code(&config.policy, &self.service) {
                self.stage = Stage::AwaitCode;
                return vec![prompt(CODE_PROMPT)];
            }
            return vec![finished(Outcome::Denied)];
        }
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return vec![Response::from(e)],
        };
        if let Some(refused) = self.refuse_if_root_locked(account.as_ref()) {
            return vec![refused];
        }
        match code_check::current_lock(daemon, &self.user, self.rhost.as_deref()) {
            Ok(Some(until)) => return self.refuse_locked(until),
            Ok(None) => {}
            Err(e) => return vec![Response::from(e)],
        }
        let decision = match policy::decide_for(daemon, &self.user, account.as_ref(), &self.service)
        {
            Ok(decision) => decision,
            Err(e) => return vec![Response::from(e)],
        };
        match decision {
            Decision::AskCode { .. } => {
                self.stage = Stage::AwaitCode;
                vec![prompt(CODE_PROMPT)]
            }
            Decision::Skip { rule, notice } => {
                self.record(
                    daemon,
                    EventKind::LoginSuccess,
                    &format!("without a code ({rule})"),
                );
                self.stage = Stage::Relaying;
                match notice {
                    Some(text) => vec![
                        message(MessageStyle::Info, text),
                        finished(Outcome::Success),
                    ],
                    None => vec![finished(Outcome::Success)],
                }
            }
            Decision::Deny {
                rule,
                message: text,
            } => {
                if let Some(steps) = self.try_enroll(daemon, account) {
                    return steps;
                }
                self.record(
                    daemon,
                    EventKind::LoginFailure,
                    &format!("refused by the policy ({rule})"),
                );
                self.stage = Stage::Relaying;
                vec![
                    message(MessageStyle::Error, text),
                    finished(Outcome::Denied),
                ]
            }
        }
    }

    fn code_answer(&mut self, daemon: &Daemon, code: &Secret) -> Vec<Response> {
        self.stage = Stage::Relaying;
        if !self.first_factor_ok {
            // The code is not even looked at after a wrong password; the
            // answer looks like that of a wrong code.
            return self.refuse_code(daemon, Rejection::Wrong);
        }
        let account = match self.account(daemon) {
            Ok(account) => account,
            Err(e) => return vec![Response::from(e)],
        };
        let outcome = code_check::check(
            daemon,
            &self.user,
            account.as_ref(),
            self.origin(),
            Some(&self.service),
            code,
        );
        match outcome {
            Ok(CodeOutcome::Accepted(factor)) => {
                // The login's activity rows were stored with the spent code.
                daemon.remember_code(self.pid, &self.user);
                if let Factor::Recovery { .. } = factor {
                    stats::recovery_code_used();
                }
                let told = match factor {
                    Factor::Recovery { left } => Some(login_texts::recovery_code_accepted(left)),
                    Factor::Totp {
                        learned_offset: Some(seconds),
                    } => Some(login_texts::learned_clock_offset(seconds)),
                    Factor::Totp {
                        learned_offset: None,
                    } => None,
                };
                let mut steps: Vec<Response> = told
                    .map(|text| message(MessageStyle::Info, text))
                    .into_iter()
                    .collect();
                steps.push(finished(Outcome::Success));
                steps
            }
            Ok(CodeOutcome::Rejected(why)) => {
                stats::code_refused(match why {
                    Rejection::AlreadyUsed => CodeRefusal::Replayed,
                    Rejection::Wrong | Rejection::ClockOff { .. } => CodeRefusal::Wrong,
                });
                let detail = match why {
                    Rejection::AlreadyUsed => "verification code already used",
                    Rejection::ClockOff { .. } => {
                        "verification code for another time (the authenticator's clock is off)"
                    }
                    Rejection::Wrong => "wrong verification code",
                };
                self.record(daemon, EventKind::LoginFailure, detail);
                self.refuse_code(daemon, why)
            }
            Ok(CodeOutcome::Locked { until }) => self.refuse_locked(until),
            Err(e) => vec![Response::from(e)],
        }
    }

    /// A refused code, with what may be said about it: a code already
    /// used; after repeated failures of this name, a hint about the
    /// phone's clock (the offset when the code matched another time); a
    /// lock that this failure set. Only a code that is right for some time
    /// tells more than a wrong password does, so the answer to a wrong
    /// password (or an unknown name) is that of a wrong code.
    fn refuse_code(&self, daemon: &Daemon, why: Rejection) -> Vec<Response> {
        let denied = finished(Outcome::Denied);
        if why == Rejection::AlreadyUsed {
            let text = login_texts::CODE_ALREADY_USED.to_owned();
            return vec![message(MessageStyle::Error, text), denied];
        }
        match code_check::current_lock(daemon, &self.user, self.rhost.as_deref()) {
            Ok(Some(until)) => {
                let text = login_texts::locked_until(until, clock::now());
                return vec![message(MessageStyle::Error, text), denied];
            }
            Ok(None) => {}
            Err(e) => return vec![Response::from(e)],
        }
        let failures = match code_check::failures_of(daemon, &self.user) {
            Ok(failures) => failures,
            Err(e) => return vec![Response::from(e)],
        };
        if failures < HINT_AFTER_FAILURES {
            return vec![denied];
        }
        let hint = match why {
            Rejection::ClockOff { seconds } => login_texts::clock_looks_off(seconds),
            _ => login_texts::CODES_KEEP_FAILING.to_owned(),
        };
        vec![message(MessageStyle::Info, hint), denied]
    }

    /// The enrollment at login, when it may run here; `None` leaves the
    /// policy's refusal standing.
    fn try_enroll(&mut self, daemon: &Daemon, account: Option<Account>) -> Option<Vec<Response>> {
        let vouched = self.first_factor_vouched;
        match enroll::start(daemon, &self.user, &self.service, account, vouched) {
            Ok((enrollment, steps)) => {
                self.enroll = Some(enrollment);
                self.stage = Stage::AwaitEnrollCode;
                Some(steps)
            }
            Err(enroll::NotHere::PromptOnly) => {
                log::warn!(
                    "{} must set up two-factor authentication, but {} is in [policy] prompt_only_services, so it cannot be done at login there: the login is refused; offer the panel's enrollment page (enroll_begin, enroll_confirm) or `kauthctl 2fa enroll`",
                    escape::for_log(&self.user),
                    escape::for_log(&self.service)
                );
                None
            }
            Err(enroll::NotHere::NoAccount) => {
                // Neither a kauthd account nor a system user: no one can log
                // in under this name. Its answer is that of a user with 2FA
                // and a wrong code (the code is checked, fails and is
                // counted), so the refusal does not tell that the name does
                // not exist.
                self.stage = Stage::AwaitCode;
                Some(vec![prompt(CODE_PROMPT)])
            }
            Err(enroll::NotHere::Off) => None,
            Err(enroll::NotHere::Unvouched) => {
                log::info!(
                    "{} must set up two-factor authentication, but the {} PAM line has otp_only without enroll_at_login, so kauthd cannot tell that an earlier module checked the first factor: the login is refused; add enroll_at_login to a stack that runs pam_kpanel only after the first factor passed (a key with AuthenticationMethods, or a requisite first module)",
                    escape::for_log(&self.user),
                    escape::for_log(&self.service)
                );
                None
            }
            Err(enroll::NotHere::Failed(response)) => {
                self.stage = Stage::Relaying;
                Some(vec![*response])
            }
        }
    }

    /// A code for the secret being set up at login.
    fn enroll_answer(&mut self, daemon: &Daemon, code: &Secret) -> Vec<Response> {
        let Some(mut enrollment) = self.enroll.take() else {
            self.stage = Stage::Relaying;
            return vec![finished(Outcome::Denied)];
        };
        match enrollment.answer(daemon, self.origin(), code) {
            enroll::Step::Retry(steps) => {
                self.enroll = Some(enrollment);
                steps
            }
            enroll::Step::Enrolled(steps) => {
                self.stage = Stage::AwaitSavedCodes;
                steps
            }
            enroll::Step::Refused { steps, detail } => {
                self.stage = Stage::Relaying;
                self.record(daemon, EventKind::LoginFailure, detail);
                steps
            }
            enroll::Step::Locked { until } => {
                self.stage = Stage::Relaying;
                self.refuse_locked(until)
            }
            enroll::Step::Error(response) => {
                self.stage = Stage::Relaying;
                vec![*response]
            }
        }
    }

    /// The recovery codes were shown: the login goes on. The code memory
    /// of the account step starts now, after the time spent saving them.
    fn codes_saved(&mut self, daemon: &Daemon) -> Vec<Response> {
        self.stage = Stage::Relaying;
        daemon.remember_code(self.pid, &self.user);
        self.record(
            daemon,
            EventKind::LoginSuccess,
            "after setting up two-factor authentication at login",
        );
        vec![finished(Outcome::Success)]
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

/// A locked attempt costs no check and no write: it is only logged,
/// rate-limited (see `refusal_log::warn_locked`).
fn log_locked_attempt(event: EventKind, user: &str, service: &str, rhost: Option<&str>, why: &str) {
    refusal_log::warn_locked(format_args!(
        "{} refused unchecked: {why}",
        activity::line_head(event, Some(user), Some(service), rhost),
    ));
}

/// The PAM `account` step; its steps go through the same queue as a
/// login conversation's, and it ends any conversation in progress.
pub fn account_check(
    daemon: &Daemon,
    caller: &Caller,
    exchange: &mut Exchange,
    user: &str,
    service: &str,
) -> Response {
    exchange.conversation = None;
    exchange.queued.clear();
    let steps = account_steps(daemon, caller, user, service);
    exchange.relay(steps)
}

/// The PAM `account` step: locked accounts and users who must have 2FA but
/// have none (after the deadline) are refused; a user who must give a code
/// is refused if this login's process did not give one.
fn account_steps(daemon: &Daemon, caller: &Caller, user: &str, service: &str) -> Vec<Response> {
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
    match policy::account_verdict(daemon, caller.pid, user, service) {
        Ok(AccountVerdict::Allow) => vec![finished(Outcome::Success)],
        Ok(AccountVerdict::LockedByRoot) => vec![
            message(
                MessageStyle::Error,
                "This account is locked. Ask the administrator.".to_owned(),
            ),
            finished(Outcome::Locked),
        ],
        Ok(AccountVerdict::RateLocked { until }) => vec![
            message(
                MessageStyle::Error,
                login_texts::locked_until(until, clock::now()),
            ),
            finished(Outcome::Locked),
        ],
        Ok(AccountVerdict::Deny {
            rule,
            message: text,
        }) => {
            log::warn!("account check refused {user} on {service}: {rule}");
            vec![
                message(MessageStyle::Error, text),
                finished(Outcome::Denied),
            ]
        }
        Ok(AccountVerdict::NoCodeGiven) => {
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
        Err(e) => vec![Response::from(e)],
    }
}
