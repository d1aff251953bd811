//! Password hashing: argon2id PHC strings with the `[password]` parameters.
//! Every run goes through [`argon2_pool`], so it waits its turn (fairly,
//! by who asks) behind at most one run per core. Whether a new password is good enough is
//! [`crate::passwords::strength`]'s business.

use crate::error::Error;
use std::sync::Mutex;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::PasswordConfig;
use crate::passwords::argon2_pool::{self, QueueKey, RunError, Turn};

/// Bytes of random salt per hash.
const SALT_LENGTH: usize = 16;
/// Bytes of argon2 output stored.
const OUTPUT_LENGTH: usize = 32;

fn params(config: &PasswordConfig) -> Result<Params, Error> {
    Params::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        Some(OUTPUT_LENGTH),
    )
    .map_err(|e| Error::failed(format!("argon2 parameters refused: {e}")))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…`); the run
/// waits in `key`'s queue.
pub fn hash(key: &QueueKey, password: &str, config: &PasswordConfig) -> Result<String, Error> {
    let params = params(config)?;
    let mut salt = [0u8; SALT_LENGTH];
    getrandom::fill(&mut salt)
        .map_err(|e| Error::failed(format!("no randomness for a salt: {e}")))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = Zeroizing::new([0u8; OUTPUT_LENGTH]);
    argon2_pool::hash_into(
        &Turn::new(key.clone()),
        &argon2,
        password.as_bytes(),
        &salt,
        out.as_mut(),
    )
    .map_err(|e| Error::failed(format!("hashing failed: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::failed(format!("salt encoding failed: {e}")))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| Error::failed(format!("bad parameters: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(
            Output::new(out.as_ref()).map_err(|e| Error::failed(format!("bad output: {e}")))?,
        ),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string (with the cost written in it),
/// comparing in constant time, when `turn` comes. A hash kauthd cannot use
/// never matches, nor does a check the turn stopped.
pub fn verify(turn: &Turn<'_>, password: &str, phc: &str) -> bool {
    match verify_checked(turn, password, phc) {
        Ok(matches) => matches,
        Err(why) => {
            log::error!("a stored password hash cannot be checked: {why}");
            false
        }
    }
}

fn verify_checked(turn: &Turn<'_>, password: &str, phc: &str) -> Result<bool, Error> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| Error::failed(format!("not a PHC string: {e}")))?;
    let algorithm =
        Algorithm::try_from(parsed.algorithm).map_err(|e| Error::failed(e.to_string()))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| Error::failed(e.to_string()))?,
        None => Version::V0x13,
    };
    let params = Params::try_from(&parsed).map_err(|e| Error::failed(e.to_string()))?;
    let expected = parsed
        .hash
        .ok_or_else(|| Error::failed("the hash has no output"))?;
    let salt = parsed
        .salt
        .ok_or_else(|| Error::failed("the hash has no salt"))?;
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| Error::failed(e.to_string()))?;
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    match argon2_pool::hash_into(turn, &argon2, password.as_bytes(), salt, &mut out) {
        Ok(()) => {}
        Err(RunError::Stopped) => return Ok(false),
        Err(e @ RunError::Argon2(_)) => return Err(Error::failed(e.to_string())),
    }
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

/// Whether a hash was made with other settings than `config`'s (another
/// algorithm, version or cost), so it should be redone after the next
/// successful check. A hash kauthd cannot read is left alone: it never
/// matches, so there is never a password to redo it with.
pub fn needs_rehash(phc: &str, config: &PasswordConfig) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(stored) = Params::try_from(&parsed) else {
        return false;
    };
    parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || stored.m_cost() != config.argon2_memory_kib
        || stored.t_cost() != config.argon2_iterations
        || stored.p_cost() != config.argon2_parallelism
}

/// Checks a password against the account's hash, or, when there is none
/// (unknown user, no password set), against a dummy hash made with the
/// same `[password]` cost, salt and output length as real ones, so the
/// answer takes the same time either way. False in the second case.
pub fn verify_or_dummy(
    turn: &Turn<'_>,
    password: &str,
    phc: Option<&str>,
    config: &PasswordConfig,
) -> bool {
    match phc {
        Some(phc) => verify(turn, password, phc),
        None => {
            match dummy_hash(config, turn.key()) {
                Some(dummy) => {
                    let _ = verify(turn, password, &dummy);
                }
                None => log::error!("cannot make the dummy password hash; check [password]"),
            }
            false
        }
    }
}

/// A hash of a fixed password with the current parameters, made once per
/// parameter set (the first time, in `key`'s queue).
fn dummy_hash(config: &PasswordConfig, key: &QueueKey) -> Option<String> {
    type Cost = (u32, u32, u32);
    static CACHE: Mutex<Option<(Cost, String)>> = Mutex::new(None);
    let cost = (
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    );
    {
        let cache = match CACHE.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((cached_cost, hash)) = cache.as_ref() {
            if *cached_cost == cost {
                return Some(hash.clone());
            }
        }
    }
    // Hashed outside the lock: it waits for an argon2 slot.
    let hash = hash(key, "kauthd dummy password", config).ok()?;
    let mut cache = match CACHE.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    *cache = Some((cost, hash.clone()));
    Some(hash)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    fn key() -> QueueKey {
        QueueKey::Uid(0)
    }

    fn check(password: &str, phc: &str) -> bool {
        verify(&Turn::new(key()), password, phc)
    }

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..PasswordConfig::default()
        }
    }

    #[test]
    fn hash_verifies_only_the_same_password() {
        let phc = hash(&key(), "correct horse battery", &cheap()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(check("correct horse battery", &phc));
        assert!(!check("correct horse batterz", &phc));
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        let ours = hash(&key(), "correct horse battery", &cheap()).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(check("correct horse battery", &theirs));
        assert!(!check("wrong", &theirs));
    }

    #[test]
    fn garbage_hash_never_verifies() {
        assert!(!check("x", "not a hash"));
        assert!(!check("x", ""));
    }

    #[test]
    fn a_hash_with_other_costs_needs_redoing() {
        let config = cheap();
        let phc = hash(&key(), "correct horse battery", &config).unwrap();
        assert!(!needs_rehash(&phc, &config));
        let more_memory = PasswordConfig {
            argon2_memory_kib: 128,
            ..cheap()
        };
        assert!(needs_rehash(&phc, &more_memory));
        let more_passes = PasswordConfig {
            argon2_iterations: 2,
            ..cheap()
        };
        assert!(needs_rehash(&phc, &more_passes));
        let argon2i =
            "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A";
        assert!(needs_rehash(argon2i, &config));
        assert!(!needs_rehash("not a hash", &config));
    }

    #[test]
    fn the_dummy_hash_has_the_configured_cost() {
        let config = cheap();
        let dummy = dummy_hash(&config, &key()).unwrap();
        assert!(!needs_rehash(&dummy, &config));
        let real = hash(&key(), "x", &config).unwrap();
        // Same shape: salt and output lengths match, so checking costs the same.
        assert_eq!(dummy.len(), real.len());
        let turn = Turn::new(key());
        assert!(!verify_or_dummy(
            &turn,
            "kauthd dummy password",
            None,
            &config
        ));
    }
}
