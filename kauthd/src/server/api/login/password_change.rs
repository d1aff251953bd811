//! The PAM `password` conversation (`LoginMode::ChangePassword`): kauthd
//! asks for the current password, then the new one twice, and says why
//! when it refuses. The login conversation relays the steps decided here.
//!
//! The current password is always asked for, whoever runs PAM: a setuid
//! `passwd` connects as root for any user, so the caller's uid says nothing
//! about who is typing. Root sets passwords with `kauthctl user passwd`.
//! An unknown user, or one with no kauthd password, is refused exactly
//! like a wrong current password, after the same argon2 work.

use kauth_proto::{ErrorCode, MessageStyle, Outcome, Response, Secret};
use subtle::ConstantTimeEq;

use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::passwords::change::{check_new_password, store_new_password};
use crate::passwords::hashing;
use crate::server::api::error;
use crate::store::Account;
use crate::twofactor::code_check::{self, Attempt, Origin};

pub const CURRENT_PROMPT: &str = "Current password: ";
pub const NEW_PROMPT: &str = "New password: ";
pub const RETYPE_PROMPT: &str = "Retype new password: ";

/// A password change in progress on one connection.
#[derive(Debug)]
pub struct ChangeConversation {
    user: String,
    service: String,
    rhost: Option<String>,
    /// The uid that connected (SO_PEERCRED): whose argon2 queue the
    /// current password waits in when no remote host is named.
    uid: u32,
    step: Step,
    /// Set once the current password was right.
    account: Option<Account>,
    current: Option<Secret>,
    new: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Current,
    New,
    Retype,
    Over,
}

fn prompt(text: &str) -> Vec<Response> {
    vec![Response::Prompt {
        echo: false,
        message: text.to_owned(),
        continuation: None,
    }]
}

impl ChangeConversation {
    /// Starts a change for `user` asked by `origin`; returns it with its
    /// first steps (the first to send now, the others one per `continue`).
    pub fn start(
        daemon: &Daemon,
        user: &str,
        service: &str,
        origin: Origin<'_>,
    ) -> (ChangeConversation, Vec<Response>) {
        let rhost = origin.rhost;
        let mut change = ChangeConversation {
            user: user.to_owned(),
            service: service.to_owned(),
            rhost: rhost.map(str::to_owned),
            uid: origin.uid,
            step: Step::Current,
            account: None,
            current: None,
            new: None,
        };
        let steps = match code_check::current_lock(daemon, user, rhost) {
            Ok(None) => prompt(CURRENT_PROMPT),
            Ok(Some(until)) => change.locked(until),
            Err(e) => change.fail(e),
        };
        (change, steps)
    }

    /// Where the change comes from, for the rate limit and argon2 queue.
    fn origin(&self) -> Origin<'_> {
        Origin {
            rhost: self.rhost.as_deref(),
            uid: self.uid,
        }
    }

    /// Refused while a rate-limit lock holds; the change is over.
    fn locked(&mut self, until: i64) -> Vec<Response> {
        self.log_locked(&format!(
            "locked after repeated failures until {}",
            clock::format_time(until)
        ));
        self.step = Step::Over;
        vec![
            Response::Message {
                style: MessageStyle::Error,
                text: format!(
                    "Too many failed attempts: try again after {}.",
                    clock::format_time(until)
                ),
            },
            Response::Finished {
                outcome: Outcome::Locked,
            },
        ]
    }

    /// The answer to the last prompt; returns the next steps.
    pub fn answer(&mut self, daemon: &Daemon, text: &Secret) -> Vec<Response> {
        match self.step {
            Step::Current => self.current_answer(daemon, text),
            Step::New => self.new_answer(daemon, text),
            Step::Retype => self.retype_answer(daemon, text),
            Step::Over => vec![error(
                ErrorCode::BadRequest,
                "no question is waiting for an answer",
            )],
        }
    }

    fn current_answer(&mut self, daemon: &Daemon, current: &Secret) -> Vec<Response> {
        let config = daemon.config();
        let account = match daemon.store().account(&self.user) {
            Ok(account) => account,
            Err(e) => return self.fail(e),
        };
        // Root's lock before the password, so the answer does not depend on it.
        if account.as_ref().is_some_and(|a| a.locked) {
            self.log_locked("the account is locked by root");
            self.step = Step::Over;
            return vec![
                Response::Message {
                    style: MessageStyle::Error,
                    text: "This account is locked. Ask the administrator.".to_owned(),
                },
                Response::Finished {
                    outcome: Outcome::Locked,
                },
            ];
        }
        let hash = account.as_ref().and_then(|a| a.password_hash.as_deref());
        // The rate-limit lock again: it may have come since the prompt.
        let outcome = code_check::attempt(daemon, &self.user, self.origin(), |turn| {
            let right = hashing::verify_or_dummy(turn, current.expose(), hash, &config.password);
            Ok(right.then_some(()))
        });
        let account = match (outcome, account) {
            (Ok(Attempt::Right(())), Some(account)) => account,
            (Ok(Attempt::Locked { until }), _) => return self.locked(until),
            (Err(e), _) => return self.fail(e),
            _ => {
                self.record(
                    daemon,
                    EventKind::PasswordChangeFailure,
                    "wrong current password",
                );
                return self.deny(format!(
                    "Password not changed: the current password is wrong, or {} has no kauthd password (the administrator sets one with `kauthctl user passwd {}`).",
                    self.user, self.user
                ));
            }
        };
        self.account = Some(account);
        self.current = Some(current.clone());
        self.step = Step::New;
        prompt(NEW_PROMPT)
    }

    /// The new password is judged at once, so nobody types a refused
    /// password twice.
    fn new_answer(&mut self, daemon: &Daemon, new: &Secret) -> Vec<Response> {
        if let Err(why) = check_new_password(daemon, &self.user, new, self.current.as_ref()) {
            self.record(
                daemon,
                EventKind::PasswordChangeFailure,
                "new password refused by the policy",
            );
            return self.deny(format!("Password not changed. {why}"));
        }
        self.current = None;
        self.new = Some(new.clone());
        self.step = Step::Retype;
        prompt(RETYPE_PROMPT)
    }

    fn retype_answer(&mut self, daemon: &Daemon, again: &Secret) -> Vec<Response> {
        let (Some(new), Some(account)) = (self.new.take(), self.account.take()) else {
            self.step = Step::Over;
            return vec![error(ErrorCode::BadRequest, "no new password to confirm")];
        };
        let same = bool::from(new.expose().as_bytes().ct_eq(again.expose().as_bytes()));
        if !same {
            return self.deny("Password not changed: the two new passwords differ.".to_owned());
        }
        self.step = Step::Over;
        if let Err(e) = store_new_password(daemon, &account, &new) {
            return vec![Response::from(e)];
        }
        self.record(daemon, EventKind::PasswordChanged, "through PAM");
        vec![Response::Finished {
            outcome: Outcome::Success,
        }]
    }

    /// An error text, then the denial; the change is over.
    fn deny(&mut self, text: String) -> Vec<Response> {
        self.step = Step::Over;
        self.account = None;
        self.current = None;
        self.new = None;
        vec![
            Response::Message {
                style: MessageStyle::Error,
                text,
            },
            Response::Finished {
                outcome: Outcome::Denied,
            },
        ]
    }

    fn fail(&mut self, e: crate::store::StoreError) -> Vec<Response> {
        self.step = Step::Over;
        vec![Response::from(e)]
    }

    fn log_locked(&self, why: &str) {
        super::log_locked_attempt(
            EventKind::PasswordChangeFailure,
            &self.user,
            &self.service,
            self.rhost.as_deref(),
            why,
        );
    }

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

#[cfg(test)]
mod tests {
    use kauth_proto::{LoginMode, Outcome};

    use super::*;
    use crate::config::Config;
    use crate::passwords::argon2_pool::{QueueKey, Turn};
    use crate::server::access::{Caller, Role};
    use crate::server::api::login::{self, BeginArgs, Exchange};
    use crate::store::Store;

    const OLD: &str = "vq7-lantern-kettle-bramble";
    const NEW: &str = "ochre-tundra-pivot-marmalade";

    fn daemon_with_ann() -> (tempfile::TempDir, Daemon) {
        let dir = tempfile::tempdir().unwrap();
        let config =
            Config::parse("[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n").unwrap();
        let key = QueueKey::Account("ann".to_owned());
        let hash = hashing::hash(&key, OLD, &config.password).unwrap();
        let mut store = Store::open(&dir.path().join("state"), crate::store::test_key()).unwrap();
        store.add_account("ann", None, Some(&hash), 0).unwrap();
        let daemon = Daemon::new(config, store, dir.path().join("kauthd.toml"));
        (dir, daemon)
    }

    /// Runs a change conversation; returns the prompts, the texts shown
    /// and the outcome.
    fn run(daemon: &Daemon, user: &str, answers: &[&str]) -> (Vec<String>, Vec<String>, Outcome) {
        let root = Caller {
            uid: 0,
            gid: 0,
            pid: 1,
            role: Role::Root,
            name: None,
        };
        let mut slot = Exchange::default();
        let args = BeginArgs {
            user: user.to_owned(),
            service: "passwd".to_owned(),
            rhost: None,
            mode: LoginMode::ChangePassword,
            authtok: None,
            enroll_at_login: false,
            resumable: false,
        };
        let (mut prompts, mut texts) = (Vec::new(), Vec::new());
        let mut answers = answers.iter();
        let mut response = login::begin(daemon, &root, &mut slot, args);
        for _ in 0..8 {
            response = match response {
                Response::Prompt { message, echo, .. } => {
                    assert!(!echo);
                    prompts.push(message);
                    let text = Secret::from(*answers.next().unwrap_or(&""));
                    login::answer(daemon, &mut slot, &text)
                }
                Response::Message { text, .. } => {
                    texts.push(text);
                    login::next(daemon, &mut slot)
                }
                Response::Finished { outcome } => {
                    assert!(!slot.in_conversation(), "the conversation must be over");
                    return (prompts, texts, outcome);
                }
                other => panic!("{other:?}"),
            };
        }
        panic!("no outcome");
    }

    fn password_is(daemon: &Daemon, password: &str) -> bool {
        let account = daemon.store().account("ann").unwrap().unwrap();
        let turn = Turn::new(QueueKey::Uid(0));
        hashing::verify(&turn, password, &account.password_hash.unwrap())
    }

    #[test]
    fn current_then_new_twice_changes_the_password() {
        let (_dir, daemon) = daemon_with_ann();
        let (prompts, texts, outcome) = run(&daemon, "ann", &[OLD, NEW, NEW]);
        assert_eq!(prompts, [CURRENT_PROMPT, NEW_PROMPT, RETYPE_PROMPT]);
        assert!(texts.is_empty(), "{texts:?}");
        assert_eq!(outcome, Outcome::Success);
        assert!(password_is(&daemon, NEW));
    }

    #[test]
    fn a_wrong_current_password_stops_before_the_new_one() {
        let (_dir, daemon) = daemon_with_ann();
        let (prompts, texts, outcome) = run(&daemon, "ann", &["wrong", NEW, NEW]);
        assert_eq!(prompts, [CURRENT_PROMPT]);
        assert!(texts[0].contains("current password is wrong"), "{texts:?}");
        assert_eq!(outcome, Outcome::Denied);
        assert!(password_is(&daemon, OLD));
    }

    #[test]
    fn an_unknown_user_is_refused_like_a_wrong_password() {
        let (_dir, daemon) = daemon_with_ann();
        let (prompts, texts, outcome) = run(&daemon, "nobody-here", &[OLD, NEW, NEW]);
        assert_eq!(prompts, [CURRENT_PROMPT]);
        assert!(texts[0].contains("current password is wrong"), "{texts:?}");
        assert_eq!(outcome, Outcome::Denied);
    }

    #[test]
    fn a_weak_new_password_is_refused_with_the_reason_at_once() {
        let (_dir, daemon) = daemon_with_ann();
        let (prompts, texts, outcome) = run(&daemon, "ann", &[OLD, "password123", "password123"]);
        assert_eq!(prompts, [CURRENT_PROMPT, NEW_PROMPT]);
        assert!(texts[0].contains("too short"), "{texts:?}");
        assert_eq!(outcome, Outcome::Denied);
        let (_, texts, _) = run(&daemon, "ann", &[OLD, OLD, OLD]);
        assert!(texts[0].contains("same as the current"), "{texts:?}");
        assert!(password_is(&daemon, OLD));
    }

    #[test]
    fn a_mistyped_confirmation_changes_nothing() {
        let (_dir, daemon) = daemon_with_ann();
        let (prompts, texts, outcome) =
            run(&daemon, "ann", &[OLD, NEW, "ochre-tundra-pivot-marmalad"]);
        assert_eq!(prompts.len(), 3);
        assert!(texts[0].contains("differ"), "{texts:?}");
        assert_eq!(outcome, Outcome::Denied);
        assert!(password_is(&daemon, OLD));
    }
}
