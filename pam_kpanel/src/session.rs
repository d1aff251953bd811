//! PAM `session`: open registers the session with kauthd and exports its
//! id as `KAUTH_SESSION_ID`; close ends it.
//!
//! Failures give PAM_SESSION_ERR. kauthd unreachable → PAM_SESSION_ERR, or
//! PAM_SUCCESS (no id exported) under `failmode=safe`, so that the same
//! setting keeps logins working whichever hook finds the daemon gone.

use std::ffi::CStr;

use kauth_proto::{ErrorCode, Request, Response};
use pam::constants::{PamFlag, PamResultCode};

use crate::context::{gather, load_options};
use crate::daemon::{connect, unreachable_outcome};
use crate::pam_io::{Level, PamIo};
use crate::relay::kind;

/// The PAM environment variable that carries the session id.
pub const SESSION_VAR: &str = "KAUTH_SESSION_ID";
const MAX_ID: usize = 128;

pub fn open_session(io: &mut dyn PamIo, args: &[&CStr], _flags: PamFlag) -> PamResultCode {
    let Some(opts) = load_options(io, args) else {
        return PamResultCode::PAM_SESSION_ERR;
    };
    let ctx = match gather(io, &opts) {
        Ok(ctx) => ctx,
        Err(_) => return PamResultCode::PAM_SESSION_ERR,
    };
    let mut client = match connect(&opts) {
        Ok(client) => client,
        Err(e) => return unreachable_outcome(io, &opts, &e, PamResultCode::PAM_SESSION_ERR),
    };
    let open = Request::SessionOpen {
        user: ctx.user,
        service: ctx.service,
        rhost: ctx.rhost,
        tty: ctx.tty,
        client: None,
    };
    let id = match client.call(&open) {
        Ok(Response::SessionOpened { id }) if valid_id(&id) => id,
        Ok(Response::SessionOpened { .. }) => {
            io.log(Level::Err, "kauthd sent an unusable session id");
            return PamResultCode::PAM_SESSION_ERR;
        }
        Ok(Response::Error { code, message }) => {
            io.log(
                Level::Err,
                &format!("kauthd refused to open a session ({code:?}): {message}"),
            );
            return PamResultCode::PAM_SESSION_ERR;
        }
        Ok(other) => {
            io.log(
                Level::Err,
                &format!("kauthd answered a session open with {}", kind(&other)),
            );
            return PamResultCode::PAM_SESSION_ERR;
        }
        Err(e) => {
            io.log(Level::Err, &format!("opening a session failed: {e}"));
            return PamResultCode::PAM_SESSION_ERR;
        }
    };
    if let Err(code) = io.putenv(SESSION_VAR, &id) {
        io.log(
            Level::Err,
            &format!("cannot export {SESSION_VAR} ({code:?})"),
        );
        return PamResultCode::PAM_SESSION_ERR;
    }
    io.debug(opts.debug, "session opened");
    PamResultCode::PAM_SUCCESS
}

pub fn close_session(io: &mut dyn PamIo, args: &[&CStr], _flags: PamFlag) -> PamResultCode {
    let Some(opts) = load_options(io, args) else {
        return PamResultCode::PAM_SESSION_ERR;
    };
    let Some(id) = io.getenv(SESSION_VAR).filter(|id| !id.is_empty()) else {
        io.debug(opts.debug, &format!("no {SESSION_VAR}: nothing to close"));
        return PamResultCode::PAM_SUCCESS;
    };
    if !valid_id(&id) {
        io.log(Level::Err, &format!("{SESSION_VAR} holds an unusable id"));
        return PamResultCode::PAM_SESSION_ERR;
    }
    let mut client = match connect(&opts) {
        Ok(client) => client,
        Err(e) => return unreachable_outcome(io, &opts, &e, PamResultCode::PAM_SESSION_ERR),
    };
    match client.call(&Request::SessionClose { id: id.clone() }) {
        Ok(Response::Done) => {
            io.debug(opts.debug, "session closed");
            PamResultCode::PAM_SUCCESS
        }
        Ok(Response::Error {
            code: ErrorCode::NotFound,
            ..
        }) => {
            // Signed out from elsewhere, or closed after a daemon restart.
            io.log(Level::Info, "the session had already ended");
            PamResultCode::PAM_SUCCESS
        }
        Ok(Response::Error { code, message }) => {
            io.log(
                Level::Err,
                &format!("kauthd refused to close the session ({code:?}): {message}"),
            );
            PamResultCode::PAM_SESSION_ERR
        }
        Ok(other) => {
            io.log(
                Level::Err,
                &format!("kauthd answered a session close with {}", kind(&other)),
            );
            PamResultCode::PAM_SESSION_ERR
        }
        Err(e) => {
            io.log(Level::Err, &format!("closing the session failed: {e}"));
            PamResultCode::PAM_SESSION_ERR
        }
    }
}

/// Session ids go into the environment and logs: printable ASCII only.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use crate::testing::{Args, FakeDaemon, FakePam};

    fn opened_with(id: &'static str) -> (PamResultCode, FakePam) {
        let daemon = FakeDaemon::serve(move |peer| {
            match peer.recv() {
                Some(Request::SessionOpen { user, rhost, .. }) => {
                    assert_eq!(user, "ann");
                    assert_eq!(rhost.as_deref(), Some("192.0.2.7"));
                }
                other => panic!("{other:?}"),
            }
            peer.send(Response::SessionOpened { id: id.into() });
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        (open_session(&mut pam, &args.as_refs(), 0), pam)
    }

    #[test]
    fn open_exports_the_session_id() {
        let (code, pam) = opened_with("s-7f3a9c");
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert_eq!(
            pam.env.get(SESSION_VAR).map(String::as_str),
            Some("s-7f3a9c")
        );
    }

    #[test]
    fn unusable_session_id_is_not_exported() {
        let (code, pam) = opened_with("x\nLD_PRELOAD=/tmp/evil.so");
        assert_eq!(code, PamResultCode::PAM_SESSION_ERR);
        assert!(pam.env.is_empty());
    }

    #[test]
    fn open_fails_when_refused() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Error {
                code: ErrorCode::Forbidden,
                message: "not a PAM caller".into(),
            });
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(
            open_session(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SESSION_ERR
        );
    }

    #[test]
    fn close_without_an_id_has_nothing_to_do() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &[]);
        assert_eq!(
            close_session(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
    }

    #[test]
    fn close_ends_the_session_named_in_the_environment() {
        let daemon = FakeDaemon::serve(|peer| {
            match peer.recv() {
                Some(Request::SessionClose { id }) => assert_eq!(id, "s-1"),
                other => panic!("{other:?}"),
            }
            peer.send(Response::Done);
        });
        let mut pam = FakePam::new("ann");
        pam.env.insert(SESSION_VAR.into(), "s-1".into());
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(
            close_session(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(daemon.received().len(), 1);
    }

    #[test]
    fn close_of_an_already_ended_session_succeeds() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Error {
                code: ErrorCode::NotFound,
                message: "no such session".into(),
            });
        });
        let mut pam = FakePam::new("ann");
        pam.env.insert(SESSION_VAR.into(), "s-1".into());
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(
            close_session(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
    }

    #[test]
    fn close_with_daemon_gone_fails_unless_failmode_safe() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        pam.env.insert(SESSION_VAR.into(), "s-1".into());
        let secure = Args::for_socket(&nowhere, &[]);
        let safe = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
        assert_eq!(
            close_session(&mut pam, &secure.as_refs(), 0),
            PamResultCode::PAM_SESSION_ERR
        );
        assert_eq!(
            close_session(&mut pam, &safe.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
    }
}
