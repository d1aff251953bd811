//! pam_kpanel's arguments from the PAM configuration line, parsed once into
//! a typed value. Anything unknown or malformed is an error, and every hook
//! of the module fails closed on it: a typo in `/etc/pam.d` must never open
//! a door. `kauthctl doctor` checks the lines in `/etc/pam.d` with this same
//! parser, so what it reports is what the module would refuse.

use std::ffi::CStr;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long to wait for kauthd on each exchange unless `timeout=` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `timeout=` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// What to do when kauthd cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Fail: nobody logs in without kauthd (the default).
    Secure,
    /// Let the login through on the first factor alone. Only with `otp_only`.
    Safe,
}

/// Whether to pass the password an earlier module collected (PAM_AUTHTOK).
/// Only password logins use it: with `otp_only` kauthd never sees the
/// first factor, so these options change nothing there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPass {
    /// Do not look at PAM_AUTHTOK; kauthd asks for the password.
    No,
    /// Send PAM_AUTHTOK when there is one (`try_first_pass`).
    Try,
    /// PAM_AUTHTOK is required (`use_first_pass`); without it, fail.
    Use,
}

/// The parsed module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket: PathBuf,
    pub otp_only: bool,
    pub first_pass: FirstPass,
    /// The policy name of this service; PAM_SERVICE when `None`.
    pub service: Option<String>,
    pub failmode: FailMode,
    pub timeout: Duration,
    /// An extra uid trusted to run kauthd (besides root and our own euid).
    pub daemon_uid: Option<u32>,
    pub debug: bool,
    /// With `otp_only`: the administrator vouches that the stack runs this
    /// module only once the first factor passed (sshd's
    /// `AuthenticationMethods publickey,keyboard-interactive`, or a
    /// `requisite` first module), so kauthd may show a required user
    /// without 2FA the setup of a new code. Without it, such a user is
    /// refused: after a `required` module that failed, the setup would be
    /// shown to whoever typed a wrong password.
    pub enroll_at_login: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: PathBuf::from(crate::DEFAULT_SOCKET),
            otp_only: false,
            first_pass: FirstPass::No,
            service: None,
            failmode: FailMode::Secure,
            timeout: DEFAULT_TIMEOUT,
            daemon_uid: None,
            debug: false,
            enroll_at_login: false,
        }
    }
}

/// Why the arguments were refused. The text names the argument, so the
/// administrator can find the line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    NotUtf8,
    Unknown(String),
    Malformed {
        option: &'static str,
        why: &'static str,
    },
    SafeWithoutOtpOnly,
    EnrollWithoutOtpOnly,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::NotUtf8 => write!(f, "a module argument is not valid UTF-8"),
            OptionError::Unknown(arg) => write!(f, "unknown module argument {arg:?}"),
            OptionError::Malformed { option, why } => write!(f, "bad value for {option}=: {why}"),
            OptionError::SafeWithoutOtpOnly => write!(
                f,
                "failmode=safe is only allowed together with otp_only (a password checked by kauthd cannot be skipped)"
            ),
            OptionError::EnrollWithoutOtpOnly => write!(
                f,
                "enroll_at_login is only for otp_only lines (after a kauthd password, enrollment at login needs no option)"
            ),
        }
    }
}

impl std::error::Error for OptionError {}

impl TryFrom<&[&CStr]> for Options {
    type Error = OptionError;

    /// The arguments as libpam hands them to the module.
    fn try_from(args: &[&CStr]) -> Result<Self, Self::Error> {
        let mut options = Options::default();
        for arg in args {
            let arg = arg.to_str().map_err(|_| OptionError::NotUtf8)?;
            options.apply(arg)?;
        }
        options.check()?;
        Ok(options)
    }
}

impl Options {
    /// Parses the argument words of one module line.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Options, OptionError> {
        let mut options = Options::default();
        for arg in args {
            options.apply(arg)?;
        }
        options.check()?;
        Ok(options)
    }

    /// The rules between options, checked once every argument is applied.
    pub fn check(&self) -> Result<(), OptionError> {
        if self.failmode == FailMode::Safe && !self.otp_only {
            return Err(OptionError::SafeWithoutOtpOnly);
        }
        if self.enroll_at_login && !self.otp_only {
            return Err(OptionError::EnrollWithoutOtpOnly);
        }
        Ok(())
    }

    /// Applies one argument word. On an error nothing is changed, so a
    /// caller can go on and find the other bad arguments of the line.
    pub fn apply(&mut self, arg: &str) -> Result<(), OptionError> {
        match arg.split_once('=') {
            None => match arg {
                "otp_only" => self.otp_only = true,
                // use_first_pass is the stricter of the two and wins.
                "use_first_pass" => self.first_pass = FirstPass::Use,
                "try_first_pass" if self.first_pass != FirstPass::Use => {
                    self.first_pass = FirstPass::Try;
                }
                "try_first_pass" => {}
                "debug" => self.debug = true,
                "enroll_at_login" => self.enroll_at_login = true,
                _ => return Err(OptionError::Unknown(shorten(arg))),
            },
            Some(("socket", value)) => self.socket = parse_socket(value)?,
            Some(("service", value)) => self.service = Some(parse_service(value)?),
            Some(("failmode", "secure")) => self.failmode = FailMode::Secure,
            Some(("failmode", "safe")) => self.failmode = FailMode::Safe,
            Some(("failmode", _)) => {
                return Err(OptionError::Malformed {
                    option: "failmode",
                    why: "expected secure or safe",
                })
            }
            Some(("timeout", value)) => self.timeout = parse_timeout(value)?,
            Some(("daemon_uid", value)) => {
                self.daemon_uid = Some(value.parse().map_err(|_| OptionError::Malformed {
                    option: "daemon_uid",
                    why: "expected a numeric uid",
                })?);
            }
            Some(_) => return Err(OptionError::Unknown(shorten(arg))),
        }
        Ok(())
    }
}

fn parse_socket(value: &str) -> Result<PathBuf, OptionError> {
    let malformed = |why| OptionError::Malformed {
        option: "socket",
        why,
    };
    if !value.starts_with('/') {
        return Err(malformed("expected an absolute path"));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if value.len() > 107 {
        return Err(malformed("path is too long for a Unix socket"));
    }
    Ok(PathBuf::from(value))
}

fn parse_service(value: &str) -> Result<String, OptionError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(OptionError::Malformed {
            option: "service",
            why: "expected 1 to 64 letters, digits or - _ . @",
        })
    }
}

fn parse_timeout(value: &str) -> Result<Duration, OptionError> {
    match value.parse::<u64>() {
        Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(OptionError::Malformed {
            option: "timeout",
            why: "expected whole seconds from 1 to 300",
        }),
    }
}

/// Keeps a log line short even when the argument is absurdly long.
fn shorten(arg: &str) -> String {
    arg.chars().take(64).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn parse(args: &[&str]) -> Result<Options, OptionError> {
        let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let borrowed: Vec<&CStr> = owned.iter().map(|c| c.as_c_str()).collect();
        Options::try_from(borrowed.as_slice())
    }

    #[test]
    fn no_arguments_give_the_defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.socket, PathBuf::from("/run/kauthd/kauthd.sock"));
        assert_eq!(o.timeout, Duration::from_secs(10));
        assert_eq!(o.failmode, FailMode::Secure);
    }

    #[test]
    fn every_documented_option_parses() {
        let o = parse(&[
            "socket=/tmp/k.sock",
            "otp_only",
            "try_first_pass",
            "service=panel-api",
            "failmode=safe",
            "timeout=3",
            "daemon_uid=991",
            "debug",
            "enroll_at_login",
        ])
        .unwrap();
        assert!(o.enroll_at_login);
        assert_eq!(o.socket, PathBuf::from("/tmp/k.sock"));
        assert!(o.otp_only && o.debug);
        assert_eq!(o.first_pass, FirstPass::Try);
        assert_eq!(o.service.as_deref(), Some("panel-api"));
        assert_eq!(o.failmode, FailMode::Safe);
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.daemon_uid, Some(991));
    }

    #[test]
    fn use_first_pass_wins_over_try_first_pass() {
        let a = parse(&["try_first_pass", "use_first_pass"]).unwrap();
        let b = parse(&["use_first_pass", "try_first_pass"]).unwrap();
        assert_eq!(a.first_pass, FirstPass::Use);
        assert_eq!(b.first_pass, FirstPass::Use);
    }

    #[test]
    fn unknown_option_fails_closed() {
        assert!(matches!(parse(&["nullok"]), Err(OptionError::Unknown(_))));
        assert!(matches!(parse(&["socket"]), Err(OptionError::Unknown(_))));
        assert!(matches!(parse(&["Debug"]), Err(OptionError::Unknown(_))));
        assert!(matches!(
            parse(&["colour=blue"]),
            Err(OptionError::Unknown(_))
        ));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "socket=relative.sock",
            "socket=",
            "timeout=0",
            "timeout=-1",
            "timeout=1.5",
            "timeout=301",
            "failmode=open",
            "service=",
            "service=a b",
            "daemon_uid=kauthd",
        ] {
            assert!(
                matches!(parse(&[bad]), Err(OptionError::Malformed { .. })),
                "{bad} was accepted"
            );
        }
        let long = format!("socket=/{}", "a".repeat(200));
        assert!(parse(&[long.as_str()]).is_err());
    }

    #[test]
    fn failmode_safe_without_otp_only_is_refused() {
        assert_eq!(
            parse(&["failmode=safe"]),
            Err(OptionError::SafeWithoutOtpOnly)
        );
        assert!(parse(&["failmode=safe", "otp_only"]).is_ok());
    }

    #[test]
    fn enroll_at_login_without_otp_only_is_refused() {
        assert_eq!(
            parse(&["enroll_at_login"]),
            Err(OptionError::EnrollWithoutOtpOnly)
        );
        assert!(
            parse(&["enroll_at_login", "otp_only"])
                .unwrap()
                .enroll_at_login
        );
        assert!(!parse(&["otp_only"]).unwrap().enroll_at_login);
    }

    #[test]
    fn non_utf8_argument_is_refused() {
        let raw = CString::new(vec![b's', 0xff]).unwrap();
        let args = [raw.as_c_str()];
        assert_eq!(Options::try_from(&args[..]), Err(OptionError::NotUtf8));
    }

    #[test]
    fn words_parse_like_the_arguments_libpam_hands_over() {
        let words = ["otp_only", "failmode=safe", "timeout=3"];
        assert_eq!(Options::parse(words), parse(&words));
        assert_eq!(
            Options::parse(["failmode=safe"]),
            Err(OptionError::SafeWithoutOtpOnly)
        );
    }

    #[test]
    fn a_refused_word_changes_nothing() {
        let mut o = Options::default();
        assert!(o.apply("timeout=0").is_err());
        assert!(o.apply("socket=relative").is_err());
        assert_eq!(o, Options::default());
        assert!(o.apply("timeout=5").is_ok());
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

    #[test]
    fn error_text_is_short_for_huge_arguments() {
        let huge = "x".repeat(10_000);
        let err = parse(&[huge.as_str()]).unwrap_err();
        assert!(err.to_string().len() < 200);
    }
}
