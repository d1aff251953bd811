//! The login conversation: kauthd says what to ask or show, the module
//! relays it through the PAM conversation and sends back the answer, until
//! kauthd finishes. The module decides nothing here.

use std::fmt;

use kauth_proto::{
    Client, ClientError, ErrorCode, MessageStyle, Outcome, Request, Response, Secret,
};
use pam::constants::PamResultCode;

use crate::pam_io::{Level, PamIo, Style};

/// At most this many exchanges after the first request; a daemon that
/// goes on longer is broken.
pub const MAX_STEPS: usize = 32;
/// The longest answer relayed, in bytes. Nothing a person types at a
/// password or code prompt is longer; longer answers are refused here.
pub const MAX_ANSWER: usize = 1024;

/// Why a conversation ended without an outcome.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayError {
    /// The connection broke, timed out, or kauthd sent something that does
    /// not fit (garbage, a message out of turn, too many steps).
    Daemon(String),
    /// kauthd refused the request with an `Error` response.
    Refused { code: ErrorCode, message: String },
    /// The application's conversation function failed or gave no answer.
    Conversation,
    /// The user's answer is over [`MAX_ANSWER`] bytes or not UTF-8; it was
    /// not sent.
    BadAnswer(&'static str),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Daemon(why) => write!(f, "kauthd conversation broke: {why}"),
            RelayError::Refused { code, message } => {
                write!(f, "kauthd refused the request ({code:?}): {message}")
            }
            RelayError::Conversation => {
                write!(f, "the application's conversation failed or gave no answer")
            }
            RelayError::BadAnswer(why) => write!(f, "answer refused without sending it: {why}"),
        }
    }
}

impl From<ClientError> for RelayError {
    fn from(e: ClientError) -> Self {
        RelayError::Daemon(e.to_string())
    }
}

impl RelayError {
    /// Whether kauthd refused for a reason that is about the user (wrong
    /// proof, unknown account) rather than about the daemon or the setup.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RelayError::Refused {
                code: ErrorCode::Refused | ErrorCode::Invalid | ErrorCode::NotFound,
                ..
            }
        )
    }
}

/// Sends `first` and relays every step until kauthd finishes. With
/// `silent` (PAM_SILENT) informational texts are acknowledged but not shown.
pub fn relay(
    io: &mut dyn PamIo,
    client: &mut Client,
    first: &Request,
    silent: bool,
) -> Result<Outcome, RelayError> {
    let response = client.call(first)?;
    relay_answer(io, client, response, silent)
}

/// Relays every step from `response` (the answer to the request that
/// started the exchange) until kauthd finishes.
pub fn relay_answer(
    io: &mut dyn PamIo,
    client: &mut Client,
    mut response: Response,
    silent: bool,
) -> Result<Outcome, RelayError> {
    for _ in 0..MAX_STEPS {
        let next = match response {
            Response::Finished { outcome } => return Ok(outcome),
            Response::Error { code, message } => return Err(RelayError::Refused { code, message }),
            Response::Prompt { echo, message, .. } => {
                let style = if echo {
                    Style::PromptEchoOn
                } else {
                    Style::PromptEchoOff
                };
                Request::Answer {
                    text: ask(io, style, &message)?,
                }
            }
            Response::Message { style, text } => {
                if !silent {
                    show(io, style, &text);
                }
                Request::Continue
            }
            other => {
                return Err(RelayError::Daemon(format!(
                    "unexpected {} in a conversation",
                    kind(&other)
                )))
            }
        };
        // `next` may hold an answer: it is wiped when dropped after the call.
        response = client.call(&next)?;
    }
    Err(RelayError::Daemon(format!(
        "no outcome after {MAX_STEPS} steps"
    )))
}

fn ask(io: &mut dyn PamIo, style: Style, message: &str) -> Result<Secret, RelayError> {
    let answer = match io.converse(style, message) {
        Ok(Some(answer)) => answer,
        Ok(None) | Err(_) => return Err(RelayError::Conversation),
    };
    if answer.len() > MAX_ANSWER {
        return Err(RelayError::BadAnswer("longer than 1024 bytes"));
    }
    let text = std::str::from_utf8(&answer).map_err(|_| RelayError::BadAnswer("not UTF-8"))?;
    // The copy lives in a Secret (wiped on drop); `answer` is wiped here.
    Ok(Secret::from(text))
}

/// The `auth` code for a conversation that ended without an outcome, after
/// logging why. Other hooks translate PAM_AUTH_ERR to their own refusal.
pub fn failure_code(io: &dyn PamIo, err: &RelayError) -> PamResultCode {
    let (level, code) = match err {
        RelayError::Daemon(_) => (Level::Err, PamResultCode::PAM_AUTHINFO_UNAVAIL),
        RelayError::Refused { .. } if err.is_refusal() => {
            (Level::Notice, PamResultCode::PAM_AUTH_ERR)
        }
        RelayError::Refused { .. } => (Level::Err, PamResultCode::PAM_SYSTEM_ERR),
        RelayError::Conversation => (Level::Err, PamResultCode::PAM_CONV_ERR),
        RelayError::BadAnswer(_) => (Level::Notice, PamResultCode::PAM_AUTH_ERR),
    };
    io.log(level, &err.to_string());
    code
}

/// The code for a hook other than `auth`: success, or `refused` for a
/// denial, a lock or a refused answer; daemon and conversation failures
/// keep their own codes.
pub fn hook_code(
    io: &dyn PamIo,
    result: Result<Outcome, RelayError>,
    refused: PamResultCode,
) -> PamResultCode {
    match result {
        Ok(Outcome::Success) => PamResultCode::PAM_SUCCESS,
        Ok(Outcome::Denied | Outcome::Locked) => refused,
        Err(e) => match failure_code(io, &e) {
            PamResultCode::PAM_AUTH_ERR => refused,
            other => other,
        },
    }
}

/// Shows a text. A text is no security decision: when the application
/// cannot show it (some answer info texts with no response array), the
/// conversation goes on; a prompt that fails ends it.
fn show(io: &mut dyn PamIo, style: MessageStyle, text: &str) {
    let style = match style {
        MessageStyle::Info => Style::Info,
        MessageStyle::Error => Style::Error,
    };
    if let Err(code) = io.converse(style, text) {
        io.log(
            Level::Notice,
            &format!("the application could not show a message from kauthd ({code:?})"),
        );
    }
}

/// A name for a response, for logs (never its contents).
pub fn kind(response: &Response) -> &'static str {
    match response {
        Response::Welcome { .. } => "welcome",
        Response::Done => "done",
        Response::Error { .. } => "error",
        Response::Status { .. } => "status",
        Response::Users { .. } => "users",
        Response::Prompt { .. } => "prompt",
        Response::Message { .. } => "message",
        Response::Finished { .. } => "finished",
        Response::SessionOpened { .. } => "session_opened",
        _ => "response",
    }
}
