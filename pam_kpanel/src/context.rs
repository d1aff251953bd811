//! Who is logging in, where from, to which service: read from the PAM
//! items once and checked, before anything goes to kauthd.

use std::ffi::CStr;

use kauth_proto::module_options::Options;
use pam::constants::PamResultCode;

use crate::pam_io::{Item, Level, PamIo};

/// The longest user name sent to kauthd, in bytes. Longer names (an email
/// address is at most 254) cannot be accounts; they are refused here.
pub const MAX_USER: usize = 256;
/// Remote host, tty and remote user are cut to this many bytes.
const MAX_ITEM: usize = 1024;
/// The longest PAM_SERVICE accepted.
const MAX_SERVICE: usize = 256;

/// The facts about one login that kauthd needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginContext {
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    pub ruser: Option<String>,
}

/// Parses the module arguments, logging why they are refused.
pub fn load_options(io: &dyn PamIo, args: &[&CStr]) -> Option<Options> {
    match Options::try_from(args) {
        Ok(opts) => Some(opts),
        Err(e) => {
            io.log(
                Level::Err,
                &format!("configuration error, failing closed: {e}"),
            );
            None
        }
    }
}

/// Gathers the login context. `Err` carries the code to return: user
/// problems give PAM_USER_UNKNOWN, a missing service PAM_SERVICE_ERR.
pub fn gather(io: &mut dyn PamIo, opts: &Options) -> Result<LoginContext, PamResultCode> {
    let raw_user = io.user().inspect_err(|code| {
        io.log(Level::Err, &format!("cannot get the user name ({code:?})"));
    })?;
    let user = checked_user(raw_user).map_err(|why| {
        io.log(Level::Notice, &format!("refusing a user name that {why}"));
        PamResultCode::PAM_USER_UNKNOWN
    })?;
    let service = match &opts.service {
        Some(name) => name.clone(),
        None => match io.item(Item::Service) {
            Some(name) if !name.is_empty() && name.len() <= MAX_SERVICE => name,
            _ => {
                io.log(Level::Err, "PAM_SERVICE is unset or unusable");
                return Err(PamResultCode::PAM_SERVICE_ERR);
            }
        },
    };
    Ok(LoginContext {
        user,
        service,
        rhost: io.item(Item::Rhost).map(cut),
        tty: io.item(Item::Tty).map(cut),
        ruser: io.item(Item::Ruser).map(cut),
    })
}

fn checked_user(raw: Vec<u8>) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("is empty");
    }
    if raw.len() > MAX_USER {
        return Err("is longer than 256 bytes");
    }
    let user = String::from_utf8(raw).map_err(|_| "is not valid UTF-8")?;
    if user.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(user)
}

/// Cuts an item to [`MAX_ITEM`] bytes on a character boundary.
fn cut(mut value: String) -> String {
    if value.len() > MAX_ITEM {
        let mut end = MAX_ITEM;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert_eq!(checked_user(b"ann".to_vec()).unwrap(), "ann");
        assert_eq!(
            checked_user("jürgen@example.org".into()).unwrap(),
            "jürgen@example.org"
        );
        assert!(checked_user(Vec::new()).is_err());
        assert!(checked_user(vec![b'a'; 257]).is_err());
        assert!(checked_user(vec![b'a', 0xff, b'b']).is_err());
        assert!(checked_user(b"ann\nroot".to_vec()).is_err());
    }

    #[test]
    fn long_items_are_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let short = cut(long);
        assert!(short.len() <= MAX_ITEM);
        assert!(short.chars().all(|c| c == 'é'));
    }
}
