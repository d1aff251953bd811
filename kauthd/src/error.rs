//! The daemon's one error type. Domain code returns `Result<_, Error>` and
//! uses `?`; the api edge turns an `Error` into the `Response` the client
//! gets (`From<Error> for Response`), logging what the client is not told.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicI64, Ordering};

use kauth_proto::{ErrorCode, Response};

use crate::clock;
use crate::config::ConfigError;
use crate::housekeeping;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// The database failed.
    Store(StoreError),
    /// A file or socket operation failed.
    Io(io::Error),
    /// The config file cannot be used.
    Config(ConfigError),
    /// What the caller sent is not acceptable. The text says what is wrong
    /// and what to do; it is meant for the person and is sent to them.
    Invalid(String),
    /// Anything else that went wrong, said for the operator (it names what
    /// failed and why). Logged, never sent to a client.
    Failed(String),
}

impl Error {
    /// Refused input, with the reason for the person.
    pub fn invalid(why: impl Into<String>) -> Error {
        Error::Invalid(why.into())
    }

    /// A failure, with what failed and why, for the operator.
    pub fn failed(what: impl Into<String>) -> Error {
        Error::Failed(what.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Config(e) => write!(f, "{e}"),
            Error::Invalid(why) | Error::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

/// What the client is told: refused input with its reason; for anything
/// else the full error goes to the log and the client gets no detail.
impl From<Error> for Response {
    fn from(e: Error) -> Response {
        match e {
            Error::Invalid(why) => Response::Error {
                code: ErrorCode::Invalid,
                message: why,
            },
            Error::Store(e) => Response::from(e),
            Error::Io(_) | Error::Config(_) | Error::Failed(_) => {
                log::error!("{e}");
                internal_error()
            }
        }
    }
}

/// A store failure: logged in full, reported to the client without detail.
/// A full state filesystem is said as such (logged at most once a minute)
/// and starts upkeep, which frees space without a restart.
impl From<StoreError> for Response {
    fn from(e: StoreError) -> Response {
        if e.is_disk_full() {
            note_disk_full();
            return Response::Error {
                code: ErrorCode::Internal,
                message: "kauthd's state filesystem is full, so nothing could be saved and the request was refused; try again shortly, and ask the administrator to free space if it persists".to_owned(),
            };
        }
        if e.is_unavailable() {
            log_unavailable(&e);
            return Response::Error {
                code: ErrorCode::Internal,
                message: UNAVAILABLE.to_owned(),
            };
        }
        log::error!("store error: {e}");
        internal_error()
    }
}

/// What a person is told while kauthd cannot reach its database.
pub const UNAVAILABLE: &str = "Sign-in is unavailable right now: kauthd cannot reach its database. Try again in a minute; if this persists, tell the administrator.";

/// Logs a store failure no client is told about (a write made in the
/// background), `what` saying what failed; a full state filesystem is
/// logged and handled as for a request.
pub fn log_store_error(what: &str, e: &StoreError) {
    if e.is_disk_full() {
        note_disk_full();
    } else {
        log::error!("{what}: {e}");
    }
}

/// Starts upkeep, which frees space, and says so (rate-limited).
fn note_disk_full() {
    housekeeping::request();
    log_disk_full();
}

/// Seconds between two log lines about a full state filesystem, and
/// between two about an unreachable database.
const DISK_FULL_LOG_SECONDS: i64 = 60;

fn log_disk_full() {
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    if may_log(&LAST) {
        log::error!(
            "the state filesystem is full: requests that must write are refused; upkeep is freeing space, add space if this repeats"
        );
    }
}

/// One line per minute at most while the database cannot be reached.
fn log_unavailable(e: &StoreError) {
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    if may_log(&LAST) {
        log::error!(
            "{e}; code checks, enrollments and other requests that need the database are refused until it is back (check that PostgreSQL runs and [store] url); kauthd reconnects by itself"
        );
    }
}

/// True at most once every `DISK_FULL_LOG_SECONDS` for one `last`.
fn may_log(last: &AtomicI64) -> bool {
    let now = clock::now();
    let before = last.load(Ordering::Relaxed);
    now.saturating_sub(before) >= DISK_FULL_LOG_SECONDS
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn internal_error() -> Response {
    Response::Error {
        code: ErrorCode::Internal,
        message: "kauthd could not complete the request; see its log".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refused_input_reaches_the_client() {
        let refused = Response::from(Error::invalid("choose a longer password"));
        assert!(matches!(
            refused,
            Response::Error { code: ErrorCode::Invalid, ref message } if message == "choose a longer password"
        ));
        let failed = Response::from(Error::failed("secret detail"));
        assert!(matches!(
            failed,
            Response::Error { code: ErrorCode::Internal, ref message } if !message.contains("secret")
        ));
    }
}
