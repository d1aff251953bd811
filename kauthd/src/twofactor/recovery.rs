//! One-time recovery codes for when the authenticator app is lost.
//!
//! Codes are 12 symbols from Crockford's base32 alphabet (digits and
//! lower-case letters without i, l, o, u): 60 random bits, shown as
//! `xxxx-xxxx-xxxx`. The alphabet has exactly 32 symbols, so each symbol is
//! five unbiased random bits and no rejection sampling is needed.
//!
//! Storage: each user's set of codes shares one random salt and every code
//! is stored as `argon2id(normalized code, salt)`. Checking a typed code
//! therefore costs one argon2 run, however many codes are left, followed
//! by a constant-time comparison against all stored hashes.

use std::fmt;

use argon2::{Argon2, Params, Version};
use kauth_proto::Secret;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, Zeroizing};

use crate::passwords::argon2_pool::{self, RunError, Turn};

/// Crockford base32, lower case. No i, l, o or u, so nothing on the sheet
/// can be misread as another symbol in the set.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Symbols per code: 12 × 5 bits = 60 bits.
pub const CODE_LENGTH: usize = 12;

/// google-authenticator scratch codes are 8 decimal digits; imported ones
/// stay valid until used.
pub const IMPORTED_CODE_LENGTH: usize = 8;

/// Bytes of salt per set of codes.
pub const SALT_LENGTH: usize = 16;

/// Why a recovery-code operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// The system random number generator failed.
    Random,
    /// The argon2 cost settings are out of range (memory too small for
    /// the parallelism, zero iterations, ...).
    BadCost,
    /// The salt is shorter than argon2 allows.
    BadSalt,
    /// Hashing failed for another reason.
    Hashing,
    /// The check was stopped when its turn came (see
    /// [`crate::passwords::argon2_pool::Turn`]): nothing was hashed.
    Stopped,
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Random => f.write_str("the system random number generator failed"),
            RecoveryError::BadCost => f.write_str(
                "the recovery-code hash settings are invalid \
                 (memory must be at least 8 KiB per lane, iterations and parallelism at least 1)",
            ),
            RecoveryError::BadSalt => {
                f.write_str("the recovery-code salt is too short (at least 8 bytes)")
            }
            RecoveryError::Hashing => f.write_str("hashing a recovery code failed"),
            RecoveryError::Stopped => {
                f.write_str("the recovery-code check was stopped before hashing")
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// argon2id cost settings for recovery-code hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    /// OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): slow enough to
    /// hurt offline guessing, fast enough for one run per login attempt.
    fn default() -> Self {
        HashCost {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Makes `count` new codes in display form (`xxxx-xxxx-xxxx`). Codes in
/// one batch are all different, so a user never holds two copies of the
/// same code.
pub fn generate(count: usize) -> Result<Vec<Secret>, RecoveryError> {
    let mut codes: Vec<Secret> = Vec::with_capacity(count);
    // A duplicate at 60 bits means the generator is broken; give up
    // instead of looping.
    let mut attempts_left = count.saturating_mul(2).saturating_add(8);
    while codes.len() < count {
        if attempts_left == 0 {
            return Err(RecoveryError::Random);
        }
        attempts_left -= 1;
        let code = generate_one()?;
        if codes.iter().all(|c| c.expose() != code.expose()) {
            codes.push(code);
        }
    }
    Ok(codes)
}

fn generate_one() -> Result<Secret, RecoveryError> {
    let mut random = Zeroizing::new([0u8; CODE_LENGTH]);
    getrandom::fill(random.as_mut()).map_err(|_| RecoveryError::Random)?;
    let mut text = String::with_capacity(CODE_LENGTH + 2);
    for (i, byte) in random.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            text.push('-');
        }
        // 32 divides 256, so the low five bits are uniform.
        text.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    Ok(Secret::new(text))
}

/// Turns what a person typed into the form that is hashed, or `None` if it
/// cannot be a recovery code.
///
/// Dashes and ASCII whitespace are dropped and letters lower-cased. Then:
/// - exactly 8 ASCII digits is accepted as an imported google-authenticator
///   scratch code;
/// - otherwise it must be 12 symbols of [`ALPHABET`], after Crockford's
///   look-alike mapping `o` → `0` and `i`/`l` → `1` (those letters are not
///   in the alphabet, so the mapping cannot turn one valid code into
///   another). `u` and anything else outside the alphabet is refused.
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    let mut compact: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| *c != '-' && !c.is_ascii_whitespace())
            .collect(),
    );
    compact.make_ascii_lowercase();

    if compact.len() == IMPORTED_CODE_LENGTH && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Some(compact);
    }

    let mut out = Zeroizing::new(String::with_capacity(CODE_LENGTH));
    for c in compact.chars() {
        let mapped = match c {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        };
        if !mapped.is_ascii() || !ALPHABET.contains(&(mapped as u8)) {
            return None;
        }
        out.push(mapped);
    }
    if out.len() == CODE_LENGTH {
        Some(out)
    } else {
        None
    }
}

/// A fresh salt for a new set of codes. Each set gets its own, so equal
/// codes in two users' sets do not hash alike.
pub fn new_salt() -> Result<[u8; SALT_LENGTH], RecoveryError> {
    let mut salt = [0u8; SALT_LENGTH];
    getrandom::fill(&mut salt).map_err(|_| RecoveryError::Random)?;
    Ok(salt)
}

/// argon2id of a normalized code (see [`normalize`]) under the set's salt,
/// when `turn` comes.
pub fn hash(
    turn: &Turn<'_>,
    normalized: &str,
    salt: &[u8],
    cost: &HashCost,
) -> Result<[u8; 32], RecoveryError> {
    if salt.len() < argon2::MIN_SALT_LEN {
        return Err(RecoveryError::BadSalt);
    }
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|_| RecoveryError::BadCost)?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    // Through the pool: at most one argon2 run per core, fair by who asks.
    let result = argon2_pool::hash_into(turn, &argon, normalized.as_bytes(), salt, &mut out);
    match result {
        Ok(()) => Ok(out),
        Err(stopped_or_failed) => {
            out.zeroize();
            Err(match stopped_or_failed {
                RunError::Stopped => RecoveryError::Stopped,
                RunError::Argon2(_) => RecoveryError::Hashing,
            })
        }
    }
}

/// The index of the stored hash equal to `candidate`, comparing against
/// every entry in constant time so timing does not reveal which code (or
/// whether any) matched.
pub fn find(candidate_hash: &[u8; 32], stored: &[[u8; 32]]) -> Option<usize> {
    let mut found = Choice::from(0u8);
    let mut index = 0u64;
    for (i, entry) in stored.iter().enumerate() {
        let equal = entry.ct_eq(candidate_hash);
        index.conditional_assign(&(i as u64), equal & !found);
        found |= equal;
    }
    if bool::from(found) {
        usize::try_from(index).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::passwords::argon2_pool::QueueKey;

    fn turn() -> Turn<'static> {
        Turn::new(QueueKey::Uid(0))
    }

    const CHEAP: HashCost = HashCost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn norm(text: &str) -> Option<String> {
        normalize(text).map(|s| s.to_string())
    }

    #[test]
    fn alphabet_has_32_distinct_unambiguous_symbols() {
        let set: HashSet<u8> = ALPHABET.iter().copied().collect();
        assert_eq!(set.len(), 32);
        for c in b"ilou" {
            assert!(!set.contains(c), "{}", char::from(*c));
        }
        // 12 symbols × log2(32) = 60 bits.
        assert_eq!(CODE_LENGTH * 5, 60);
    }

    #[test]
    fn generated_codes_have_display_form_and_60_bits() {
        let Ok(codes) = generate(10) else {
            panic!("generate failed")
        };
        assert_eq!(codes.len(), 10);
        for code in &codes {
            let text = code.expose();
            assert_eq!(text.len(), 14);
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(text
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| ALPHABET.contains(&b)));
            assert_eq!(norm(text).map(|s| s.len()), Some(CODE_LENGTH));
        }
    }

    #[test]
    fn generated_codes_are_unique_over_a_batch() {
        let Ok(codes) = generate(200) else {
            panic!("generate failed")
        };
        let set: HashSet<&str> = codes.iter().map(|c| c.expose()).collect();
        assert_eq!(set.len(), 200);
    }

    #[test]
    fn generated_symbols_cover_the_whole_alphabet() {
        let Ok(codes) = generate(100) else {
            panic!("generate failed")
        };
        let seen: HashSet<u8> = codes
            .iter()
            .flat_map(|c| {
                c.expose()
                    .bytes()
                    .filter(|b| *b != b'-')
                    .collect::<Vec<_>>()
            })
            .collect();
        // 1200 draws from 32 symbols: missing one is ~1e-14 likely.
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn normalize_accepts_case_spacing_and_missing_dashes() {
        let want = Some("k7m2q9xd4htr".to_string());
        assert_eq!(norm("K7M2-Q9XD-4HTR"), want);
        assert_eq!(norm("k7m2-q9xd-4htr"), want);
        assert_eq!(norm("K7M2Q9XD4HTR"), want);
        assert_eq!(norm(" k7m2 q9xd\t4htr\n"), want);
        assert_eq!(norm("K7M2 - Q9XD - 4HTR"), want);
    }

    #[test]
    fn normalize_maps_crockford_look_alikes() {
        assert_eq!(norm("OOOO-IIII-LLLL"), Some("000011111111".to_string()));
    }

    #[test]
    fn normalize_rejects_wrong_length_and_bad_symbols() {
        assert_eq!(norm(""), None);
        assert_eq!(norm("k7m2-q9xd-4ht"), None);
        assert_eq!(norm("k7m2-q9xd-4htrr"), None);
        assert_eq!(norm("k7m2-q9xd-4htu"), None);
        assert_eq!(norm("k7m2-q9xd-4ht!"), None);
        assert_eq!(norm("k7m2-q9xd-4hté"), None);
        assert_eq!(norm("k7m2_q9xd_4htr"), None);
    }

    #[test]
    fn normalize_accepts_imported_eight_digit_scratch_codes() {
        assert_eq!(norm("80413595"), Some("80413595".to_string()));
        assert_eq!(norm("8041 3595"), Some("80413595".to_string()));
        assert_eq!(norm("8041359"), None);
        assert_eq!(norm("8041359a"), None);
    }

    #[test]
    fn hash_is_deterministic_per_salt_and_differs_across_salts() {
        let salt_a = [1u8; 16];
        let salt_b = [2u8; 16];
        let a1 = hash(&turn(), "k7m2q9xd4htr", &salt_a, &CHEAP);
        let a2 = hash(&turn(), "k7m2q9xd4htr", &salt_a, &CHEAP);
        let b = hash(&turn(), "k7m2q9xd4htr", &salt_b, &CHEAP);
        let other = hash(&turn(), "k7m2q9xd4hts", &salt_a, &CHEAP);
        assert!(a1.is_ok());
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, other);
    }

    #[test]
    fn bad_hash_settings_are_reported() {
        assert_eq!(
            hash(&turn(), "x", &[0u8; 4], &CHEAP),
            Err(RecoveryError::BadSalt)
        );
        let zero = HashCost {
            iterations: 0,
            ..CHEAP
        };
        assert_eq!(
            hash(&turn(), "x", &[0u8; 16], &zero),
            Err(RecoveryError::BadCost)
        );
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(new_salt(), new_salt());
    }

    #[test]
    fn find_locates_the_matching_code() {
        let salt = [7u8; 16];
        let stored: Vec<[u8; 32]> = ["aaaabbbbcccc", "ddddeeeeffff", "80413595"]
            .iter()
            .filter_map(|c| hash(&turn(), c, &salt, &CHEAP).ok())
            .collect();
        assert_eq!(stored.len(), 3);
        let typed = normalize("DDDD-EEEE-FFFF").map(|n| hash(&turn(), &n, &salt, &CHEAP));
        let Some(Ok(typed)) = typed else {
            panic!("hashing failed")
        };
        assert_eq!(find(&typed, &stored), Some(1));
        let imported = hash(&turn(), "80413595", &salt, &CHEAP);
        assert_eq!(imported.map(|h| find(&h, &stored)), Ok(Some(2)));
    }

    #[test]
    fn find_returns_none_for_unknown_code() {
        let salt = [7u8; 16];
        let stored: Vec<[u8; 32]> = ["aaaabbbbcccc", "ddddeeeeffff"]
            .iter()
            .filter_map(|c| hash(&turn(), c, &salt, &CHEAP).ok())
            .collect();
        let wrong = hash(&turn(), "gggghhhhjjjj", &salt, &CHEAP);
        assert_eq!(wrong.map(|h| find(&h, &stored)), Ok(None));
        assert_eq!(find(&[0u8; 32], &[]), None);
    }
}
