//! Sessions (open, close, list, sign out, check) and the activity list.

use kauth_proto::{ErrorCode, Response};

use super::{error, paging, Reply};
use crate::clock;
use crate::daemon::Daemon;
use crate::names;
use crate::server::access::{own_name, Caller};
use crate::server::refusal_log;
use crate::sessions::SessionState;
use crate::sessions::{self, OpenArgs};
use crate::store::{ActivityPosition, SessionPosition};

/// Events in an `activity` answer when the request gives no `limit`.
const DEFAULT_EVENTS: u32 = 200;

fn privileged_only(caller: &Caller, what: &str) -> Option<Response> {
    if caller.is_privileged() {
        return None;
    }
    refusal_log::warn(
        caller,
        format_args!(
            "refused {what} for {}: not root and not in [access] pam_callers",
            caller.describe()
        ),
    );
    Some(error(
        ErrorCode::Forbidden,
        format!(
            "{} may not {what}; add it to [access] pam_callers",
            caller.describe()
        ),
    ))
}

pub fn open(
    daemon: &Daemon,
    caller: &Caller,
    user: &str,
    service: &str,
    rhost: Option<&str>,
    tty: Option<&str>,
) -> Response {
    if let Some(refusal) = privileged_only(caller, "open sessions") {
        return refusal;
    }
    if let Err(why) = names::check_login_name(user) {
        return Response::from(why);
    }
    let args = OpenArgs {
        user,
        service,
        rhost: rhost.filter(|h| !h.is_empty()),
        tty: tty.filter(|t| !t.is_empty()),
        pid: caller.pid,
    };
    match sessions::open(daemon, &args) {
        Ok(id) => Response::SessionOpened { id },
        Err(why) => {
            log::error!("cannot record a session: {why}");
            error(
                ErrorCode::Internal,
                "kauthd could not record the session; see its log",
            )
        }
    }
}

pub fn close(daemon: &Daemon, caller: &Caller, id: &str) -> Response {
    if let Some(refusal) = privileged_only(caller, "close sessions") {
        return refusal;
    }
    // Bind the lookup first: the store lock must be released before
    // `sessions::close` takes it again.
    let found = daemon.store().session(id);
    match found {
        Ok(Some(record)) => match sessions::close(daemon, &record) {
            Ok(()) => Response::Done,
            Err(e) => Response::from(e),
        },
        Ok(None) => error(ErrorCode::NotFound, "no such session"),
        Err(e) => Response::from(e),
    }
}

/// Whose sessions or activity a request is about: the caller's own, or
/// (root, PAM callers) the named user's or — with no name — everyone's.
fn scope(daemon: &Daemon, caller: &Caller, user: Option<&str>) -> Result<Option<String>, Response> {
    if caller.is_privileged() {
        return Ok(user.map(str::to_owned));
    }
    let own = own_name(daemon, caller)?.ok_or_else(|| {
        error(
            ErrorCode::NotFound,
            format!("{} has no user name in /etc/passwd", caller.describe()),
        )
    })?;
    match user {
        Some(name) if name != own => Err(error(
            ErrorCode::Forbidden,
            format!("you may only see your own sessions and activity, not {name}'s"),
        )),
        _ => Ok(Some(own)),
    }
}

/// One page of open sessions, oldest first, after `after`.
pub fn list(
    daemon: &Daemon,
    caller: &Caller,
    user: Option<&str>,
    after: Option<&str>,
    limit: Option<u32>,
) -> Reply {
    let user = scope(daemon, caller, user)?;
    let from = match after {
        Some(cursor) => {
            let (started, id) = paging::parse_position(cursor)?;
            Some(SessionPosition {
                started,
                id: id.to_owned(),
            })
        }
        None => None,
    };
    let size = paging::page_size(limit, paging::MAX_ROWS);
    let rows = sessions::list(daemon, user.as_deref(), from.as_ref(), size + 1)?;
    let (sessions, next) = paging::fit(rows, size, |s| paging::position_cursor(s.started, &s.id));
    Ok(Response::SessionList { sessions, next })
}

pub fn sign_out(
    daemon: &Daemon,
    caller: &Caller,
    id: Option<&str>,
    user: Option<&str>,
    all: bool,
) -> Response {
    let by = caller.describe();
    match (id, all) {
        (Some(id), false) => {
            let record = match daemon.store().session(id) {
                Ok(Some(record)) if record.state == SessionState::Open => record,
                Ok(_) => {
                    return error(
                        ErrorCode::NotFound,
                        format!("no open session {id}; `kauthctl sessions` lists them"),
                    )
                }
                Err(e) => return Response::from(e),
            };
            if let Err(response) = scope(daemon, caller, Some(&record.info.user)) {
                return response;
            }
            match sessions::sign_out(daemon, &record, &by) {
                Ok(true) => Response::SignedOut {
                    ids: vec![record.info.id],
                },
                Ok(false) => error(ErrorCode::NotFound, "that session had already ended"),
                Err(e) => Response::from(e),
            }
        }
        (None, true) => {
            let user = match scope(daemon, caller, user) {
                Ok(Some(user)) => user,
                Ok(None) => {
                    return error(
                        ErrorCode::Invalid,
                        "name the user whose sessions to sign out (--user NAME)",
                    )
                }
                Err(response) => return response,
            };
            match sessions::sign_out_user(daemon, &user, None, &by) {
                Ok(ids) => Response::SignedOut { ids },
                Err(e) => Response::from(e),
            }
        }
        _ => error(ErrorCode::Invalid, "give either a session id or --all"),
    }
}

pub fn check(daemon: &Daemon, caller: &Caller, id: &str) -> Reply {
    if let Some(refusal) = privileged_only(caller, "check sessions") {
        return Err(refusal);
    }
    sessions::reap(daemon, None)?;
    let record = daemon.store().session(id)?;
    Ok(Response::SessionValidity {
        id: id.to_owned(),
        valid: record
            .as_ref()
            .is_some_and(|record| record.state == SessionState::Open),
        user: record.map(|record| record.info.user),
    })
}

/// What an `activity` request asks for.
#[derive(Debug)]
pub struct ActivityArgs<'a> {
    pub user: Option<&'a str>,
    pub since: Option<i64>,
    pub limit: Option<u32>,
    pub after: Option<&'a str>,
}

/// One page of events, newest first, after `after`.
pub fn activity(daemon: &Daemon, caller: &Caller, args: &ActivityArgs<'_>) -> Reply {
    let user = scope(daemon, caller, args.user)?;
    let since = args.since.unwrap_or_else(|| clock::now() - 30 * 86_400);
    let from = match args.after {
        Some(cursor) => {
            let (at, id) = paging::parse_position(cursor)?;
            let id = id.parse().map_err(|_| paging::bad_cursor())?;
            Some(ActivityPosition { at, id })
        }
        None => None,
    };
    let size = paging::page_size(args.limit, DEFAULT_EVENTS);
    let rows = daemon
        .store()
        .activity(user.as_deref(), since, from, size + 1)?;
    let (rows, next) = paging::fit(rows, size, |r| {
        paging::position_cursor(r.position.at, r.position.id)
    });
    let events = rows.into_iter().map(|r| r.event).collect();
    Ok(Response::ActivityList { events, next })
}
