//! Turns one request into one response, after checking that the caller
//! may make it. Each submodule serves one area of the protocol.

mod accounts;

use kauth_proto::{ErrorCode, Request, Response};

use crate::access::Caller;
use crate::daemon::Daemon;
use crate::store::StoreError;

/// What a connection remembers between requests.
#[derive(Debug)]
pub struct ConnState {
    pub caller: Caller,
}

impl ConnState {
    pub fn new(caller: Caller) -> ConnState {
        ConnState { caller }
    }
}

pub fn handle(daemon: &Daemon, state: &mut ConnState, request: Request) -> Response {
    let caller = &state.caller;
    match request {
        Request::Hello { .. } => error(ErrorCode::BadRequest, "hello was already sent"),
        Request::Status => status(daemon),
        Request::UserAdd {
            name,
            password,
            uid,
        } => accounts::add(daemon, caller, &name, password, uid),
        Request::UserDel { name } => accounts::delete(daemon, caller, &name),
        Request::UserList => accounts::list(daemon, caller),
        Request::UserLock { name } => accounts::set_locked(daemon, caller, &name, true),
        Request::UserUnlock { name } => accounts::set_locked(daemon, caller, &name, false),
        _ => error(
            ErrorCode::BadRequest,
            "this kauthd does not serve that request yet",
        ),
    }
}

fn status(daemon: &Daemon) -> Response {
    match daemon.store().count_accounts() {
        Ok(accounts) => Response::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: daemon.started.elapsed().as_secs(),
            accounts,
        },
        Err(e) => internal(&e),
    }
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

/// A store failure: logged in full, reported to the client without detail.
pub(crate) fn internal(e: &StoreError) -> Response {
    log::error!("store error: {e}");
    error(
        ErrorCode::Internal,
        "kauthd could not complete the request; see its log",
    )
}

/// The standard refusal for a request that needs root.
pub(crate) fn root_only(caller: &Caller, what: &str) -> Response {
    log::warn!("refused {what} for {}: root only", caller.describe());
    error(
        ErrorCode::Forbidden,
        format!(
            "only root may {what} (you are {}); run the command as root",
            caller.describe()
        ),
    )
}
