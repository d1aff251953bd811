//! The connection to kauthd and the request/answer call every command
//! makes. Command modules depend on this module, not on each other.

use std::io::ErrorKind;
use std::time::Duration;

use kauth_proto::{Client, ClientError, FrameError, Request, Response};
use serde_json::json;

use crate::args::Cli;
use crate::output::{Failure, Output};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Who may be listening: root, ourselves (a daemon we started), and the
/// `[access] daemon_user` of the system's kauthd.toml when readable.
fn trusted_uids() -> Vec<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut uids = vec![0, me];
    let default = std::path::Path::new(kauthd::config::DEFAULT_CONFIG);
    if let Ok(config) = kauthd::config::Config::load(default, false) {
        let user = &config.access.daemon_user;
        match user.parse::<u32>() {
            Ok(uid) => uids.push(uid),
            Err(_) => uids.extend(kauthd::unix_users::user_by_name(user).map(|u| u.uid)),
        }
    }
    uids
}

pub fn connect(cli: &Cli) -> Result<Client, Failure> {
    Client::connect(&cli.socket, TIMEOUT, &trusted_uids(), "kauthctl").map_err(|e| match e {
        ClientError::Unreachable(why) => Failure::unreachable(format!(
            "kauthd is not running or not reachable at {} ({why}). Start it (systemctl start kauthd) or point --socket / KAUTHD_SOCKET at its socket.",
            cli.socket.display()
        )),
        other => Failure::unreachable(other.to_string()),
    })
}

/// Sends one request and reads its answer. kauthd was reachable (the
/// connection is up), so a failure here is not "unreachable": it says what
/// went wrong instead.
pub fn call(client: &mut Client, request: &Request) -> Result<Response, Failure> {
    client.call(request).map_err(|e| no_answer(&e))
}

fn no_answer(e: &ClientError) -> Failure {
    let what = match e {
        ClientError::Frame(FrameError::Closed) => {
            "kauthd closed the connection without answering".to_owned()
        }
        ClientError::Frame(FrameError::Io(io))
            if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            format!("kauthd did not answer within {} s", TIMEOUT.as_secs())
        }
        other => other.to_string(),
    };
    Failure::failed(
        "no_answer",
        format!("{what}; kauthd's log says why (journalctl -u kauthd)"),
    )
}

/// Fetches every page of a list, or (with `want`) pages until that many
/// rows are in. `request` builds the request for the page after a cursor,
/// asking for at most the rows still wanted; `page` takes the rows and the
/// `next` cursor out of an answer, or fails on an answer that is not a
/// page (an error).
pub fn fetch_pages<T>(
    client: &mut Client,
    want: Option<usize>,
    request: impl Fn(Option<String>, Option<u32>) -> Request,
    page: impl Fn(Response) -> Result<(Vec<T>, Option<String>), Failure>,
) -> Result<Vec<T>, Failure> {
    let mut rows: Vec<T> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let still = want.map(|w| w.saturating_sub(rows.len()));
        let limit = still.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let answer = call(client, &request(after.clone(), limit))?;
        let (mut got, next) = page(answer)?;
        if let Some(still) = still {
            got.truncate(still);
        }
        let moved_on = !got.is_empty();
        rows.extend(got);
        let enough = want.is_some_and(|w| rows.len() >= w);
        match next {
            None => return Ok(rows),
            Some(_) if enough => return Ok(rows),
            Some(next) if moved_on && after.as_ref() != Some(&next) => after = Some(next),
            Some(_) => {
                return Err(Failure::failed(
                    "unexpected",
                    "kauthd sent a page that does not move the list on; upgrade kauthctl and kauthd to the same version".to_owned(),
                ))
            }
        }
    }
}

/// Sends a request whose only success answer is `Done`.
pub fn expect_done(
    client: &mut Client,
    request: &Request,
    out: &Output,
    text: &str,
) -> Result<(), Failure> {
    match call(client, request)? {
        Response::Done => {
            out.success(text, json!({}));
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}
