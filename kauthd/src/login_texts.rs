//! What a person sees in a login conversation: the enrollment at login,
//! and the messages that say why a login failed or what to fix. Kept
//! together so the wording can be reviewed and translated in one place.

use crate::clock;

/// The question that ends the enrollment's texts; the same words as the
/// code prompt of every login, so scripts and people recognise it.
pub const ENROLL_CODE_PROMPT: &str = "Verification code: ";

/// Asked after the recovery codes, so that every client shows them before
/// the login goes on (sshd shows texts that come after the last question
/// only to interactive sessions).
pub const SAVED_CODES_PROMPT: &str = "Press Enter once you have saved them: ";

/// The line before the QR code (it also takes any prefix the client puts
/// before the first line, such as ssh's `(user@host) `).
pub const ENROLL_INTRO: &str =
    "Two-factor authentication is required for this account: set it up now.";

/// Beside the QR code: what to do with it (also `kauthctl 2fa enroll`'s).
pub fn enroll_scan(issuer: &str, user: &str, algorithm: &str, digits: u32, period: u64) -> String {
    format!(
        "Scan this QR code with your authenticator app ({issuer}: {user}), or add the account by hand with the setup key below (time-based, {algorithm}, {digits} digits, every {period} s)."
    )
}

/// Beside the QR code, after [`enroll_scan`], at login.
pub const ENROLL_THEN_TYPE: &str = "Then type the code your app shows.";

/// Below the QR code, on a line of its own (scripts look for it).
pub fn enroll_setup_key(setup_key: &str) -> String {
    format!("Setup key: {setup_key}")
}

/// A wrong code, with tries left.
pub fn enroll_wrong_code(tries_left: u32) -> String {
    let tries = if tries_left == 1 {
        "1 try left".to_owned()
    } else {
        format!("{tries_left} tries left")
    };
    format!(
        "That code does not match. Type the code your app shows now (check that the phone's clock is right); {tries}."
    )
}

/// The last wrong code: the login is refused, 2FA stays off.
pub const ENROLL_GAVE_UP: &str = "That code does not match either. Two-factor authentication was not set up and this login is refused. Log in again to retry: the same setup key stays valid for 10 minutes.";

/// Too many wrong codes for this secret: it was dropped.
pub const ENROLL_DROPPED: &str = "Too many wrong codes: this setup was cancelled and this login is refused. At your next login you get a new setup key; delete the entry you made in your app.";

/// The setup took longer than its time window.
pub const ENROLL_EXPIRED: &str =
    "This setup took too long and expired. Log in again to get a new setup key.";

/// The recovery codes, shown once.
pub fn enroll_done(codes: &[&str]) -> String {
    let mut text = String::from(
        "Two-factor authentication is on. Your recovery codes are below: save them now.\n\
         They are shown only once, and each works once. If you lose your phone, type\n\
         one at the verification code prompt.\n",
    );
    for code in codes {
        text.push_str("    ");
        text.push_str(code);
        text.push('\n');
    }
    text.pop();
    text
}

/// A code that is right for now but was accepted before (replay guard).
pub const CODE_ALREADY_USED: &str = "That code was already used. Wait for the next one.";

/// After repeated wrong codes, when nothing says why.
pub const CODES_KEEP_FAILING: &str =
    "If codes keep failing, check that your phone's time is set automatically.";

/// "about N minutes" for a clock difference (at least one minute).
fn about_minutes(seconds: i64) -> String {
    let minutes = ((seconds.unsigned_abs() + 30) / 60).max(1);
    if minutes == 1 {
        "about 1 minute".to_owned()
    } else {
        format!("about {minutes} minutes")
    }
}

fn ahead_or_behind(seconds: i64) -> &'static str {
    if seconds > 0 {
        "ahead"
    } else {
        "behind"
    }
}

/// After repeated wrong codes, when the code matched a time step outside
/// the window: the phone's clock is off by `seconds` (positive: ahead).
pub fn clock_looks_off(seconds: i64) -> String {
    format!(
        "That code is for another time: your phone's clock looks {} {}. Set the phone to automatic date and time, then type the code it shows.",
        about_minutes(seconds),
        ahead_or_behind(seconds)
    )
}

/// Told once, at the login that learned the offset (positive: ahead).
pub fn learned_clock_offset(seconds: i64) -> String {
    format!(
        "Your authenticator's clock is {} {}; logins still work, but set its time to automatic.",
        about_minutes(seconds),
        ahead_or_behind(seconds)
    )
}

/// Sign-in locked after too many failures (of the name or of the host),
/// the same text whoever asks and whatever they typed. `until` and `now`
/// are Unix times; the time is shown in UTC, the date too when it is not
/// today.
pub fn locked_until(until: i64, now: i64) -> String {
    let full = clock::format_time(until);
    let (date, time) = full.split_once(' ').unwrap_or((&full, ""));
    let hhmm = time.get(..5).unwrap_or(time);
    let when = if clock::format_date(now) == date {
        format!("{hhmm} UTC")
    } else {
        format!("{date} {hhmm} UTC")
    };
    format!(
        "Sign-in is locked until {when} after too many failed attempts. Try again then, or ask the administrator to lift the lock (kauthctl user unlock)."
    )
}

/// How many recovery codes left is "running low".
pub const RECOVERY_CODES_LOW: u64 = 2;

/// After a login with a recovery code, `left` still unused.
pub fn recovery_code_accepted(left: u64) -> String {
    let mut text = format!(
        "Recovery code accepted. You have {left} left; if you lost your authenticator, set up 2FA again with `kauthctl 2fa enroll`."
    );
    if let Some(advice) = recovery_codes_advice(left) {
        text.push('\n');
        text.push_str(&advice);
    }
    text
}

/// Advice when recovery codes run low (also in `kauthctl 2fa status`).
pub fn recovery_codes_advice(left: u64) -> Option<String> {
    match left {
        0 => Some(
            "You have no recovery codes left; make new ones with `kauthctl 2fa recovery-codes --regenerate`."
                .to_owned(),
        ),
        1 => Some(
            "Only 1 recovery code is left; make new ones with `kauthctl 2fa recovery-codes --regenerate`."
                .to_owned(),
        ),
        n if n <= RECOVERY_CODES_LOW => Some(format!(
            "Only {n} recovery codes are left; make new ones with `kauthctl 2fa recovery-codes --regenerate`."
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_counted_in_plain_words() {
        assert!(enroll_wrong_code(2).ends_with("2 tries left."));
        assert!(enroll_wrong_code(1).ends_with("1 try left."));
    }

    #[test]
    fn the_setup_key_is_on_a_line_of_its_own() {
        assert_eq!(enroll_setup_key("ABCD EFGH"), "Setup key: ABCD EFGH");
    }

    #[test]
    fn clock_differences_are_told_in_whole_minutes_with_the_direction() {
        assert!(clock_looks_off(-300).contains("about 5 minutes behind"));
        assert!(clock_looks_off(90).contains("about 2 minutes ahead"));
        assert!(learned_clock_offset(-30).contains("about 1 minute behind"));
        assert!(learned_clock_offset(600).contains("about 10 minutes ahead"));
    }

    #[test]
    fn a_lock_names_its_end_in_utc_with_the_date_when_not_today() {
        // 2025-10-28 00:00:00 UTC.
        let midnight = 1_761_609_600;
        let text = locked_until(midnight + 3600 + 5 * 60, midnight + 60);
        assert!(text.contains("locked until 01:05 UTC"), "{text}");
        assert!(text.contains("kauthctl user unlock"), "{text}");
        let text = locked_until(midnight + 86_400 + 60, midnight + 60);
        assert!(text.contains("until 2025-10-29 00:01 UTC"), "{text}");
    }

    #[test]
    fn recovery_code_advice_only_when_few_are_left() {
        assert_eq!(recovery_codes_advice(3), None);
        assert!(recovery_codes_advice(2)
            .unwrap()
            .contains("Only 2 recovery codes"));
        assert!(recovery_codes_advice(1)
            .unwrap()
            .contains("Only 1 recovery code is"));
        assert!(recovery_codes_advice(0)
            .unwrap()
            .contains("no recovery codes left"));
        assert!(recovery_code_accepted(0).contains("--regenerate"));
        assert!(!recovery_code_accepted(5).contains("--regenerate"));
    }
}
