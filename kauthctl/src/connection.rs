//! The connection to kauthd and the request/answer call every command
//! makes. Command modules depend on this module, not on each other.

use std::time::Duration;

use kauth_proto::{Client, ClientError, Request, Response};
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

pub fn call(client: &mut Client, request: &Request) -> Result<Response, Failure> {
    client
        .call(request)
        .map_err(|e| Failure::unreachable(e.to_string()))
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
