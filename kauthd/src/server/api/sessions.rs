//! Sessions (open, close, list, sign out, check) and the activity list.

use kauth_proto::{ErrorCode, Response};

use super::{error, paging, Reply};
use crate::clock;
use crate::daemon::Daemon;
use crate::names;
use crate::server::access::{own_name, Caller};
use crate::server::client_fields;
use crate::server::refusal_log;
use crate::sessions::SessionState;
use crate::sessions::{self, OpenArgs};
use crate::store::{ActivityPosition, SessionPosition, SessionRecord};

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
    client: Option<&str>,
) -> Response {
    if let Some(refusal) = privileged_only(caller, "open sessions") {
        return refusal;
    }
    if let Err(why) = names::check_login_name(user) {
        return Response::from(why);
    }
    let client =
        client.and_then(|c| client_fields::clean_description(c, client_fields::MAX_SESSION_CLIENT));
    let args = OpenArgs {
        user,
        service,
        rhost: rhost.filter(|h| !h.is_empty()),
        tty: tty.filter(|t| !t.is_empty()),
        pid: caller.pid,
        client: client.as_deref(),
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

/// What a `sign_out` request asks for.
#[derive(Debug)]
pub struct SignOutArgs<'a> {
    /// A session id, or a unique prefix of one.
    pub id: Option<&'a str>,
    pub user: Option<&'a str>,
    pub all: bool,
    /// Only say what would be signed out.
    pub dry_run: bool,
}

/// The fewest hex digits of a session id that may name it.
const MIN_PREFIX: usize = 8;

/// The open session `id` names (the whole id, or a prefix of at least
/// [`MIN_PREFIX`] hex digits that starts exactly one open session the
/// caller may see).
fn resolve_session(daemon: &Daemon, caller: &Caller, id: &str) -> Result<SessionRecord, Response> {
    let not_found = || {
        error(
            ErrorCode::NotFound,
            format!("no open session {id}; `kauthctl sessions` lists them"),
        )
    };
    if id.len() == sessions::ID_LEN {
        let record = daemon.store().session(id)?;
        let record = record
            .filter(|r| r.state == SessionState::Open)
            .ok_or_else(not_found)?;
        scope(daemon, caller, Some(&record.info.user))?;
        return Ok(record);
    }
    if id.len() < MIN_PREFIX
        || id.len() > sessions::ID_LEN
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(error(
            ErrorCode::Invalid,
            format!(
                "{id:?} is not a session id: give the id `kauthctl sessions` shows, or its first {MIN_PREFIX} or more hex digits"
            ),
        ));
    }
    let prefix = id.to_ascii_lowercase();
    let found = daemon.store().open_sessions_with_prefix(&prefix, 20)?;
    let mut mine: Vec<SessionRecord> = found
        .into_iter()
        .filter(|r| scope(daemon, caller, Some(&r.info.user)).is_ok())
        .collect();
    match mine.len() {
        0 => Err(not_found()),
        1 => Ok(mine.remove(0)),
        n => Err(error(
            ErrorCode::Invalid,
            format!(
                "{id} is ambiguous: it starts {n} open sessions ({}); give more of the id",
                mine.iter()
                    .map(|r| r.info.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

pub fn sign_out(daemon: &Daemon, caller: &Caller, args: &SignOutArgs<'_>) -> Reply {
    let by = caller.describe();
    match (args.id, args.all) {
        (Some(id), false) => {
            let record = resolve_session(daemon, caller, id)?;
            let current = sessions::session_of_process(daemon, caller.pid, &record.info.user)
                .filter(|c| *c == record.info.id);
            if args.dry_run {
                return Ok(Response::SignedOut {
                    ids: vec![record.info.id],
                    current,
                });
            }
            if sessions::sign_out(daemon, &record, &by)? {
                Ok(Response::SignedOut {
                    ids: vec![record.info.id],
                    current,
                })
            } else {
                Err(error(ErrorCode::NotFound, "that session had already ended"))
            }
        }
        (None, true) => {
            let Some(user) = scope(daemon, caller, args.user)? else {
                return Err(error(
                    ErrorCode::Invalid,
                    "name the user whose sessions to sign out (--user NAME)",
                ));
            };
            let current = sessions::session_of_process(daemon, caller.pid, &user);
            if args.dry_run {
                let ids: Vec<String> = daemon
                    .store()
                    .open_sessions(Some(&user))?
                    .into_iter()
                    .map(|r| r.info.id)
                    .collect();
                let current = current.filter(|c| ids.contains(c));
                return Ok(Response::SignedOut { ids, current });
            }
            // The caller's own session last, so that everything else is
            // signed out before the caller's connection goes.
            let mut ids = sessions::sign_out_user(daemon, &user, current.as_deref(), &by)?;
            let mut ended_current = None;
            if let Some(id) = current {
                let record = daemon.store().session(&id)?;
                if let Some(record) = record {
                    if sessions::sign_out(daemon, &record, &by)? {
                        ids.push(id.clone());
                        ended_current = Some(id);
                    }
                }
            }
            Ok(Response::SignedOut {
                ids,
                current: ended_current,
            })
        }
        _ => Err(error(
            ErrorCode::Invalid,
            "give either a session id or --all",
        )),
    }
}

pub fn check(daemon: &Daemon, caller: &Caller, id: &str) -> Reply {
    if let Some(refusal) = privileged_only(caller, "check sessions") {
        return Err(refusal);
    }
    sessions::reap(daemon, None)?;
    let record = daemon.store().session(id)?;
    if let Some(record) = record.as_ref() {
        sessions::note_activity(daemon, record);
    }
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
