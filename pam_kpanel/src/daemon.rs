//! Opening a checked connection to kauthd, and what `failmode=` does when
//! that is impossible.

use kauth_proto::{Client, ClientError, FrameError};
use pam::constants::PamResultCode;

use crate::options::{FailMode, Options};
use crate::pam_io::{Level, PamIo};

/// The name this module gives in `Hello`.
const CLIENT_NAME: &str = "pam_kpanel";

/// Why no usable connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nobody answered in time (no socket, refused, timed out, hung up
    /// during the handshake). This is what `failmode=` is about.
    Unreachable(ClientError),
    /// Something answered but is not a kauthd we may trust or understand
    /// (wrong uid, wrong protocol version, garbage). Always fails closed.
    Broken(ClientError),
}

/// Connects to the socket named in the options and says hello. The
/// listener must run as root, as our own effective uid (a daemon running as
/// the application's uid could tamper with the application anyway) or as
/// `daemon_uid=`.
pub fn connect(opts: &Options) -> Result<Client, ConnectError> {
    let mut trusted = vec![0, effective_uid()];
    trusted.extend(opts.daemon_uid);
    trusted.sort_unstable();
    trusted.dedup();
    Client::connect(&opts.socket, opts.timeout, &trusted, CLIENT_NAME).map_err(classify)
}

fn classify(err: ClientError) -> ConnectError {
    match err {
        ClientError::Unreachable(_)
        | ClientError::Frame(FrameError::Io(_))
        | ClientError::Frame(FrameError::Closed) => ConnectError::Unreachable(err),
        other => ConnectError::Broken(other),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The result for a hook that could not reach kauthd: `secure_code` under
/// `failmode=secure`, success (logged at warning level) under
/// `failmode=safe`. A listener that is there but wrong always fails closed.
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
    fn only_an_absent_or_silent_daemon_counts_as_unreachable() {
        let missing = ClientError::Unreachable(io::ErrorKind::NotFound.into());
        let hung_up = ClientError::Frame(FrameError::Closed);
        let untrusted = ClientError::UntrustedPeer { uid: 4242 };
        let garbage = ClientError::Frame(FrameError::Malformed("x".into()));
        let version = ClientError::Version { ours: 1, theirs: 2 };
        assert!(matches!(classify(missing), ConnectError::Unreachable(_)));
        assert!(matches!(classify(hung_up), ConnectError::Unreachable(_)));
        assert!(matches!(classify(untrusted), ConnectError::Broken(_)));
        assert!(matches!(classify(garbage), ConnectError::Broken(_)));
        assert!(matches!(classify(version), ConnectError::Broken(_)));
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
