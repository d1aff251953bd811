//! Recording what happened: every event goes to syslog (authpriv) and to
//! the store. Callers pass no secret; the detail is for people.

use crate::clock;
use crate::daemon::Daemon;
use crate::escape;
use crate::store::NewEvent;

/// What an activity event records. The names are the ones stored in the
/// database, written to syslog and sent on the wire (`login_success`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    LoginSuccess,
    LoginFailure,
    Lockout,
    RecoveryCodeUsed,
    GuardReset,
    Enroll,
    EnrollCancelled,
    RecoveryCodesRegenerated,
    Disable,
    PasswordChanged,
    PasswordChangeFailure,
    PasswordReset,
    ResetTokenCreated,
    SessionOpen,
    SessionClose,
    SignOut,
    /// An administrator's action on an account.
    Admin,
    /// kauthd learned how far the user's authenticator clock is off.
    ClockOffset,
}

/// How loud an event is in syslog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
}

impl EventKind {
    /// The stored and logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginSuccess => "login_success",
            EventKind::LoginFailure => "login_failure",
            EventKind::Lockout => "lockout",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::GuardReset => "guard_reset",
            EventKind::Enroll => "enroll",
            EventKind::EnrollCancelled => "enroll_cancelled",
            EventKind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            EventKind::Disable => "disable",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordChangeFailure => "password_change_failure",
            EventKind::PasswordReset => "password_reset",
            EventKind::ResetTokenCreated => "reset_token_created",
            EventKind::SessionOpen => "session_open",
            EventKind::SessionClose => "session_close",
            EventKind::SignOut => "sign_out",
            EventKind::Admin => "admin",
            EventKind::ClockOffset => "clock_offset",
        }
    }

    /// A failed attempt that locked nothing (a lockout is an event of its own).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::LoginFailure | EventKind::PasswordChangeFailure
        )
    }

    /// Failures and lockouts are warnings; everything else is information.
    pub fn severity(self) -> Severity {
        match self {
            EventKind::LoginFailure | EventKind::PasswordChangeFailure | EventKind::Lockout => {
                Severity::Warning
            }
            EventKind::LoginSuccess
            | EventKind::RecoveryCodeUsed
            | EventKind::GuardReset
            | EventKind::Enroll
            | EventKind::EnrollCancelled
            | EventKind::RecoveryCodesRegenerated
            | EventKind::Disable
            | EventKind::PasswordChanged
            | EventKind::PasswordReset
            | EventKind::ResetTokenCreated
            | EventKind::SessionOpen
            | EventKind::SessionClose
            | EventKind::SignOut
            | EventKind::Admin
            | EventKind::ClockOffset => Severity::Info,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records an event at info level (failures at warning level). A
/// failure's row is held in memory and written behind, with the others of
/// its batch (see `store::write_behind`): it may be lost on a `kill -9` of
/// kauthd or a power loss, within a second of it.
pub fn record(daemon: &Daemon, event: &NewEvent<'_>) {
    log(event);
    let now = clock::now();
    let stored = if event.event.is_failure() {
        daemon.store().record_failure_activity(event, now)
    } else {
        daemon.store().record_activity(event, now)
    };
    if let Err(e) = stored {
        log::error!("could not store an activity event: {e}");
    }
}

/// Writes an event's line to syslog only (its row is stored elsewhere).
pub fn log(event: &NewEvent<'_>) {
    let line = format!(
        "{} {}",
        line_head(event.event, event.user, event.service, event.rhost),
        event.detail
    );
    // The same values as fields, for the journal (`journalctl
    // KAUTH_USER=ann`); `-` for a value not given, as in the line.
    let field = |value: Option<&str>| value.map_or_else(|| "-".to_owned(), escape::for_log);
    let (user, service, rhost) = (field(event.user), field(event.service), field(event.rhost));
    let kind = event.event.as_str();
    match event.event.severity() {
        Severity::Warning => log::warn!(
            KAUTH_EVENT = kind, KAUTH_USER = user.as_str(), KAUTH_SERVICE = service.as_str(),
            KAUTH_RHOST = rhost.as_str(); "{line}"
        ),
        Severity::Info => log::info!(
            KAUTH_EVENT = kind, KAUTH_USER = user.as_str(), KAUTH_SERVICE = service.as_str(),
            KAUTH_RHOST = rhost.as_str(); "{line}"
        ),
    }
}

/// The start of every event's log line, a stable format that fail2ban's
/// filter (`packaging/fail2ban/`) and the README rely on:
/// `EVENT: user=USER service=SERVICE rhost=RHOST` (`-` for a value not
/// given). Each value is escaped and has its spaces written `\x20`, so a
/// value cannot pass for another field (a service named `x rhost=1.2.3.4`
/// cannot make fail2ban ban that address).
pub fn line_head(
    event: EventKind,
    user: Option<&str>,
    service: Option<&str>,
    rhost: Option<&str>,
) -> String {
    let shown = |value: Option<&str>| {
        value.map_or_else(
            || "-".to_owned(),
            |v| escape::for_log(v).replace(' ', "\\x20"),
        )
    };
    format!(
        "{event}: user={} service={} rhost={}",
        shown(user),
        shown(service),
        shown(rhost)
    )
}

/// Shorthand for the common case.
pub fn event(daemon: &Daemon, user: Option<&str>, event: EventKind, detail: &str) {
    record(
        daemon,
        &NewEvent {
            user,
            event,
            detail,
            service: None,
            rhost: None,
        },
    );
}

/// An event of a login on `service` (success, failure, password change).
pub fn login_event(
    daemon: &Daemon,
    user: &str,
    service: &str,
    rhost: Option<&str>,
    event: EventKind,
    detail: &str,
) {
    record(
        daemon,
        &NewEvent {
            user: Some(user),
            event,
            service: Some(service),
            rhost,
            detail,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_in_a_line_cannot_pass_for_another_field() {
        assert_eq!(
            line_head(
                EventKind::LoginFailure,
                Some("ann"),
                Some("x rhost=192.0.2.1"),
                Some("2001:db8::1")
            ),
            "login_failure: user=ann service=x\\x20rhost=192.0.2.1 rhost=2001:db8::1"
        );
        assert_eq!(
            line_head(EventKind::Lockout, None, None, Some("a b")),
            "lockout: user=- service=- rhost=a\\x20b"
        );
    }

    #[test]
    fn names_match_the_serde_names_and_failures_are_warnings() {
        for kind in [
            EventKind::LoginSuccess,
            EventKind::LoginFailure,
            EventKind::Lockout,
            EventKind::PasswordChangeFailure,
            EventKind::RecoveryCodesRegenerated,
            EventKind::SignOut,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            let warns = kind.as_str().ends_with("failure") || kind == EventKind::Lockout;
            assert_eq!(kind.severity() == Severity::Warning, warns, "{kind}");
        }
    }
}
