//! One function per command: build the request, check the answer, print.

use kauth_proto::{Client, Request, Response};
use serde_json::json;

use crate::args::{Cli, Command, UserCommand};
use crate::connection::{call, expect_done, fetch_pages};
use crate::output::{cell, Failure, Output};
use crate::{locks, passwords, policy, prompt, sessions, stats, twofactor};

pub fn run(cli: &Cli, client: &mut Client, out: &Output) -> Result<(), Failure> {
    match &cli.command {
        Command::Status => status(client, out),
        Command::User(command) => user(command, client, out),
        Command::TwoFa(command) => twofactor::run(command, client, out),
        Command::Import(command) => twofactor::import(command, client, out),
        Command::Policy(command) => policy::run(command, client, out),
        Command::Sessions { user, action } => {
            sessions::run(user.as_deref(), action.as_ref(), client, out)
        }
        Command::Passwd(args) => passwords::passwd(args, client, out),
        Command::ResetToken { user } => passwords::reset_token(user, client, out),
        Command::Activity { since, user, limit } => {
            sessions::activity(since.as_deref(), user.as_deref(), *limit, client, out)
        }
        Command::Rekey => rekey(client, out),
        Command::Locks { action } => locks::run(action.as_ref(), client, out),
        Command::Stats { prometheus } => stats::run(*prometheus, client, out),
        // main.rs runs these before connecting to kauthd.
        Command::Doctor(_) | Command::GenerateMan { .. } => Err(Failure::failed(
            "internal",
            "this command does not talk to kauthd".to_owned(),
        )),
    }
}

fn status(client: &mut Client, out: &Output) -> Result<(), Failure> {
    match call(client, &Request::Status)? {
        Response::Status {
            version,
            uptime_seconds,
            accounts,
        } => {
            out.success(
                &format!("kauthd {version}, up {uptime_seconds} s, {accounts} accounts"),
                json!({"version": version, "uptime_seconds": uptime_seconds, "accounts": accounts}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

fn rekey(client: &mut Client, out: &Output) -> Result<(), Failure> {
    match call(client, &Request::Rekey)? {
        Response::Rekeyed { key_id, secrets } => {
            out.success(
                &format!(
                    "new key {key_id} now encrypts {secrets} TOTP secrets; back up the new key file"
                ),
                json!({"key_id": key_id, "secrets": secrets}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

fn user(command: &UserCommand, client: &mut Client, out: &Output) -> Result<(), Failure> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            uid,
        } => {
            let password = if *password_stdin {
                Some(prompt::password_from_stdin().map_err(|m| Failure::failed("invalid", m))?)
            } else {
                None
            };
            let request = Request::UserAdd {
                name: name.clone(),
                password,
                uid: *uid,
            };
            expect_done(client, &request, out, &format!("account {name} added"))
        }
        UserCommand::Del { name } => expect_done(
            client,
            &Request::UserDel { name: name.clone() },
            out,
            &format!("account {name} deleted"),
        ),
        UserCommand::Lock { name } => expect_done(
            client,
            &Request::UserLock { name: name.clone() },
            out,
            &format!("account {name} locked"),
        ),
        UserCommand::Unlock { name } => locks::unlock_user(name, client, out),
        UserCommand::List => list_users(client, out),
        UserCommand::Passwd {
            name,
            password_stdin,
            sign_out,
        } => passwords::set_for(name, *password_stdin, *sign_out, client, out),
    }
}

fn list_users(client: &mut Client, out: &Output) -> Result<(), Failure> {
    let users = fetch_pages(
        client,
        None,
        |after, limit| Request::UserList { after, limit },
        |answer| match answer {
            Response::Users { users, next } => Ok((users, next)),
            other => Err(Failure::from_response(other)),
        },
    )?;
    let mut text = format!(
        "{:<24} {:>7} {:<8} {:<4} {:<6} {}",
        "NAME", "UID", "PASSWORD", "2FA", "LOCKED", "CREATED"
    );
    for u in &users {
        text.push_str(&format!(
            "\n{:<24} {:>7} {:<8} {:<4} {:<6} {}",
            cell(&u.name),
            u.uid.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            yes_no(u.has_password),
            if u.two_factor { "on" } else { "off" },
            yes_no(u.locked),
            kauthd::clock::format_time(u.created),
        ));
    }
    let users_json = serde_json::to_value(&users).unwrap_or_default();
    out.success(&text, json!({ "users": users_json }));
    Ok(())
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
