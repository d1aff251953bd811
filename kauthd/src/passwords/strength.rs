//! Whether a new password is good enough: long enough, not absurdly long,
//! not built on the user name, and (with `[password] reject_common`) not
//! among what attackers try first, as judged by the zxcvbn estimator
//! (common passwords, words, names, dates, keyboard patterns, l33t
//! substitutions). A refusal says why, in words a person understands.

use crate::error::Error;
use zxcvbn::Score;

use crate::config::PasswordConfig;

/// The longest password accepted, in characters (argon2 hashes any
/// length; this only keeps requests small).
pub const MAX_LENGTH: usize = 1024;

/// The lowest zxcvbn score accepted: 3 ("safely unguessable: moderate
/// protection from offline slow-hash scenario", over 10^8 guesses).
const MIN_SCORE: Score = Score::Three;

/// User names shorter than this are not looked for inside the password
/// (a two-letter name would refuse half of all random passwords).
const MIN_NAME_IN_PASSWORD: usize = 3;

/// Checks a new password for `user`. The error is the reason, to show as
/// it is.
pub fn check(password: &str, user: &str, config: &PasswordConfig) -> Result<(), Error> {
    let length = password.chars().count();
    if length < config.min_length {
        return Err(Error::invalid(format!(
            "The password is too short: use at least {} characters.",
            config.min_length
        )));
    }
    if length > MAX_LENGTH {
        return Err(Error::invalid(format!(
            "The password is too long: use at most {MAX_LENGTH} characters."
        )));
    }
    if user.chars().count() >= MIN_NAME_IN_PASSWORD
        && password.to_lowercase().contains(&user.to_lowercase())
    {
        return Err(Error::invalid(
            "The password contains the user name: choose one that does not.",
        ));
    }
    if config.reject_common {
        check_guessability(password, user)?;
    }
    Ok(())
}

fn check_guessability(password: &str, user: &str) -> Result<(), Error> {
    let estimate = zxcvbn::zxcvbn(password, &[user]);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let mut reason = "The password is too easy to guess.".to_owned();
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            reason.push(' ');
            reason.push_str(&warning.to_string());
        }
        for suggestion in feedback.suggestions() {
            reason.push(' ');
            reason.push_str(&suggestion.to_string());
        }
    }
    reason.push_str(" A few unrelated words, or a password manager's suggestion, work well.");
    Err(Error::invalid(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenient() -> PasswordConfig {
        PasswordConfig {
            min_length: 8,
            ..PasswordConfig::default()
        }
    }

    #[test]
    fn short_password_is_refused_with_the_minimum() {
        let e = check("short", "ann", &PasswordConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("too short") && e.contains("12"), "{e}");
    }

    #[test]
    fn common_passwords_are_refused_with_a_reason() {
        let e = check("password123", "ann", &lenient())
            .unwrap_err()
            .to_string();
        assert!(e.contains("too easy to guess"), "{e}");
        assert!(e.to_lowercase().contains("common"), "{e}");
        let e = check("Summer2025!", "ann", &lenient())
            .unwrap_err()
            .to_string();
        assert!(e.contains("too easy to guess"), "{e}");
    }

    #[test]
    fn the_user_name_inside_is_refused() {
        let e = check("xq-Annabel-7vkt-plume", "annabel", &lenient())
            .unwrap_err()
            .to_string();
        assert!(e.contains("user name"), "{e}");
        // Too short a name to matter.
        assert!(check("vq7-lantern-ox-bramble", "ox", &lenient()).is_ok());
    }

    #[test]
    fn strong_passwords_pass() {
        assert!(check(
            "correct horse battery staple",
            "ann",
            &PasswordConfig::default()
        )
        .is_ok());
        assert!(check(
            "vq7-lantern-kettle-bramble",
            "ann",
            &PasswordConfig::default()
        )
        .is_ok());
    }

    #[test]
    fn reject_common_off_only_keeps_the_length_rules() {
        let config = PasswordConfig {
            reject_common: false,
            ..PasswordConfig::default()
        };
        assert!(check("password1234", "ann", &config).is_ok());
        assert!(check("password", "ann", &config).is_err());
        assert!(check(&"x".repeat(MAX_LENGTH + 1), "ann", &config).is_err());
    }
}
