//! What a login name may look like. Names end up in log lines, otpauth
//! URIs and terminal output, so control characters and separators are out.

use crate::error::Error;
/// Longest accepted name: panel users may log in with an e-mail address.
pub const MAX_NAME: usize = 254;

pub fn check_login_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid("the account name is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(Error::invalid(format!(
            "the account name is longer than {MAX_NAME} bytes"
        )));
    }
    if name.starts_with('-') {
        return Err(Error::invalid("the account name must not start with '-'"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-@+".contains(c);
    if !name.chars().all(allowed) {
        return Err(Error::invalid(
            "the account name may contain only letters, digits and . _ - @ +",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_email_names_pass() {
        assert!(check_login_name("ann").is_ok());
        assert!(check_login_name("web_01").is_ok());
        assert!(check_login_name("ann@example.org").is_ok());
    }

    #[test]
    fn dangerous_names_are_refused() {
        for bad in ["", "-rf", "a b", "a:b", "a/b", "a\nb", &"x".repeat(300)] {
            assert!(check_login_name(bad).is_err(), "{bad:?}");
        }
    }
}
