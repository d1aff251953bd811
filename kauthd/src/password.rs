//! Password hashing: argon2id PHC strings with the `[password]` parameters.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use std::sync::Mutex;

use crate::config::PasswordConfig;

fn hasher(config: &PasswordConfig) -> Result<Argon2<'static>, String> {
    let params = Params::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        None,
    )
    .map_err(|e| format!("argon2 parameters refused: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…`).
pub fn hash(password: &str, config: &PasswordConfig) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(config)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Checks a password against a PHC string, in constant time.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a password against the account's hash, or, when there is none
/// (unknown user, no password set), against a dummy hash of the same cost,
/// so the answer takes the same time either way. False in the second case.
pub fn verify_or_dummy(password: &str, phc: Option<&str>, config: &PasswordConfig) -> bool {
    match phc {
        Some(phc) => verify(password, phc),
        None => {
            let dummy = dummy_hash(config);
            let _ = verify(password, &dummy);
            false
        }
    }
}

/// A hash of a random password with the current parameters, made once per
/// parameter set.
fn dummy_hash(config: &PasswordConfig) -> String {
    type Cost = (u32, u32, u32);
    static CACHE: Mutex<Option<(Cost, String)>> = Mutex::new(None);
    let key = (
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    );
    let mut cache = match CACHE.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((cached_key, hash)) = cache.as_ref() {
        if *cached_key == key {
            return hash.clone();
        }
    }
    let hash = hash("kauthd dummy password", config).unwrap_or_default();
    *cache = Some((key, hash.clone()));
    hash
}

/// Minimum checks every new password must pass. Returns a reason a person
/// understands.
pub fn check_acceptable(password: &str, config: &PasswordConfig) -> Result<(), String> {
    let length = password.chars().count();
    if length < config.min_length {
        return Err(format!(
            "the password is too short: use at least {} characters",
            config.min_length
        ));
    }
    if length > 1024 {
        return Err("the password is too long: use at most 1024 characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..PasswordConfig::default()
        }
    }

    #[test]
    fn hash_verifies_only_the_same_password() {
        let phc = hash("correct horse battery", &cheap()).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterz", &phc));
    }

    #[test]
    fn garbage_hash_never_verifies() {
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn short_password_is_refused_with_the_minimum() {
        let e = check_acceptable("short", &PasswordConfig::default()).unwrap_err();
        assert!(e.contains("12"), "{e}");
    }
}
