//! Opening a checked connection to kauthd, and what `failmode=` does when
//! that is impossible.

use kauth_proto::module_options::{FailMode, Options};
use kauth_proto::{Client, ClientError, Request, Response};
use pam::constants::PamResultCode;

use crate::pam_io::{Level, PamIo};

/// The name this module gives in `Hello`.
const CLIENT_NAME: &str = "pam_kpanel";

/// Why no usable connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens: no socket at the path, or nobody accepting on it
    /// (ENOENT, ECONNREFUSED). This is the only case `failmode=` is about.
    Unreachable(ClientError),
    /// Something is there but gave no usable connection: not accepted in
    /// time, busy, hung up or silent after connecting, not a kauthd we may
    /// trust (wrong uid) or understand (version, garbage). Always fails
    /// closed: an attacker who can make kauthd busy or slow must not turn
    /// `failmode=safe` into a way around the code.
    Broken(ClientError),
}

/// Connects to the socket named in the options and says hello. The
/// listener must run as root, as our own effective uid (a daemon running as
/// the application's uid could tamper with the application anyway) or as
/// `daemon_uid=`.
pub fn connect(opts: &Options) -> Result<Client, ConnectError> {
    Client::connect(&opts.socket, opts.timeout, &trusted_uids(opts), CLIENT_NAME).map_err(classify)
}

/// [`connect`] with `first` sent right behind the hello (one round trip
/// less); returns the client and the answer to `first`.
pub fn connect_and_call(
    opts: &Options,
    first: &Request,
) -> Result<(Client, Response), ConnectError> {
    Client::connect_and_call(
        &opts.socket,
        opts.timeout,
        &trusted_uids(opts),
        CLIENT_NAME,
        first,
    )
    .map_err(classify)
}

fn trusted_uids(opts: &Options) -> Vec<u32> {
    let mut trusted = vec![0, effective_uid()];
    trusted.extend(opts.daemon_uid);
    trusted.sort_unstable();
    trusted.dedup();
    trusted
}

fn classify(err: ClientError) -> ConnectError {
    match err {
        ClientError::Unreachable(_) => ConnectError::Unreachable(err),
        other => ConnectError::Broken(other),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The result for a hook that could not reach kauthd: `secure_code` under
/// `failmode=secure`, success (logged at warning level) under
/// `failmode=safe`. A listener that is there but busy, silent or wrong
/// always fails closed.
pub fn unreachable_outcome(
    io: &dyn PamIo,
    opts: &Options,
    err: &ConnectError,
    secure_code: PamResultCode,
) -> PamResultCode {
    match (err, opts.failmode) {
        (ConnectError::Unreachable(e), FailMode::Safe) => {
            io.log(
                Level::Warning,
                &format!(
                    "kauthd unreachable ({e}); letting the login through on the first factor alone because failmode=safe"
                ),
            );
            PamResultCode::PAM_SUCCESS
        }
        (ConnectError::Unreachable(e), FailMode::Secure) => {
            io.log(Level::Err, &format!("{e}; failing because failmode=secure"));
            secure_code
        }
        (ConnectError::Broken(e), _) => {
            io.log(Level::Err, &format!("{e}; failing closed"));
            secure_code
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use kauth_proto::FrameError;

    use super::*;
    use crate::testing::FakePam;

    fn safe() -> Options {
        Options {
            otp_only: true,
            failmode: FailMode::Safe,
            ..Options::default()
        }
    }

    #[test]
    fn only_a_daemon_that_is_not_listening_counts_as_unreachable() {
        let missing = ClientError::Unreachable(io::ErrorKind::NotFound.into());
        let refused = ClientError::Unreachable(io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(classify(missing), ConnectError::Unreachable(_)));
        assert!(matches!(classify(refused), ConnectError::Unreachable(_)));
        for there in [
            ClientError::Connect(io::ErrorKind::TimedOut.into()),
            ClientError::Busy("all 2 slots are in use".into()),
            ClientError::Frame(FrameError::Closed),
            ClientError::Frame(FrameError::Io(io::ErrorKind::BrokenPipe.into())),
            ClientError::Frame(FrameError::Io(io::ErrorKind::ConnectionReset.into())),
            ClientError::Frame(FrameError::Io(io::ErrorKind::WouldBlock.into())),
            ClientError::UntrustedPeer { uid: 4242 },
            ClientError::Frame(FrameError::Malformed("x".into())),
            ClientError::Version { ours: 1, theirs: 2 },
        ] {
            let shown = there.to_string();
            assert!(
                matches!(classify(there), ConnectError::Broken(_)),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_busy_daemon_fails_closed_even_with_failmode_safe() {
        let pam = FakePam::new("ann");
        let busy = ClientError::Busy("kauthd is serving its maximum of 2 connections".into());
        let code = unreachable_outcome(
            &pam,
            &safe(),
            &classify(busy),
            PamResultCode::PAM_AUTHINFO_UNAVAIL,
        );
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        let errors = pam.logged(Level::Err);
        assert!(errors[0].starts_with("kauthd is busy"), "{errors:?}");
        assert!(errors[0].ends_with("; failing closed"), "{errors:?}");
        assert!(pam.logged(Level::Warning).is_empty());
    }

    #[test]
    fn untrusted_listener_fails_closed_even_with_failmode_safe() {
        let pam = FakePam::new("ann");
        let err = ConnectError::Broken(ClientError::UntrustedPeer { uid: 4242 });
        let code = unreachable_outcome(&pam, &safe(), &err, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(pam.logged(Level::Err)[0].contains("4242"));
    }

    #[test]
    fn failmode_safe_lets_through_only_when_unreachable() {
        let pam = FakePam::new("ann");
        let err = ConnectError::Unreachable(ClientError::Unreachable(
            io::ErrorKind::ConnectionRefused.into(),
        ));
        let code = unreachable_outcome(&pam, &safe(), &err, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert!(pam.logged(Level::Warning)[0].contains("failmode=safe"));
    }
}
