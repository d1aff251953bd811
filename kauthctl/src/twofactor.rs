//! `kauthctl 2fa …` and `kauthctl import …`.

use std::path::Path;

use kauth_proto::{Client, ErrorCode, Proof, Request, Response, Secret, UserPolicy};
use serde_json::{json, Value};

use crate::args::{ImportCommand, ProofArgs, TwoFaCommand};
use crate::connection::{call, expect_done, fetch_pages};
use crate::output::{cell, terminal_text, Failure, Output};
use crate::safe_file::{self, PrivateFile};
use crate::{prompt, qr};
use kauthd::clock::format_time;
use kauthd::twofactor::google_auth;

pub fn run(command: &TwoFaCommand, client: &mut Client, out: &Output) -> Result<(), Failure> {
    match command {
        TwoFaCommand::Status { user } => status(client, out, user.clone()),
        TwoFaCommand::Enroll {
            user,
            begin,
            confirm,
            save_codes,
            qr_png,
            qr_svg,
            proof,
        } => {
            // Every file is checked and created before kauthd is asked
            // anything, so a bad path changes nothing.
            let save = private_file(save_codes.as_deref())?;
            if let Some(code) = confirm {
                return enroll_confirm(
                    client,
                    out,
                    user.clone(),
                    Secret::from(code.as_str()),
                    save,
                );
            }
            let files = QrFiles {
                png: private_file(qr_png.as_deref())?,
                svg: private_file(qr_svg.as_deref())?,
            };
            enroll_begin(client, out, user.clone(), proof, files)?;
            if *begin {
                return Ok(());
            }
            if out.is_json() {
                return Err(Failure::failed(
                    "usage",
                    "with --json, enroll in two steps: --begin, then --confirm CODE".to_owned(),
                ));
            }
            let code = prompt::line("Enter the 6-digit code your app shows to confirm: ")
                .map_err(input_failure)?;
            enroll_confirm(client, out, user.clone(), code, save)
        }
        TwoFaCommand::Disable {
            users,
            force,
            proof,
        } => disable(client, out, users, *force, proof),
        TwoFaCommand::RecoveryCodes {
            user,
            regenerate,
            save_codes,
            proof,
        } => {
            let save = if *regenerate {
                private_file(save_codes.as_deref())?
            } else {
                None
            };
            let response = if *regenerate {
                with_proof(client, out, proof, |proof| Request::RecoveryCodes {
                    user: user.clone(),
                    regenerate: true,
                    proof,
                })?
            } else {
                call(
                    client,
                    &Request::RecoveryCodes {
                        user: user.clone(),
                        regenerate: false,
                        proof: Proof::default(),
                    },
                )?
            };
            match response {
                Response::RecoveryCodesLeft { user, left } => {
                    out.success(
                        &format!("{user} has {left} recovery codes left"),
                        json!({"user": user, "recovery_codes_left": left}),
                    );
                    Ok(())
                }
                Response::NewRecoveryCodes { user, codes } => {
                    show_codes(out, &user, &codes, save, false)
                }
                other => Err(Failure::from_response(other)),
            }
        }
        TwoFaCommand::List => list(client, out),
        TwoFaCommand::Import {
            user,
            secret,
            algorithm,
            digits,
            period,
        } => expect_done(
            client,
            &Request::TwoFactorImport {
                user: user.clone(),
                secret: Secret::from(secret.as_str()),
                algorithm: Some(algorithm.clone()),
                digits: Some(*digits),
                period: Some(*period),
            },
            out,
            &format!("two-factor authentication is on for {user} with the imported secret"),
        ),
        TwoFaCommand::ResetGuard { user } => reset_guard(client, out, user),
    }
}

pub fn import(command: &ImportCommand, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let ImportCommand::GoogleAuthenticator { user, file } = command;
    let mut bytes =
        safe_file::read_limited(file, google_auth::MAX_FILE_BYTES as u64).map_err(input_failure)?;
    let contents = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
        zeroize::Zeroize::zeroize(&mut e.into_bytes());
        input_failure(format!(
            "{} is not a google-authenticator file (it is not text)",
            file.display()
        ))
    })?;
    let request = Request::ImportGoogleAuthenticator {
        user: user.clone(),
        contents: Secret::new(contents),
    };
    match call(client, &request)? {
        Response::Imported {
            user,
            recovery_codes,
            notes,
        } => {
            let mut text = format!(
                "imported {} for {user}: two-factor authentication is on; {recovery_codes} scratch codes kept as recovery codes",
                file.display()
            );
            for note in &notes {
                text.push_str(&format!("\n  note: {note}"));
            }
            out.success(
                &text,
                json!({"user": user, "recovery_codes": recovery_codes, "notes": notes}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

fn input_failure(message: String) -> Failure {
    Failure::failed("invalid", message)
}

/// The file to write at `path`, if one was asked for.
fn private_file(path: Option<&Path>) -> Result<Option<PrivateFile>, Failure> {
    path.map(PrivateFile::create)
        .transpose()
        .map_err(input_failure)
}

/// A response's fields as JSON, without its `type` tag.
fn fields(response: &Response) -> Value {
    let mut value = serde_json::to_value(response).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        map.remove("type");
    }
    value
}

fn proof_from(args: &ProofArgs) -> Result<Proof, Failure> {
    Ok(Proof {
        password: if args.password_stdin {
            Some(prompt::password_from_stdin().map_err(input_failure)?)
        } else {
            None
        },
        code: args.code.as_deref().map(Secret::from),
    })
}

/// Sends a request that may need proof; if kauthd refuses for want of it
/// and a person is at the terminal, asks for it and tries once more.
fn with_proof(
    client: &mut Client,
    out: &Output,
    args: &ProofArgs,
    make: impl Fn(Proof) -> Request,
) -> Result<Response, Failure> {
    let response = call(client, &make(proof_from(args)?))?;
    let refused = matches!(
        response,
        Response::Error {
            code: ErrorCode::Refused,
            ..
        }
    );
    let can_ask = refused
        && !out.is_json()
        && args.code.is_none()
        && !args.password_stdin
        && prompt::interactive();
    if !can_ask {
        return Ok(response);
    }
    eprintln!("This change needs proof that it is you.");
    let password = prompt::hidden("Password (press Enter if your account has none): ")
        .map_err(input_failure)?;
    let code = prompt::line("Verification code or recovery code: ").map_err(input_failure)?;
    let proof = Proof {
        password: (!password.is_empty()).then_some(password),
        code: (!code.is_empty()).then_some(code),
    };
    call(client, &make(proof))
}

/// `2fa disable`: where the policy requires 2FA, kauthd refuses until
/// confirmed; a person at a terminal is asked, a script gives --force.
fn disable(
    client: &mut Client,
    out: &Output,
    users: &[String],
    force: bool,
    proof: &ProofArgs,
) -> Result<(), Failure> {
    let send = |client: &mut Client, force: bool| {
        with_proof(client, out, proof, |proof| Request::TwoFactorDisable {
            users: users.to_vec(),
            proof,
            force,
        })
    };
    let mut response = send(client, force)?;
    if let Response::Error {
        code: ErrorCode::ConfirmationNeeded,
        message,
    } = &response
    {
        if out.is_json() || !prompt::interactive() {
            return Err(Failure::from_response(response));
        }
        eprintln!("{}", terminal_text(message));
        if !prompt::confirm("Turn two-factor authentication off anyway?").map_err(input_failure)? {
            return Err(Failure::failed(
                "cancelled",
                "nothing was changed: two-factor authentication stays on".to_owned(),
            ));
        }
        response = send(client, true)?;
    }
    match response {
        Response::Done => {
            let who = if users.is_empty() {
                "your account".to_owned()
            } else {
                users.join(", ")
            };
            out.success(
                &format!("two-factor authentication turned off for {who}"),
                json!({}),
            );
            Ok(())
        }
        other => Err(Failure::from_response(other)),
    }
}

/// What the policy asks of the user, for `2fa status`: required or not,
/// from when, and what each service does.
fn requirement_text(policy: &UserPolicy) -> String {
    let required = match (policy.required, policy.required_from.as_deref()) {
        (false, _) => "no".to_owned(),
        (true, None) => "yes".to_owned(),
        (true, Some(day)) => {
            let future = kauthd::clock::parse_date(day).is_some_and(|d| d > kauthd::clock::now());
            if future {
                format!("yes, from {day}; until then logins go on without a code")
            } else {
                format!("yes, since {day}")
            }
        }
    };
    let mut text = format!("\n  required: {required} ({})", policy.rule);
    for s in &policy.services {
        let what = match s.decision.as_str() {
            "ask_code" => "a code is asked",
            "skip" => "no code is asked",
            _ => "logins are refused until 2FA is set up",
        };
        text.push_str(&format!("\n  on {}: {what}", cell(&s.service)));
    }
    text
}

fn status(client: &mut Client, out: &Output, user: Option<String>) -> Result<(), Failure> {
    let response = call(client, &Request::TwoFactorStatus { user })?;
    let Response::TwoFactorStatus(state) = &response else {
        return Err(Failure::from_response(response));
    };
    let text = if state.enabled {
        format!(
            "two-factor authentication for {}: on\n  method: TOTP ({}, {} digits, {} s)\n  enrolled: {}\n  last used: {}\n  recovery codes left: {}",
            state.user,
            state.algorithm.as_deref().unwrap_or("?"),
            state.digits.unwrap_or(0),
            state.period.unwrap_or(0),
            state.enrolled_at.map_or_else(|| "-".to_owned(), format_time),
            state.last_used.map_or_else(|| "never".to_owned(), format_time),
            state.recovery_codes_left,
        )
    } else if state.pending {
        format!(
            "two-factor authentication for {}: off (an enrollment is waiting to be confirmed)",
            state.user
        )
    } else {
        format!(
            "two-factor authentication for {}: off; turn it on with `kauthctl 2fa enroll`",
            state.user
        )
    };
    let text = match &state.policy {
        Some(policy) => text + &requirement_text(policy),
        None => text,
    };
    out.success(&text, fields(&response));
    Ok(())
}

struct QrFiles {
    png: Option<PrivateFile>,
    svg: Option<PrivateFile>,
}

fn enroll_begin(
    client: &mut Client,
    out: &Output,
    user: Option<String>,
    proof: &ProofArgs,
    files: QrFiles,
) -> Result<Response, Failure> {
    let response = with_proof(client, out, proof, |proof| Request::EnrollBegin {
        user: user.clone(),
        proof,
    })?;
    let Response::EnrollBegun {
        user,
        setup_key,
        uri,
        issuer,
        algorithm,
        digits,
        period,
        expires,
        ..
    } = &response
    else {
        return Err(Failure::from_response(response));
    };
    if let Some(file) = files.png {
        file.commit(&qr::png(uri.expose()).map_err(input_failure)?)
            .map_err(input_failure)?;
    }
    if let Some(file) = files.svg {
        file.commit(qr::svg(uri.expose()).map_err(input_failure)?.as_bytes())
            .map_err(input_failure)?;
    }
    if out.is_json() {
        out.success("", fields(&response));
        return Ok(response);
    }
    let picture = qr::terminal(uri.expose()).map_err(input_failure)?;
    println!(
        "Scan this QR code with your authenticator app ({}: {}):\n",
        cell(issuer),
        cell(user)
    );
    println!("{picture}");
    println!("Can't scan the code? Add an account by hand with this setup key:\n");
    println!("    {}\n", setup_key.expose());
    println!("    (time-based, {algorithm}, {digits} digits, every {period} s)\n");
    println!(
        "This enrollment waits for a code until {} UTC.",
        format_time(*expires)
    );
    Ok(response)
}

fn enroll_confirm(
    client: &mut Client,
    out: &Output,
    user: Option<String>,
    code: Secret,
    save: Option<PrivateFile>,
) -> Result<(), Failure> {
    match call(client, &Request::EnrollConfirm { user, code })? {
        Response::NewRecoveryCodes { user, codes } => show_codes(out, &user, &codes, save, true),
        other => Err(Failure::from_response(other)),
    }
}

/// Prints a new set of recovery codes (once) and optionally saves them.
fn show_codes(
    out: &Output,
    user: &str,
    codes: &[Secret],
    save: Option<PrivateFile>,
    enrolled: bool,
) -> Result<(), Failure> {
    let saved_to = save.as_ref().map(|file| file.path().to_owned());
    if let Some(file) = save {
        let mut text = zeroize::Zeroizing::new(String::new());
        for code in codes {
            text.push_str(code.expose());
            text.push('\n');
        }
        file.commit(text.as_bytes()).map_err(input_failure)?;
    }
    let list: Vec<&str> = codes.iter().map(Secret::expose).collect();
    let mut text = String::new();
    if enrolled {
        text.push_str(&format!("Two-factor authentication is on for {user}.\n\n"));
    }
    text.push_str(
        "Your recovery codes. Save them now: they are shown only once, and each works once.\n",
    );
    text.push_str("Use one at the verification code prompt if you lose your phone.\n\n");
    for code in &list {
        text.push_str(&format!("    {code}\n"));
    }
    if let Some(path) = saved_to {
        text.push_str(&format!(
            "\nSaved to {} (readable only by you).",
            path.display()
        ));
    }
    out.success(
        text.trim_end(),
        json!({"user": user, "recovery_codes": list}),
    );
    Ok(())
}

fn list(client: &mut Client, out: &Output) -> Result<(), Failure> {
    let users = fetch_pages(
        client,
        None,
        |after, limit| Request::TwoFactorList { after, limit },
        |answer| match answer {
            Response::TwoFactorUsers { users, next } => Ok((users, next)),
            other => Err(Failure::from_response(other)),
        },
    )?;
    let mut text = format!(
        "{:<24} {:<20} {:>5} {}",
        "NAME", "SINCE", "CODES", "LAST USED"
    );
    for u in &users {
        text.push_str(&format!(
            "\n{:<24} {:<20} {:>5} {}",
            cell(&u.name),
            format_time(u.enrolled_at),
            u.recovery_codes_left,
            u.last_used.map_or_else(|| "never".to_owned(), format_time)
        ));
    }
    let all = Response::TwoFactorUsers { users, next: None };
    out.success(&text, fields(&all));
    Ok(())
}

fn reset_guard(client: &mut Client, out: &Output, user: &str) -> Result<(), Failure> {
    let response = call(
        client,
        &Request::TwoFactorResetGuard {
            user: user.to_owned(),
        },
    )?;
    let Response::GuardReset {
        user,
        ahead_seconds,
    } = &response
    else {
        return Err(Failure::from_response(response));
    };
    let text = if *ahead_seconds == 0 {
        format!("the replay guard of {user} is not ahead of the clock: nothing to reset")
    } else {
        format!(
            "the replay guard of {user} was {} ahead of the clock and is reset: codes used up to now stay refused, and {user}'s codes work again once the current window has passed (about a minute with the default settings)",
            kauthd::twofactor::replay_guard::describe(*ahead_seconds)
        )
    };
    out.success(&text, fields(&response));
    Ok(())
}
