//! PAM `account`: may this user log in to this service now? kauthd
//! decides (locked accounts, users who must have 2FA but have none) and may
//! show texts before it finishes.
//!
//! Outcome → PAM code: Success → PAM_SUCCESS, Denied and Locked →
//! PAM_PERM_DENIED (PAM_ACCT_EXPIRED would tell the user something false).
//! kauthd unreachable → PAM_AUTHINFO_UNAVAIL, or PAM_SUCCESS under
//! `failmode=safe` (only when nothing listens); a busy or broken daemon →
//! PAM_AUTHINFO_UNAVAIL.

use std::ffi::CStr;

use kauth_proto::Request;
use pam::constants::{PamFlag, PamResultCode};

use crate::context::{gather, load_options};
use crate::daemon::{connect_and_call, unreachable_outcome};
use crate::ffi::PAM_SILENT;
use crate::pam_io::PamIo;
use crate::relay::{hook_code, relay_answer};

pub fn account(io: &mut dyn PamIo, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let Some(opts) = load_options(io, args) else {
        return PamResultCode::PAM_SERVICE_ERR;
    };
    let ctx = match gather(io, &opts) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let check = Request::AccountCheck {
        user: ctx.user,
        service: ctx.service,
    };
    let (mut client, first) = match connect_and_call(&opts, &check) {
        Ok(connected) => connected,
        Err(e) => return unreachable_outcome(io, &opts, &e, PamResultCode::PAM_AUTHINFO_UNAVAIL),
    };
    let result = relay_answer(io, &mut client, first, flags & PAM_SILENT != 0);
    let code = hook_code(io, result, PamResultCode::PAM_PERM_DENIED);
    io.debug(opts.debug, &format!("account check ended: {code:?}"));
    code
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use kauth_proto::{MessageStyle, Outcome, Response};

    use super::*;
    use crate::pam_io::{Level, Style};
    use crate::testing::{Args, FakeDaemon, FakePam};

    fn check(outcome: Outcome) -> (PamResultCode, FakePam) {
        let daemon = FakeDaemon::serve(move |peer| {
            match peer.recv() {
                Some(Request::AccountCheck { user, service }) => {
                    assert_eq!((user.as_str(), service.as_str()), ("ann", "sshd"));
                }
                other => panic!("{other:?}"),
            }
            peer.send(Response::Message {
                style: MessageStyle::Info,
                text: "2FA will be required from 2030-01-01".into(),
            });
            assert!(matches!(peer.recv(), Some(Request::Continue)));
            peer.finish(outcome);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        let code = account(&mut pam, &args.as_refs(), 0);
        (code, pam)
    }

    #[test]
    fn allowed_account_passes_and_texts_are_shown() {
        let (code, pam) = check(Outcome::Success);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert_eq!(pam.shown[0].0, Style::Info);
    }

    #[test]
    fn denied_and_locked_accounts_get_perm_denied() {
        assert_eq!(check(Outcome::Denied).0, PamResultCode::PAM_PERM_DENIED);
        assert_eq!(check(Outcome::Locked).0, PamResultCode::PAM_PERM_DENIED);
    }

    #[test]
    fn unreachable_daemon_fails_unless_failmode_safe() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let secure = Args::for_socket(&nowhere, &[]);
        let safe = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
        assert_eq!(
            account(&mut pam, &secure.as_refs(), 0),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
        assert_eq!(
            account(&mut pam, &safe.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(pam.logged(Level::Warning).len(), 1);
    }

    #[test]
    fn bad_option_fails_closed() {
        let mut pam = FakePam::new("ann");
        let args = Args::new(&["timeout=forever"]);
        assert_eq!(
            account(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SERVICE_ERR
        );
    }
}
