//! Password reset tokens for a panel's "forgot your password?" mail:
//! 192 random bits written as 48 hex digits (safe in a URL, a mail and a
//! shell). kauthd keeps only their SHA-256: with that many random bits
//! nobody can search for a token from its hash, and looking a token up by
//! its hash leaks nothing through timing.

use crate::error::Error;
use std::fmt::Write as _;

use kauth_proto::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Random bytes per token.
const TOKEN_BYTES: usize = 24;

/// A new token.
pub fn generate() -> Result<Secret, Error> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| Error::failed(format!("no randomness for a token: {e}")))?;
    let mut text = String::with_capacity(TOKEN_BYTES * 2);
    for b in bytes.iter() {
        let _ = write!(text, "{b:02x}");
    }
    Ok(Secret::new(text))
}

/// What is stored and looked up for a token: SHA-256 of its text, after
/// dropping surrounding spaces and upper case (a token copied from a mail).
pub fn digest(token: &str) -> [u8; 32] {
    let normalized = Zeroizing::new(token.trim().to_ascii_lowercase());
    Sha256::digest(normalized.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_48_hex_digits_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.expose().len(), 48);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn digest_forgives_case_and_spaces_only() {
        let token = generate().unwrap();
        let d = digest(token.expose());
        assert_eq!(digest(&format!(" {}\n", token.expose().to_uppercase())), d);
        assert_ne!(digest(&token.expose()[1..]), d);
    }
}
