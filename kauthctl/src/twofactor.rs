//! `kauthctl 2fa …` and `kauthctl import …`.

use std::path::Path;

use kauth_proto::{
    Client, ErrorCode, Proof, Request, Response, Secret, TwoFactorState, UserPolicy,
};
use serde_json::{json, Value};

use crate::args::{ImportCommand, ProofArgs, TwoFaCommand};
use crate::connection::{call, expect_done, fetch_pages};
use crate::output::{cell, terminal_text, Failure, Output};
use crate::safe_file::{self, PrivateFile};
use crate::{prompt, qr};
use kauthd::clock::format_time;
use kauthd::login_texts;
use kauthd::twofactor::{enrollment, google_auth};

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
            confirm_with_tries(client, out, user.clone(), save)
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
                with_proof(client, out, proof, user.as_deref(), |proof| {
                    Request::RecoveryCodes {
                        user: user.clone(),
                        regenerate: true,
                        proof,
                    }
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

/// The proofs `user`'s account has (kauthd password, 2FA), from kauthd.
struct ProofsHeld {
    password: bool,
    code: bool,
}

fn proofs_held(client: &mut Client, user: Option<&str>) -> Result<ProofsHeld, Failure> {
    let request = Request::TwoFactorStatus {
        user: user.map(str::to_owned),
    };
    match call(client, &request)? {
        Response::TwoFactorStatus(state) => Ok(ProofsHeld {
            password: state.has_password,
            code: state.enabled,
        }),
        other => Err(Failure::from_response(other)),
    }
}

/// The prompt for a kauthd password, naming which password is meant.
const KAUTHD_PASSWORD_PROMPT: &str =
    "kauthd password (of your kauthd or panel account, not your system login password): ";

/// Sends a request that may need proof of `user` (the caller when
/// `None`); if kauthd refuses for want of it and a person is at the
/// terminal, asks for the proofs the account has and tries once more.
fn with_proof(
    client: &mut Client,
    out: &Output,
    args: &ProofArgs,
    user: Option<&str>,
    make: impl Fn(Proof) -> Request,
) -> Result<Response, Failure> {
    let response = call(client, &make(proof_from(args)?))?;
    if args.password_stdin && !proofs_held(client, user)?.password {
        eprintln!(
            "note: this account has no kauthd password, so the password given on standard input was not used (kauthctl never needs your system login password)"
        );
    }
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
    let held = proofs_held(client, user)?;
    if !held.password && !held.code {
        return Ok(response);
    }
    eprintln!("This change needs proof that it is you.");
    let password = if held.password {
        Some(prompt::hidden(KAUTHD_PASSWORD_PROMPT).map_err(input_failure)?)
    } else {
        None
    };
    let code = if held.code {
        Some(prompt::line("Verification code or recovery code: ").map_err(input_failure)?)
    } else {
        None
    };
    let proof = Proof {
        password: password.filter(|p| !p.is_empty()),
        code: code.filter(|c| !c.is_empty()),
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
    let whose = users.first().map(String::as_str);
    let send = |client: &mut Client, force: bool| {
        with_proof(client, out, proof, whose, |proof| {
            Request::TwoFactorDisable {
                users: users.to_vec(),
                proof,
                force,
            }
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
            "enroll" => "you will be asked to set up 2FA at the next login",
            _ => "logins are refused until 2FA is set up",
        };
        text.push_str(&format!("\n  on {}: {what}", cell(&s.service)));
    }
    text
}

/// What an enabled user should act on: few recovery codes left, an
/// authenticator clock that is off.
fn notes_text(state: &TwoFactorState) -> String {
    let mut text = String::new();
    if let Some(advice) = login_texts::recovery_codes_advice(state.recovery_codes_left) {
        text.push_str(&format!("\n  {advice}"));
    }
    if let Some(seconds) = state.clock_offset_seconds {
        text.push_str(&format!(
            "\n  {}",
            login_texts::learned_clock_offset(seconds)
        ));
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
        ) + &notes_text(state)
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
    let response = with_proof(client, out, proof, user.as_deref(), |proof| {
        Request::EnrollBegin {
            user: user.clone(),
            proof,
        }
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
        resumed,
        replaced,
        ..
    } = &response
    else {
        return Err(Failure::from_response(response));
    };
    let mut written = Vec::new();
    if let Some(file) = files.png {
        written.push(format!("a PNG image to {}", file.path().display()));
        file.commit(&qr::png(uri.expose()).map_err(input_failure)?)
            .map_err(input_failure)?;
    }
    if let Some(file) = files.svg {
        written.push(format!("an SVG image to {}", file.path().display()));
        file.commit(qr::svg(uri.expose()).map_err(input_failure)?.as_bytes())
            .map_err(input_failure)?;
    }
    if out.is_json() {
        out.success("", fields(&response));
        return Ok(response);
    }
    if *resumed {
        println!(
            "This continues the setup begun earlier, with the same secret: if your app already has this account from it, keep that entry.\n"
        );
    } else if *replaced {
        println!(
            "The setup begun earlier had expired and was replaced by a new secret: delete the entry you made from it in your app.\n"
        );
    }
    for what in &written {
        println!(
            "Wrote the QR code as {what} (readable only by you; it holds the secret: delete it once scanned)."
        );
    }
    let picture = qr::terminal(uri.expose()).map_err(input_failure)?;
    let scan = login_texts::enroll_scan(&cell(issuer), &cell(user), algorithm, *digits, *period);
    let waits = format!(
        "This setup waits for a code until {} UTC.",
        format_time(*expires)
    );
    // The picture with its explanation beside it, the setup key and the
    // code prompt: one 80×24 screen.
    println!(
        "{}",
        kauthd::twofactor::qr::beside(&picture, &format!("{scan}\n{waits}"))
    );
    println!("{}", login_texts::enroll_setup_key(setup_key.expose()));
    Ok(response)
}

/// Codes a person may type in one `2fa enroll` run.
const CONFIRM_TRIES: u32 = 3;

/// Asks for the code of the new secret, up to [`CONFIRM_TRIES`] times
/// while kauthd says it does not match and the enrollment still waits.
fn confirm_with_tries(
    client: &mut Client,
    out: &Output,
    user: Option<String>,
    save: Option<PrivateFile>,
) -> Result<(), Failure> {
    for tries_left in (0..CONFIRM_TRIES).rev() {
        let code = prompt::line("Type the 6-digit code your app shows: ").map_err(input_failure)?;
        let request = Request::EnrollConfirm {
            user: user.clone(),
            code,
        };
        match call(client, &request)? {
            Response::NewRecoveryCodes { user, codes } => {
                return show_codes(out, &user, &codes, save, true)
            }
            Response::Error { message, .. } if message == enrollment::WRONG_CODE_ANSWER => {
                if tries_left == 0 {
                    break;
                }
                eprintln!("{}", login_texts::enroll_wrong_code(tries_left));
            }
            other => return Err(Failure::from_response(other)),
        }
    }
    Err(Failure::failed(
        "refused",
        format!(
            "{CONFIRM_TRIES} codes did not match; the setup still waits: run `kauthctl 2fa enroll` again within 10 minutes to continue with the same secret"
        ),
    ))
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
