//! What the descriptive fields a client sends may look like (PAM service,
//! remote host and user, tty, the client's own name). They end up in log
//! lines, the activity table and terminals, so they must be printable and
//! short. Checked when a request arrives, before anything logs or stores
//! them.

use crate::error::Error;
use kauth_proto::Request;

use crate::escape;

/// A PAM service name (`sshd`, `kpanel`).
pub const MAX_SERVICE: usize = 64;
/// `PAM_RHOST`: a DNS name or an address.
pub const MAX_RHOST: usize = 255;
/// `PAM_TTY` (`pts/3`, `ssh`).
pub const MAX_TTY: usize = 64;
/// `PAM_RUSER`: a user name on the remote side.
pub const MAX_RUSER: usize = 254;
/// The client's name in `hello` (`kauthctl`, `pam_kpanel 1.0`).
pub const MAX_CLIENT: usize = 128;
/// What a session runs in (`session_open`'s `client`: a browser's user
/// agent), as kept.
pub const MAX_SESSION_CLIENT: usize = 200;

/// Refuses a value with a control character or longer than `max` bytes;
/// the message names the field, never repeats the value.
pub fn check(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::invalid(format!(
            "the {field} field is {} bytes long; at most {max} are accepted",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|&c| escape::is_unsafe(c)) {
        return Err(Error::invalid(format!(
            "the {field} field contains a control character ({}); give a printable value",
            escape::escape(&c.to_string())
        )));
    }
    Ok(())
}

/// A free description for people (a browser's user agent), made safe to
/// keep and show rather than refused: unsafe characters (controls, bidi
/// controls) are removed, and the rest is cut to at most `max` bytes at a
/// character boundary. Empty: none.
pub fn clean_description(value: &str, max: usize) -> Option<String> {
    let mut kept = String::with_capacity(value.len().min(max));
    for c in value.chars().filter(|&c| !escape::is_unsafe(c)) {
        if kept.len() + c.len_utf8() > max {
            break;
        }
        kept.push(c);
    }
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

fn check_optional(field: &str, value: Option<&str>, max: usize) -> Result<(), Error> {
    value.map_or(Ok(()), |v| check(field, v, max))
}

/// Checks the descriptive fields of `request`, if it has any.
pub fn check_request(request: &Request) -> Result<(), Error> {
    match request {
        Request::Begin {
            service,
            rhost,
            tty,
            ruser,
            ..
        } => {
            check("service", service, MAX_SERVICE)?;
            check_optional("rhost", rhost.as_deref(), MAX_RHOST)?;
            check_optional("tty", tty.as_deref(), MAX_TTY)?;
            check_optional("ruser", ruser.as_deref(), MAX_RUSER)
        }
        Request::AccountCheck { service, .. } => check("service", service, MAX_SERVICE),
        Request::SessionOpen {
            service,
            rhost,
            tty,
            ..
        } => {
            check("service", service, MAX_SERVICE)?;
            check_optional("rhost", rhost.as_deref(), MAX_RHOST)?;
            check_optional("tty", tty.as_deref(), MAX_TTY)
        }
        Request::LockClear { host } => check("host", host, MAX_RHOST),
        // No descriptive field: nothing to check.
        Request::Hello { .. }
        | Request::Status
        | Request::UserAdd { .. }
        | Request::UserDel { .. }
        | Request::UserList { .. }
        | Request::UserLock { .. }
        | Request::UserUnlock { .. }
        | Request::Answer { .. }
        | Request::Continue
        | Request::SessionClose { .. }
        | Request::TwoFactorStatus { .. }
        | Request::EnrollBegin { .. }
        | Request::EnrollConfirm { .. }
        | Request::TwoFactorDisable { .. }
        | Request::RecoveryCodes { .. }
        | Request::TwoFactorList { .. }
        | Request::TwoFactorImport { .. }
        | Request::ImportGoogleAuthenticator { .. }
        | Request::PolicyShow { .. }
        | Request::PolicySet { .. }
        | Request::Sessions { .. }
        | Request::SignOut { .. }
        | Request::SessionCheck { .. }
        | Request::Activity { .. }
        | Request::PasswordChange { .. }
        | Request::ResetTokenCreate { .. }
        | Request::PasswordReset { .. }
        | Request::Diagnostics
        | Request::TwoFactorResetGuard { .. }
        | Request::Rekey
        | Request::Locks { .. }
        | Request::Resume { .. }
        | Request::Stats => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_pass() {
        assert!(check("rhost", "2001:db8::1", MAX_RHOST).is_ok());
        assert!(check("rhost", "host-1.example.org", MAX_RHOST).is_ok());
        assert!(check("tty", "pts/3", MAX_TTY).is_ok());
        assert!(check("service", "", MAX_SERVICE).is_ok());
    }

    #[test]
    fn control_characters_and_long_values_are_refused_by_field_name() {
        let forged = check("rhost", "1.2.3.4\nkauthd: info: login_success", MAX_RHOST);
        let why = forged.unwrap_err().to_string();
        assert!(why.contains("rhost") && why.contains("\\x0a"), "{why}");
        assert!(!why.contains("login_success"), "{why}");
        assert!(check("tty", "\u{1b}[2J", MAX_TTY).is_err());
        assert!(check("service", "ssh\u{202e}d", MAX_SERVICE).is_err());
        let long = check("service", &"s".repeat(MAX_SERVICE + 1), MAX_SERVICE);
        assert!(long.unwrap_err().to_string().contains("at most 64"));
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let begin = Request::SessionOpen {
            user: "ann".to_owned(),
            service: "sshd".to_owned(),
            rhost: None,
            tty: Some("pts/0\r".to_owned()),
            client: None,
        };
        assert!(check_request(&begin)
            .unwrap_err()
            .to_string()
            .contains("tty"));
        assert!(check_request(&Request::Status).is_ok());
    }

    #[test]
    fn descriptions_lose_unsafe_characters_and_are_cut_at_a_character() {
        let agent = "Mozilla/5.0 (X11)\u{1b}[2J\u{202e} Firefox\n";
        assert_eq!(
            clean_description(agent, MAX_SESSION_CLIENT).as_deref(),
            Some("Mozilla/5.0 (X11)[2J Firefox")
        );
        let long = "é".repeat(150);
        let cut = clean_description(&long, MAX_SESSION_CLIENT).unwrap();
        assert_eq!(cut.len(), 200);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clean_description(" \u{7}\t", MAX_SESSION_CLIENT), None);
    }
}
