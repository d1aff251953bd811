//! What a person sees while setting up two-factor authentication inside a
//! login conversation (the enrollment at login). Kept together so the
//! wording can be reviewed and translated in one place.

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
}
