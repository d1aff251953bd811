//! Recording what happened: every event goes to syslog (authpriv) and to
//! the store. Callers pass no secret; the detail is for people.

use crate::clock;
use crate::daemon::Daemon;
use crate::escape;
use crate::store::NewEvent;

/// Records an event at info level (failures at warning level).
pub fn record(daemon: &Daemon, event: &NewEvent<'_>) {
    let shown = |value: Option<&str>| value.map_or_else(|| "-".to_owned(), escape::for_log);
    let line = format!(
        "{}: user={} service={} rhost={} {}",
        event.event,
        shown(event.user),
        shown(event.service),
        shown(event.rhost),
        event.detail
    );
    if event.event.ends_with("failure") || event.event == "lockout" {
        log::warn!("{line}");
    } else {
        log::info!("{line}");
    }
    if let Err(e) = daemon.store().record_activity(event, clock::now()) {
        log::error!("could not store an activity event: {e}");
    }
}

/// Shorthand for the common case.
pub fn event(daemon: &Daemon, user: Option<&str>, event: &str, detail: &str) {
    record(
        daemon,
        &NewEvent {
            user,
            event,
            detail,
            ..NewEvent::default()
        },
    );
}

/// An event of a login on `service` (success, failure, password change).
pub fn login_event(
    daemon: &Daemon,
    user: &str,
    service: &str,
    rhost: Option<&str>,
    event: &str,
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
