//! Asking the person at the terminal (or reading piped input).

use std::io::{BufRead, IsTerminal, Write};

use kauth_proto::Secret;
use zeroize::Zeroize;

/// Whether standard input is a terminal (interactive use).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads one line after printing `label` (echoed: codes are not secret
/// once used).
pub fn line(label: &str) -> Result<Secret, String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut text)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let answer = text.trim().to_owned();
    text.zeroize();
    Ok(Secret::new(answer))
}

/// Reads a secret without echo on a terminal, or a line from a pipe.
pub fn hidden(label: &str) -> Result<Secret, String> {
    if interactive() {
        rpassword::prompt_password(label)
            .map(Secret::new)
            .map_err(|e| format!("cannot read the password: {e}"))
    } else {
        line("")
    }
}

/// Reads the first line of standard input as a password (only the line
/// ending is removed: spaces may be part of a password).
pub fn password_from_stdin() -> Result<Secret, String> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut text)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    text.zeroize();
    if password.is_empty() {
        return Err("--password-stdin was given but standard input held no password".to_owned());
    }
    Ok(Secret::new(password))
}

/// Asks a yes/no question on the terminal; only `y` or `yes` is yes.
pub fn confirm(question: &str) -> Result<bool, String> {
    let answer = line(&format!("{question} [y/N] "))?;
    Ok(matches!(
        answer.expose().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
