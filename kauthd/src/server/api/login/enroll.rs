//! Enrollment at login: a user whom the policy requires to use 2FA, who
//! has none, and whose first factor was checked in this conversation sets
//! it up here instead of being refused. The QR code and setup key are
//! shown, a code from the new secret is asked (three tries), then the
//! recovery codes, once. The secrets are made and stored by
//! `twofactor::enrollment`, exactly as `kauthctl 2fa enroll` does.

use kauth_proto::{MessageStyle, Outcome, Response, Secret};

use super::{finished, message};
use crate::daemon::Daemon;
use crate::login_texts as texts;
use crate::server::access;
use crate::store::Account;
use crate::twofactor::code_check::Origin;
use crate::twofactor::enrollment::{self, EnrollError};
use crate::twofactor::{qr, totp};
use crate::unix_users;

/// Codes a user may type in one login before it is refused.
pub const TRIES: u32 = 3;

/// Linux-PAM's PAM_MAX_MSG_SIZE is 512 bytes with the final NUL; some
/// applications cut longer texts. Every text sent is at most this long.
pub const MAX_TEXT_BYTES: usize = 511;

/// Why the enrollment cannot run in this login (the policy's refusal
/// stands).
#[derive(Debug)]
pub enum NotHere {
    /// `[policy] enroll_at_login = false`.
    Off,
    /// The service shows no texts (`[policy] prompt_only_services`).
    PromptOnly,
    /// Nothing says the first factor passed: an `otp_only` module line
    /// without `enroll_at_login` may run after a failed `required` module.
    Unvouched,
    /// The name has no kauthd account and is no system user.
    NoAccount,
    /// The store or the secret generator failed.
    Failed(Box<Response>),
}

/// An enrollment in progress inside a login conversation.
#[derive(Debug)]
pub struct LoginEnrollment {
    account: Account,
    tries_left: u32,
}

/// What follows an answer to the code prompt.
#[derive(Debug)]
pub enum Step {
    /// A wrong code with tries left: the code is asked again.
    Retry(Vec<Response>),
    /// 2FA is on: the recovery codes are shown and their saving confirmed.
    Enrolled(Vec<Response>),
    /// The login is refused (2FA stays off); `detail` is for the activity.
    Refused {
        steps: Vec<Response>,
        detail: &'static str,
    },
    /// A rate-limit lock holds: nothing was checked.
    Locked { until: i64 },
    /// kauthd could not go on.
    Error(Box<Response>),
}

/// Starts the enrollment of `user` logging in to `service`, or says why it
/// cannot run here.
pub fn start(
    daemon: &Daemon,
    user: &str,
    service: &str,
    account: Option<Account>,
    first_factor_vouched: bool,
) -> Result<(LoginEnrollment, Vec<Response>), NotHere> {
    let policy = &daemon.config().policy;
    if !policy.enroll_at_login {
        return Err(NotHere::Off);
    }
    if !crate::policy::enrolls_at_login(policy, service) {
        return Err(NotHere::PromptOnly);
    }
    let known = account.is_some() || unix_users::user_by_name(user).is_some();
    if !known {
        return Err(NotHere::NoAccount);
    }
    if !first_factor_vouched {
        return Err(NotHere::Unvouched);
    }
    let account = match account {
        Some(account) => account,
        // A system user's first factor was checked by an earlier module:
        // they get an account as `kauthctl 2fa enroll` would make one.
        None if unix_users::user_by_name(user).is_some() => {
            access::add_account(daemon, user).map_err(|e| NotHere::Failed(Box::new(e.into())))?
        }
        None => return Err(NotHere::NoAccount),
    };
    let begun =
        enrollment::begin(daemon, &account).map_err(|e| NotHere::Failed(Box::new(error(e))))?;
    let uri = zeroize::Zeroizing::new(begun.uri(&account.name));
    let picture = qr::text(&uri).map_err(|why| NotHere::Failed(Box::new(internal(&why))))?;
    let setup_key = zeroize::Zeroizing::new(totp::setup_key(&begun.secret));
    let scan = texts::enroll_scan(
        &begun.issuer,
        &account.name,
        begun.params.algorithm.as_str(),
        begun.params.digits,
        begun.params.period,
    );
    // One line, the picture with its explanation beside it, the setup key
    // and the prompt: 24 lines, one 80×24 screen.
    let mut text = format!(
        "{}\n{}\n{}",
        texts::ENROLL_INTRO,
        qr::beside(&picture, &format!("{scan}\n{}", texts::ENROLL_THEN_TYPE)),
        texts::enroll_setup_key(&setup_key)
    );
    let mut steps = split_text(MessageStyle::Info, &text);
    zeroize::Zeroize::zeroize(&mut text);
    steps.push(code_prompt());
    Ok((
        LoginEnrollment {
            account,
            tries_left: TRIES,
        },
        steps,
    ))
}

impl LoginEnrollment {
    /// The user's answer to the code prompt.
    pub fn answer(&mut self, daemon: &Daemon, origin: Origin<'_>, code: &Secret) -> Step {
        match enrollment::confirm(daemon, &self.account, origin, code) {
            Ok(codes) => {
                let list: Vec<&str> = codes.iter().map(Secret::expose).collect();
                let mut text = texts::enroll_done(&list);
                let mut steps = split_text(MessageStyle::Info, &text);
                zeroize::Zeroize::zeroize(&mut text);
                steps.push(Response::Prompt {
                    echo: true,
                    message: texts::SAVED_CODES_PROMPT.to_owned(),
                    continuation: None,
                });
                Step::Enrolled(steps)
            }
            Err(EnrollError::WrongCode) => {
                self.tries_left = self.tries_left.saturating_sub(1);
                if self.tries_left == 0 {
                    return Step::Refused {
                        steps: refused(texts::ENROLL_GAVE_UP),
                        detail: "three wrong codes while setting up two-factor authentication",
                    };
                }
                Step::Retry(vec![
                    message(
                        MessageStyle::Error,
                        texts::enroll_wrong_code(self.tries_left),
                    ),
                    code_prompt(),
                ])
            }
            Err(EnrollError::PendingDropped) => Step::Refused {
                steps: refused(texts::ENROLL_DROPPED),
                detail: "the setup of two-factor authentication was cancelled after too many wrong codes",
            },
            Err(EnrollError::NoPending) => Step::Refused {
                steps: refused(texts::ENROLL_EXPIRED),
                detail: "the setup of two-factor authentication expired",
            },
            Err(EnrollError::Locked { until }) => Step::Locked { until },
            Err(e) => Step::Error(Box::new(error(e))),
        }
    }
}

fn code_prompt() -> Response {
    Response::Prompt {
        echo: false,
        message: texts::ENROLL_CODE_PROMPT.to_owned(),
        continuation: None,
    }
}

fn refused(text: &str) -> Vec<Response> {
    vec![
        message(MessageStyle::Error, text.to_owned()),
        finished(Outcome::Denied),
    ]
}

fn internal(why: &str) -> Response {
    log::error!("enrollment at login failed: {why}");
    super::error(
        kauth_proto::ErrorCode::Internal,
        "kauthd could not set up two-factor authentication; see its log",
    )
}

fn error(e: EnrollError) -> Response {
    match e {
        EnrollError::Store(e) => Response::from(e),
        EnrollError::Internal(why) | EnrollError::Invalid(why) => internal(&why),
        other => internal(&format!("{other:?}")),
    }
}

/// `text` as messages of at most [`MAX_TEXT_BYTES`] each, cut between
/// lines (a line longer than that is cut at a character boundary).
pub fn split_text(style: MessageStyle, text: &str) -> Vec<Response> {
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let mut line = line;
        while line.len() > MAX_TEXT_BYTES {
            let mut cut = MAX_TEXT_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            if !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
            }
            chunks.push(line[..cut].to_owned());
            line = &line[cut..];
        }
        let joined = current.len() + 1 + line.len();
        if !current.is_empty() && joined > MAX_TEXT_BYTES {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .map(|text| message(style, text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(steps: &[Response]) -> Vec<&str> {
        steps
            .iter()
            .map(|s| match s {
                Response::Message { text, .. } => text.as_str(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_qr_code_is_split_between_lines_into_texts_pam_can_carry() {
        let uri = "otpauth://totp/web1.example:alice\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=web1.example";
        let picture = qr::text(uri).unwrap();
        let steps = split_text(MessageStyle::Info, &picture);
        let parts = bodies(&steps);
        assert!(parts.len() > 1, "a QR code drawn as text is over 512 bytes");
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        // sshd and most applications end each text with a newline: joined
        // so, the texts give back the picture.
        assert_eq!(parts.join("\n"), picture);
    }

    #[test]
    fn a_line_longer_than_a_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(400);
        let steps = split_text(MessageStyle::Info, &format!("a\n{long}\nb"));
        let parts = bodies(&steps);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        assert_eq!(parts.concat().replace('\n', ""), format!("a{long}b"));
    }
}
