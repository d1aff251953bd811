//! `kauthctl sessions …` and `kauthctl activity`.

use kauth_proto::{Client, Request, Response};
use kauthd::clock::{self, format_time};
use serde_json::json;

use crate::args::SessionsAction;
use crate::connection::{call, fetch_pages};
use crate::output::{cell, json_text, Failure, Output};
use crate::prompt;

/// The session this kauthctl runs in, if PAM exported its id.
fn current_session() -> Option<String> {
    std::env::var("KAUTH_SESSION_ID")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn run(
    user: Option<&str>,
    action: Option<&SessionsAction>,
    client: &mut Client,
    out: &Output,
) -> Result<(), Failure> {
    match action {
        None => list(user, client, out),
        Some(SessionsAction::SignOut {
            id,
            all,
            yes,
            user: whose,
        }) => sign_out(
            id.as_deref(),
            *all,
            *yes,
            whose.as_deref().or(user),
            client,
            out,
        ),
        Some(SessionsAction::Check { id }) => {
            match call(client, &Request::SessionCheck { id: id.clone() })? {
                Response::SessionValidity { id, valid, user } => {
                    let text = if valid {
                        format!("session {id} is valid")
                    } else {
                        format!("session {id} is not valid (signed out, closed or unknown)")
                    };
                    if valid {
                        out.success(&text, json!({"id": id, "valid": true, "user": user}));
                        Ok(())
                    } else if out.is_json() {
                        let doc = json!({"ok": true, "id": id, "valid": false, "user": user});
                        println!("{}", json_text(&doc));
                        Err(Failure::silent())
                    } else {
                        Err(Failure::failed("invalid", text))
                    }
                }
                other => Err(Failure::from_response(other)),
            }
        }
    }
}

/// `sessions sign-out ID` or `--all`. `--all` ends the session this
/// command runs in too: kauthctl says so and asks first, unless --yes.
fn sign_out(
    id: Option<&str>,
    all: bool,
    yes: bool,
    user: Option<&str>,
    client: &mut Client,
    out: &Output,
) -> Result<(), Failure> {
    let request = |dry_run: bool| Request::SignOut {
        id: id.map(str::to_owned),
        user: user.map(str::to_owned),
        all,
        dry_run,
    };
    if all && !yes {
        let (ids, current) = match call(client, &request(true))? {
            Response::SignedOut { ids, current } => (ids, current),
            other => return Err(Failure::from_response(other)),
        };
        if ids.is_empty() {
            out.success("no open sessions to sign out", json!({ "signed_out": ids }));
            return Ok(());
        }
        let what = match (ids.len(), current.is_some()) {
            (1, true) => "the session this command runs in (you will be disconnected)".to_owned(),
            (n, true) => {
                format!("{n} sessions, including the one this command runs in (you will be disconnected)")
            }
            (1, false) => "1 session".to_owned(),
            (n, false) => format!("{n} sessions"),
        };
        if out.is_json() || !prompt::interactive() {
            return Err(Failure::failed(
                "confirmation_needed",
                format!("sign-out --all would sign out {what}; add --yes to confirm"),
            ));
        }
        if !prompt::confirm(&format!("This signs out {what}. Go on?"))
            .map_err(|m| Failure::failed("invalid", m))?
        {
            return Err(Failure::failed(
                "cancelled",
                "nothing was signed out".to_owned(),
            ));
        }
    }
    match call(client, &request(false))? {
        Response::SignedOut { ids, current } => {
            let mut text = match ids.len() {
                0 => "no open sessions to sign out".to_owned(),
                1 => format!("signed out session {}", cell(&ids[0])),
                n => format!("signed out {n} sessions"),
            };
            if current.is_some() {
                text.push_str(", including the one this command runs in");
            }
            out.success(&text, json!({ "signed_out": ids, "current": current }));
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

fn list(user: Option<&str>, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let sessions = fetch_pages(
        client,
        None,
        |after, limit| Request::Sessions {
            user: user.map(str::to_owned),
            after,
            limit,
        },
        |answer| match answer {
            Response::SessionList { sessions, next } => Ok((sessions, next)),
            other => Err(Failure::from_response(other)),
        },
    )?;
    let current = current_session();
    let mut text = format!(
        "  {:<32} {:<16} {:<12} {:<16} {:<8} {:<19} {:<19} {}",
        "ID", "USER", "SERVICE", "FROM", "TTY", "STARTED", "LAST ACTIVE", "CLIENT"
    );
    let mut rows = Vec::new();
    for s in &sessions {
        let mine = current.as_deref() == Some(s.id.as_str());
        text.push_str(&format!(
            "\n{} {:<32} {:<16} {:<12} {:<16} {:<8} {:<19} {:<19} {}",
            if mine { "*" } else { " " },
            cell(&s.id),
            cell(&s.user),
            cell(&s.service),
            cell(s.rhost.as_deref().unwrap_or("local")),
            cell(s.tty.as_deref().unwrap_or("-")),
            format_time(s.started),
            s.last_active.map_or_else(|| "-".to_owned(), format_time),
            cell(s.client.as_deref().unwrap_or("-"))
        ));
        let mut row = serde_json::to_value(s).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut row {
            map.insert("current".to_owned(), json!(mine));
        }
        rows.push(row);
    }
    if current.is_some() {
        text.push_str("\n(* this session)");
    }
    out.success(&text, json!({ "sessions": rows }));
    Ok(())
}

pub fn activity(
    since: Option<&str>,
    user: Option<&str>,
    limit: u32,
    client: &mut Client,
    out: &Output,
) -> Result<(), Failure> {
    let since = match since {
        Some(text) => Some(parse_when(text, clock::now()).ok_or_else(|| {
            Failure::usage(format!(
                "--since {text:?}: give a date (2026-11-01), a date and time (2026-11-01 14:00), a Unix time, or an age like 30m, 12h, 7d"
            ))
        })?),
        None => None,
    };
    let want = usize::try_from(limit).unwrap_or(usize::MAX);
    let events = fetch_pages(
        client,
        Some(want),
        |after, limit| Request::Activity {
            user: user.map(str::to_owned),
            since,
            limit,
            after,
        },
        |answer| match answer {
            Response::ActivityList { events, next } => Ok((events, next)),
            other => Err(Failure::from_response(other)),
        },
    )?;
    let mut text = format!(
        "{:<19}  {:<16} {:<26} {:<12} {:<16} {}",
        "WHEN (UTC)", "USER", "EVENT", "SERVICE", "FROM", "DETAIL"
    );
    for e in &events {
        text.push_str(&format!(
            "\n{:<19}  {:<16} {:<26} {:<12} {:<16} {}",
            format_time(e.at),
            cell(e.user.as_deref().unwrap_or("-")),
            cell(&e.event),
            cell(e.service.as_deref().unwrap_or("-")),
            cell(e.rhost.as_deref().unwrap_or("-")),
            cell(&e.detail)
        ));
    }
    out.success(&text, json!({ "events": events }));
    Ok(())
}

/// A date, a date and time, a Unix time, or an age (`30m`, `12h`, `7d`).
fn parse_when(text: &str, now: i64) -> Option<i64> {
    let text = text.trim();
    if let Some(number) = text.strip_suffix(['s', 'm', 'h', 'd']) {
        let n: i64 = number.parse().ok()?;
        let unit = match text.chars().last()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        return Some(now - n * unit);
    }
    if let Ok(unix) = text.parse::<i64>() {
        return Some(unix);
    }
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut at = clock::parse_date(date)?;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next().unwrap_or("0").parse().ok()?;
        let s: i64 = parts.next().unwrap_or("0").parse().ok()?;
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        at += h * 3600 + m * 60 + s;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn when_accepts_dates_times_unix_and_ages() {
        assert_eq!(parse_when("1970-01-02", 0), Some(86_400));
        assert_eq!(parse_when("1970-01-01 01:30", 0), Some(5_400));
        assert_eq!(parse_when("12345", 0), Some(12_345));
        assert_eq!(parse_when("2h", 10_000), Some(2_800));
        assert_eq!(parse_when("soon", 0), None);
    }
}
