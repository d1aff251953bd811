//! PAM `password`: a password change driven by kauthd (it asks for the
//! current password, then the new one twice).
//!
//! PAM_PRELIM_CHECK: PAM_SUCCESS when kauthd is reachable, PAM_TRY_AGAIN
//! otherwise. PAM_UPDATE_AUTHTOK: Success → PAM_SUCCESS, Denied and Locked
//! → PAM_AUTHTOK_ERR, a refused or oversized answer → PAM_AUTHTOK_ERR,
//! kauthd unreachable or broken → PAM_AUTHINFO_UNAVAIL. `failmode=safe`
//! does not apply: a password change that did not happen is no success.

use std::ffi::CStr;

use kauth_proto::{LoginMode, Request};
use pam::constants::{PamFlag, PamResultCode};

use crate::context::{gather, load_options};
use crate::daemon::{connect, ConnectError};
use crate::ffi::{PAM_PRELIM_CHECK, PAM_SILENT, PAM_UPDATE_AUTHTOK};
use crate::pam_io::{Level, PamIo};
use crate::relay::{hook_code, relay};

pub fn chauthtok(io: &mut dyn PamIo, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let Some(opts) = load_options(io, args) else {
        return PamResultCode::PAM_SERVICE_ERR;
    };
    if flags & PAM_PRELIM_CHECK != 0 {
        return match connect(&opts) {
            Ok(_) => PamResultCode::PAM_SUCCESS,
            Err(ConnectError::Unreachable(e) | ConnectError::Broken(e)) => {
                io.log(Level::Err, &format!("password change impossible now: {e}"));
                PamResultCode::PAM_TRY_AGAIN
            }
        };
    }
    if flags & PAM_UPDATE_AUTHTOK == 0 {
        io.log(
            Level::Err,
            "chauthtok called without PAM_PRELIM_CHECK or PAM_UPDATE_AUTHTOK",
        );
        return PamResultCode::PAM_SERVICE_ERR;
    }
    let ctx = match gather(io, &opts) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let mut client = match connect(&opts) {
        Ok(client) => client,
        Err(ConnectError::Unreachable(e) | ConnectError::Broken(e)) => {
            io.log(Level::Err, &format!("password change impossible: {e}"));
            return PamResultCode::PAM_AUTHINFO_UNAVAIL;
        }
    };
    let begin = Request::Begin {
        user: ctx.user,
        service: ctx.service,
        rhost: ctx.rhost,
        tty: ctx.tty,
        ruser: ctx.ruser,
        mode: LoginMode::ChangePassword,
        authtok: None,
        enroll_at_login: false,
        resumable: false,
    };
    let result = relay(io, &mut client, &begin, flags & PAM_SILENT != 0);
    let code = hook_code(io, result, PamResultCode::PAM_AUTHTOK_ERR);
    io.debug(opts.debug, &format!("password change ended: {code:?}"));
    code
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use kauth_proto::{Outcome, Response};

    use super::*;
    use crate::testing::{Args, FakeDaemon, FakePam};

    #[test]
    fn prelim_check_only_needs_a_reachable_daemon() {
        let daemon = FakeDaemon::serve(|peer| assert!(peer.recv().is_none()));
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        let code = chauthtok(&mut pam, &args.as_refs(), PAM_PRELIM_CHECK);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert!(daemon.received().is_empty());

        let (_dir, nowhere) = FakeDaemon::nowhere();
        let args = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
        let code = chauthtok(&mut pam, &args.as_refs(), PAM_PRELIM_CHECK);
        assert_eq!(code, PamResultCode::PAM_TRY_AGAIN);
    }

    fn change(outcome: Outcome) -> (PamResultCode, FakePam) {
        let daemon = FakeDaemon::serve(move |peer| {
            match peer.recv() {
                Some(Request::Begin {
                    mode: LoginMode::ChangePassword,
                    authtok: None,
                    ..
                }) => {}
                other => panic!("{other:?}"),
            }
            for prompt in [
                "Current password: ",
                "New password: ",
                "Retype new password: ",
            ] {
                peer.send(Response::Prompt {
                    echo: false,
                    message: prompt.into(),
                    continuation: None,
                });
                assert!(matches!(peer.recv(), Some(Request::Answer { .. })));
            }
            peer.finish(outcome);
        });
        let mut pam = FakePam::new("ann")
            .answer("old")
            .answer("new")
            .answer("new");
        let args = Args::for_socket(daemon.socket(), &[]);
        (
            chauthtok(&mut pam, &args.as_refs(), PAM_UPDATE_AUTHTOK),
            pam,
        )
    }

    #[test]
    fn update_relays_the_change_conversation() {
        let (code, pam) = change(Outcome::Success);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert_eq!(pam.prompts().len(), 3);
        assert_eq!(change(Outcome::Denied).0, PamResultCode::PAM_AUTHTOK_ERR);
    }

    #[test]
    fn update_with_daemon_gone_is_never_a_success() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
        let code = chauthtok(&mut pam, &args.as_refs(), PAM_UPDATE_AUTHTOK);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
    }
}
