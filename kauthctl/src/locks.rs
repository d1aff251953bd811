//! `kauthctl locks`, `kauthctl locks clear --host ADDR` and
//! `kauthctl user unlock NAME`.

use kauth_proto::{Client, Request, Response};
use kauthd::clock::format_time;
use serde_json::json;

use crate::args::LocksAction;
use crate::connection::{call, expect_done, fetch_pages};
use crate::output::{cell, Failure, Output};

pub fn run(action: Option<&LocksAction>, client: &mut Client, out: &Output) -> Result<(), Failure> {
    match action {
        None => list(client, out),
        Some(LocksAction::Clear { host }) => expect_done(
            client,
            &Request::LockClear { host: host.clone() },
            out,
            &format!("the lock on the host {host} is lifted"),
        ),
    }
}

fn list(client: &mut Client, out: &Output) -> Result<(), Failure> {
    let locks = fetch_pages(
        client,
        None,
        |after, limit| Request::Locks { after, limit },
        |answer| match answer {
            Response::LockList { locks, next } => Ok((locks, next)),
            other => Err(Failure::from_response(other)),
        },
    )?;
    let mut text = format!("{:<8} {:<40} {}", "KIND", "NAME", "LOCKED UNTIL (UTC)");
    for lock in &locks {
        let until = match (lock.until, lock.by_root) {
            (Some(until), false) => format_time(until),
            (Some(until), true) => format!(
                "{} (too many failures), and locked by root until `kauthctl user unlock`",
                format_time(until)
            ),
            (None, _) => "locked by root until `kauthctl user unlock`".to_owned(),
        };
        text.push_str(&format!(
            "\n{:<8} {:<40} {until}",
            cell(&lock.kind),
            cell(&lock.name)
        ));
    }
    if locks.is_empty() {
        text = "no account or host is locked".to_owned();
    } else {
        text.push_str(
            "\nLift: `kauthctl user unlock NAME` (also the hosts NAME failed from), `kauthctl locks clear --host ADDR`.",
        );
    }
    out.success(&text, json!({ "locks": locks }));
    Ok(())
}

pub fn unlock_user(name: &str, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let request = Request::UserUnlock {
        name: name.to_owned(),
    };
    match call(client, &request)? {
        Response::Unlocked {
            user,
            account,
            hosts,
        } => {
            let mut text = if account {
                format!("account {user} unlocked")
            } else {
                format!("account {user} was not locked")
            };
            if hosts.is_empty() {
                text.push_str("; no host it failed from is locked");
            } else {
                text.push_str(&format!(
                    "; lifted the locks on the hosts {user} failed from: {}",
                    hosts.iter().map(|h| cell(h)).collect::<Vec<_>>().join(", ")
                ));
            }
            out.success(
                &text,
                json!({"user": user, "account": account, "hosts": hosts}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}
