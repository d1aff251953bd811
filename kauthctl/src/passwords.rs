//! Passwords: `passwd` (your own, with the current one, or with a reset
//! token), `user passwd NAME` (root) and `reset-token --user NAME` (root
//! and panels).
//!
//! `--password-stdin` reads one password per line (only the line ending is
//! removed): for `passwd` the current password, then the new one; with
//! `--reset-token` or for `user passwd`, only the new one. Without it the
//! passwords are asked for on the terminal, the new one twice.

use kauth_proto::{Client, Request, Response, Secret};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::args::PasswdArgs;
use crate::connection::{call, expect_done};
use crate::output::{Failure, Output};
use crate::prompt;

pub fn passwd(args: &PasswdArgs, client: &mut Client, out: &Output) -> Result<(), Failure> {
    if let Some(token) = &args.reset_token {
        return reset(args, token, client, out);
    }
    let (current, new) = if args.password_stdin {
        (
            stdin_line("the current password (first line)")?,
            stdin_line("the new password (second line)")?,
        )
    } else {
        require_terminal()?;
        let current = prompt::hidden("Current password: ").map_err(invalid)?;
        (current, new_twice()?)
    };
    let request = Request::PasswordChange {
        user: args.user.clone(),
        current: Some(current),
        new,
        sign_out_others: args.sign_out_others,
    };
    changed(client, &request, args.user.as_deref(), out)
}

/// `user passwd NAME`: root sets a password; the current one is not needed.
pub fn set_for(
    name: &str,
    password_stdin: bool,
    sign_out: bool,
    client: &mut Client,
    out: &Output,
) -> Result<(), Failure> {
    let new = if password_stdin {
        stdin_line("the new password")?
    } else {
        require_terminal()?;
        new_twice()?
    };
    let request = Request::PasswordChange {
        user: Some(name.to_owned()),
        current: None,
        new,
        sign_out_others: sign_out,
    };
    changed(client, &request, Some(name), out)
}

/// `reset-token --user NAME`.
pub fn reset_token(user: &str, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let request = Request::ResetTokenCreate {
        user: user.to_owned(),
    };
    match call(client, &request)? {
        Response::ResetToken {
            user,
            token,
            expires,
        } => {
            let until = kauthd::clock::format_time(expires);
            out.success(
                &format!(
                    "{}\nA password reset token for {user}: it works once, until {until}.\nThe user sets a new password with: kauthctl passwd --user {user} --reset-token TOKEN",
                    token.expose()
                ),
                json!({"user": user, "token": token.expose(), "expires": expires}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

/// `passwd --reset-token TOKEN --user NAME`; TOKEN `-` reads it from the
/// first line of standard input (out of sight of `ps`).
fn reset(args: &PasswdArgs, token: &str, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let Some(user) = &args.user else {
        return Err(usage(
            "--reset-token needs --user NAME: the account the token was made for",
        ));
    };
    let token = if token == "-" {
        stdin_line("the reset token (first line)")?
    } else {
        Secret::from(token)
    };
    let new = if args.password_stdin {
        stdin_line("the new password")?
    } else {
        require_terminal()?;
        new_twice()?
    };
    let request = Request::PasswordReset {
        user: user.clone(),
        token,
        new,
    };
    expect_done(
        client,
        &request,
        out,
        &format!("password of {user} set; the reset token is used up"),
    )
}

fn changed(
    client: &mut Client,
    request: &Request,
    user: Option<&str>,
    out: &Output,
) -> Result<(), Failure> {
    let whose = user.map_or_else(
        || "password changed".to_owned(),
        |u| format!("password of {u} changed"),
    );
    match call(client, request)? {
        Response::Done => {
            out.success(&whose, json!({"signed_out": []}));
            Ok(())
        }
        Response::SignedOut { ids, .. } => {
            out.success(
                &format!("{whose}; {} other sessions signed out", ids.len()),
                json!({ "signed_out": ids }),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

/// The new password, typed twice on the terminal.
fn new_twice() -> Result<Secret, Failure> {
    let new = prompt::hidden("New password: ").map_err(invalid)?;
    let again = prompt::hidden("Retype new password: ").map_err(invalid)?;
    if !bool::from(new.expose().as_bytes().ct_eq(again.expose().as_bytes())) {
        return Err(Failure::failed(
            "invalid",
            "the two new passwords differ; nothing was changed".to_owned(),
        ));
    }
    Ok(new)
}

fn stdin_line(what: &str) -> Result<Secret, Failure> {
    prompt::password_from_stdin().map_err(|_| {
        invalid(format!(
            "standard input held no {what}; with --password-stdin, `passwd` reads the current password and then the new one, one per line"
        ))
    })
}

fn require_terminal() -> Result<(), Failure> {
    if prompt::interactive() {
        return Ok(());
    }
    Err(usage(
        "standard input is not a terminal: use --password-stdin and give the passwords one per line",
    ))
}

fn invalid(message: String) -> Failure {
    Failure::failed("invalid", message)
}

fn usage(message: &str) -> Failure {
    Failure {
        exit: 2,
        code: "usage".to_owned(),
        message: message.to_owned(),
    }
}
