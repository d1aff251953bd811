//! Time-based one-time codes (RFC 6238), built on HOTP (RFC 4226). The
//! code at one time step comes from totp-rs; the window search, the replay
//! guard and drift learning are kauthd's own.
//!
//! Everything here is pure computation: no clock, no storage. Callers pass
//! the current Unix time in so the checks are testable and the replay state
//! (the last accepted counter) stays with the store that owns it.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Fewer than 80 bits makes codes guessable offline from a few samples;
/// RFC 4226 asks for at least 128 and recommends 160, but many existing
/// enrolments (google-authenticator's old default) use 80.
pub const MIN_SECRET_BYTES: usize = 10;

/// 160 bits, the size RFC 4226 recommends and authenticator apps expect.
pub const NEW_SECRET_BYTES: usize = 20;

/// 512 bits, the block size of SHA-512: HMAC hashes a longer key down
/// first, so more adds nothing. A cap for secrets imported from elsewhere.
pub const MAX_SECRET_BYTES: usize = 64;

/// Why a TOTP operation could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpError {
    /// The hash name is not SHA1, SHA256 or SHA512.
    UnknownAlgorithm,
    /// Authenticator apps only reliably support 6 or 8 digits.
    UnsupportedDigits(u32),
    /// Authenticator apps only reliably support 30 or 60 second steps.
    UnsupportedPeriod(u64),
    /// The secret text is empty.
    EmptySecret,
    /// The secret text is not valid base32.
    BadSecretEncoding,
    /// The secret decodes to fewer than [`MIN_SECRET_BYTES`] bytes.
    SecretTooShort { bits: usize },
    /// The secret decodes to more than [`MAX_SECRET_BYTES`] bytes.
    SecretTooLong { bits: usize },
    /// The system random number generator failed.
    Random,
}

impl fmt::Display for TotpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TotpError::UnknownAlgorithm => {
                f.write_str("unknown TOTP algorithm (use SHA1, SHA256 or SHA512)")
            }
            TotpError::UnsupportedDigits(d) => {
                write!(f, "codes of {d} digits are not supported (use 6 or 8)")
            }
            TotpError::UnsupportedPeriod(p) => {
                write!(
                    f,
                    "a time step of {p} seconds is not supported (use 30 or 60)"
                )
            }
            TotpError::EmptySecret => f.write_str("the TOTP secret is empty"),
            TotpError::BadSecretEncoding => {
                f.write_str("the TOTP secret is not valid base32 (letters A-Z and digits 2-7 only)")
            }
            TotpError::SecretTooShort { bits } => write!(
                f,
                "the TOTP secret is too short ({bits} bits; at least {} are needed)",
                MIN_SECRET_BYTES * 8
            ),
            TotpError::SecretTooLong { bits } => write!(
                f,
                "the TOTP secret is too long ({bits} bits; at most {} are accepted)",
                MAX_SECRET_BYTES * 8
            ),
            TotpError::Random => f.write_str("the system random number generator failed"),
        }
    }
}

impl std::error::Error for TotpError {}

/// The HMAC hash behind the codes. SHA1 is what nearly every app uses;
/// the others exist because RFC 6238 allows them and some tokens ship them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The spelling used in otpauth:// URIs and in stored settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = TotpError;

    /// Case-insensitive so hand-edited configs and URIs from other tools
    /// ("sha1", "Sha256") are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(TotpError::UnknownAlgorithm),
        }
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    /// Goes through `FromStr` so stored and configured values get the
    /// same case-insensitive treatment.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How codes are computed for one enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
}

impl Default for TotpParams {
    /// SHA1, 6 digits, 30 seconds: the only combination every
    /// authenticator app gets right.
    fn default() -> Self {
        TotpParams {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        }
    }
}

impl TotpParams {
    /// Refuses settings that common authenticator apps silently ignore,
    /// which would leave a user with codes that never match.
    pub fn validate(&self) -> Result<(), TotpError> {
        if self.digits != 6 && self.digits != 8 {
            return Err(TotpError::UnsupportedDigits(self.digits));
        }
        if self.period != 30 && self.period != 60 {
            return Err(TotpError::UnsupportedPeriod(self.period));
        }
        Ok(())
    }

    /// The time-step counter for a Unix time. A zero period (which
    /// `validate` refuses) is treated as one second rather than dividing
    /// by zero.
    pub fn counter_at(&self, unix_time: u64) -> u64 {
        unix_time / self.period.max(1)
    }
}

impl Algorithm {
    /// The same hash in totp-rs's terms.
    fn for_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// The most digits a code can have: the truncated HMAC value is 31 bits.
const MAX_DIGITS: u32 = 9;

/// RFC 4226 HOTP, computed by totp-rs: HMAC of the counter, dynamic
/// truncation to 31 bits, then the low `digits` decimal digits,
/// zero-padded.
///
/// `digits` is expected to be validated by the caller (6 or 8). More
/// than the 31-bit value can hold gives an empty code, which no
/// well-formed answer equals, rather than a panic.
pub fn hotp(secret: &[u8], algorithm: Algorithm, digits: u32, counter: u64) -> String {
    if digits > MAX_DIGITS {
        return String::new();
    }
    // totp-rs divides the time by the step: with a step of one second the
    // "time" is the counter itself. The unchecked constructor accepts the
    // 80-bit secrets of google-authenticator enrolments (and any digit
    // count), which its checked one refuses. The copy of the secret is
    // wiped when `totp` is dropped (its `zeroize` feature).
    let totp = totp_rs::TOTP::new_unchecked(
        algorithm.for_totp_rs(),
        digits as usize,
        0,
        1,
        secret.to_vec(),
    );
    totp.generate(counter)
}

/// The code an authenticator app shows at `unix_time`.
pub fn code_at(secret: &[u8], params: &TotpParams, unix_time: u64) -> String {
    hotp(
        secret,
        params.algorithm,
        params.digits,
        params.counter_at(unix_time),
    )
}

/// A code that matched: which time step it belongs to, and how far that
/// step is from the server's current one (positive = the user's clock is
/// ahead of ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub counter: u64,
    pub offset: i64,
}

/// Cheap check done before any HMAC work: the settings must be ones
/// [`TotpParams::validate`] accepts (so an unvalidated zero-digit setting
/// can never match an empty answer), and the code must be pure digits of
/// the configured length. Length and digit-ness are not secret.
fn well_formed(code: &str, params: &TotpParams) -> bool {
    params.validate().is_ok()
        && code.len() == params.digits as usize
        && code.bytes().all(|b| b.is_ascii_digit())
}

fn clamp_to_u64(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

fn clamp_to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Compares `code` against every counter in `first..=last` (skipping
/// those at or before `after`), doing the same work whatever matches, and
/// returns the earliest matching counter.
///
/// Earliest rather than latest: if two steps ever collide, taking the
/// older one advances the replay marker least, so the user's next code
/// is not refused.
fn scan(
    secret: &[u8],
    params: &TotpParams,
    code: &str,
    first: u64,
    last: u64,
    after: Option<u64>,
) -> Option<u64> {
    let mut found = Choice::from(0u8);
    let mut found_counter = 0u64;
    let mut counter = first;
    loop {
        let candidate = Zeroizing::new(hotp(secret, params.algorithm, params.digits, counter));
        // Whether a counter is eligible depends only on public values.
        let eligible = Choice::from(u8::from(after.is_none_or(|a| counter > a)));
        let equal = candidate.as_bytes().ct_eq(code.as_bytes()) & eligible;
        found_counter.conditional_assign(&counter, equal & !found);
        found |= equal;
        if counter >= last {
            break;
        }
        counter += 1;
    }
    if bool::from(found) {
        Some(found_counter)
    } else {
        None
    }
}

/// Like [`find_match`], but candidates at or before `last_counter` (the
/// last accepted step) are ignored. A replayed code is refused, while a
/// newer code from later in the same window still works.
pub fn find_match_after(
    secret: &[u8],
    params: &TotpParams,
    code: &str,
    unix_time: u64,
    skew_steps: u32,
    learned_offset: i64,
    last_counter: Option<u64>,
) -> Option<Match> {
    if !well_formed(code, params) {
        return None;
    }
    let now = params.counter_at(unix_time);
    let centre = i128::from(now) + i128::from(learned_offset);
    let low = centre - i128::from(skew_steps);
    let high = centre + i128::from(skew_steps);
    if high < 0 {
        return None;
    }
    let counter = scan(
        secret,
        params,
        code,
        clamp_to_u64(low),
        clamp_to_u64(high),
        last_counter,
    )?;
    Some(Match {
        counter,
        offset: clamp_to_i64(i128::from(counter) - i128::from(now)),
    })
}

/// Checks `code` against the steps `now + learned_offset ± skew_steps`
/// (never below step 0). Every candidate is computed and compared in
/// constant time, so timing says nothing about which one matched.
///
/// Settings that `validate` refuses never match. The work grows with
/// `skew_steps`, so callers keep it small (it comes from config).
///
/// The replay rule is the caller's; see [`find_match_after`].
pub fn find_match(
    secret: &[u8],
    params: &TotpParams,
    code: &str,
    unix_time: u64,
    skew_steps: u32,
    learned_offset: i64,
) -> Option<Match> {
    find_match_after(
        secret,
        params,
        code,
        unix_time,
        skew_steps,
        learned_offset,
        None,
    )
}

/// Searches ±`max_steps` around the server's current step and returns the
/// offset of a matching step, preferring the one closest to now. Used only
/// to learn clock drift after the normal window failed; never to accept a
/// login by itself.
pub fn find_wide(
    secret: &[u8],
    params: &TotpParams,
    code: &str,
    unix_time: u64,
    max_steps: u32,
) -> Option<i64> {
    if !well_formed(code, params) {
        return None;
    }
    let now = i128::from(params.counter_at(unix_time));
    let mut found = Choice::from(0u8);
    let mut found_offset = 0i64;
    // Walk outwards (0, -1, +1, -2, +2, ...) so the first hit kept is the
    // nearest one.
    for distance in 0..=i64::from(max_steps) {
        for offset in [-distance, distance] {
            if distance == 0 && offset < 0 {
                continue;
            }
            let counter = now + i128::from(offset);
            if counter < 0 {
                continue;
            }
            let candidate = Zeroizing::new(hotp(
                secret,
                params.algorithm,
                params.digits,
                clamp_to_u64(counter),
            ));
            let equal = candidate.as_bytes().ct_eq(code.as_bytes());
            found_offset.conditional_assign(&offset, equal & !found);
            found |= equal;
        }
    }
    if bool::from(found) {
        Some(found_offset)
    } else {
        None
    }
}

/// A fresh 160-bit secret from the operating system's generator.
pub fn generate_secret() -> Result<Zeroizing<Vec<u8>>, TotpError> {
    let mut secret = Zeroizing::new(vec![0u8; NEW_SECRET_BYTES]);
    getrandom::fill(&mut secret).map_err(|_| TotpError::Random)?;
    Ok(secret)
}

/// Base32 (RFC 4648) without padding, upper case: what authenticator apps
/// and `oathtool -b` expect.
pub fn encode_secret(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// Reads a base32 secret the way people copy it: any case, with spaces,
/// dashes or `=` padding. Unused trailing bits are ignored (as
/// google-authenticator does). Error messages never include the input.
pub fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, TotpError> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    if cleaned.is_empty() {
        return Err(TotpError::EmptySecret);
    }
    let mut spec = BASE32_NOPAD.specification();
    spec.check_trailing_bits = false;
    let encoding = spec.encoding().map_err(|_| TotpError::BadSecretEncoding)?;
    let secret = Zeroizing::new(
        encoding
            .decode(cleaned.as_bytes())
            .map_err(|_| TotpError::BadSecretEncoding)?,
    );
    if secret.len() < MIN_SECRET_BYTES {
        return Err(TotpError::SecretTooShort {
            bits: secret.len() * 8,
        });
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(TotpError::SecretTooLong {
            bits: secret.len() * 8,
        });
    }
    Ok(secret)
}

/// The secret in groups of four characters, for people who type it in
/// because they cannot scan the QR code.
pub fn setup_key(secret: &[u8]) -> String {
    let encoded = Zeroizing::new(encode_secret(secret));
    let mut grouped = String::with_capacity(encoded.len() + encoded.len() / 4);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    grouped
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so
/// spaces, colons and `@` in names cannot break the URI's structure.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI that authenticator apps read from a QR code
/// (Google's Key URI format). The issuer appears both as the label prefix
/// and as a parameter, which is what current apps expect.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8], params: &TotpParams) -> String {
    let account = percent_encode(account);
    let encoded_secret = Zeroizing::new(encode_secret(secret));
    let mut uri = String::from("otpauth://totp/");
    if issuer.is_empty() {
        uri.push_str(&account);
        uri.push_str("?secret=");
        uri.push_str(&encoded_secret);
    } else {
        let issuer = percent_encode(issuer);
        uri.push_str(&issuer);
        uri.push(':');
        uri.push_str(&account);
        uri.push_str("?secret=");
        uri.push_str(&encoded_secret);
        uri.push_str("&issuer=");
        uri.push_str(&issuer);
    }
    // Parameters at their default are left out: a shorter URI makes a
    // smaller QR code, and every app assumes these defaults.
    let default = TotpParams::default();
    if params.algorithm != default.algorithm {
        uri.push_str(&format!("&algorithm={}", params.algorithm));
    }
    if params.digits != default.digits {
        uri.push_str(&format!("&digits={}", params.digits));
    }
    if params.period != default.period {
        uri.push_str(&format!("&period={}", params.period));
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const RFC_SEED: &[u8] = b"12345678901234567890";

    fn seed(len: usize) -> Vec<u8> {
        RFC_SEED.iter().copied().cycle().take(len).collect()
    }

    fn params(algorithm: Algorithm, digits: u32, period: u64) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period,
        }
    }

    #[test]
    fn hotp_matches_rfc4226_appendix_d() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(
                hotp(RFC_SEED, Algorithm::Sha1, 6, counter as u64),
                *want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn totp_matches_rfc6238_appendix_b() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        let sha1 = seed(20);
        let sha256 = seed(32);
        let sha512 = seed(64);
        for (time, want1, want256, want512) in table {
            assert_eq!(code_at(&sha1, &params(Algorithm::Sha1, 8, 30), time), want1);
            assert_eq!(
                code_at(&sha256, &params(Algorithm::Sha256, 8, 30), time),
                want256
            );
            assert_eq!(
                code_at(&sha512, &params(Algorithm::Sha512, 8, 30), time),
                want512
            );
        }
    }

    #[test]
    fn codes_agree_with_oathtool() {
        let time = 1_700_000_123u64;
        for (algorithm, flag, key_len) in [
            // The 80-bit secrets of google-authenticator enrolments.
            (Algorithm::Sha1, "sha1", MIN_SECRET_BYTES),
            (Algorithm::Sha1, "sha1", 20),
            (Algorithm::Sha256, "sha256", 32),
            (Algorithm::Sha512, "sha512", 64),
        ] {
            let secret = seed(key_len);
            for digits in [6u32, 8] {
                for period in [30u64, 60] {
                    let output = Command::new("oathtool")
                        .arg(format!("--totp={flag}"))
                        .arg(format!("--digits={digits}"))
                        .arg(format!("--time-step-size={period}s"))
                        .arg(format!("--now=@{time}"))
                        .arg("-b")
                        .arg(encode_secret(&secret))
                        .output();
                    let output = match output {
                        Ok(output) => output,
                        Err(e) => panic!(
                            "could not run oathtool ({e}); install Debian's oathtool \
                             (apt-get install oathtool) to run this test"
                        ),
                    };
                    assert!(output.status.success(), "oathtool failed: {output:?}");
                    let theirs = String::from_utf8_lossy(&output.stdout).trim().to_string();
                    let ours = code_at(&secret, &params(algorithm, digits, period), time);
                    assert_eq!(ours, theirs, "{algorithm} {digits} digits {period}s");
                }
            }
        }
    }

    #[test]
    fn code_from_one_period_ago_is_accepted_with_skew_one() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let old = code_at(&secret, &p, now - 30);
        let found = find_match(&secret, &p, &old, now, 1, 0);
        assert_eq!(
            found,
            Some(Match {
                counter: now / 30 - 1,
                offset: -1
            })
        );
    }

    #[test]
    fn code_from_three_periods_ago_is_refused_with_skew_one() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let old = code_at(&secret, &p, now - 90);
        assert_eq!(find_match(&secret, &p, &old, now, 1, 0), None);
    }

    #[test]
    fn learned_offset_moves_the_window() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let ahead = code_at(&secret, &p, now + 5 * 30);
        assert_eq!(find_match(&secret, &p, &ahead, now, 1, 0), None);
        let found = find_match(&secret, &p, &ahead, now, 1, 5);
        assert_eq!(found.map(|m| m.offset), Some(5));
    }

    #[test]
    fn window_never_goes_below_counter_zero() {
        let secret = seed(20);
        let p = TotpParams::default();
        let first = code_at(&secret, &p, 0);
        assert_eq!(
            find_match(&secret, &p, &first, 10, 3, -2),
            Some(Match {
                counter: 0,
                offset: 0
            })
        );
        assert_eq!(find_match(&secret, &p, &first, 10, 1, -50), None);
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let code = code_at(&secret, &p, now);
        assert!(find_match(&secret, &p, &code, now, 1, 0).is_some());
        assert_eq!(find_match(&secret, &p, &code[..5], now, 1, 0), None);
        assert_eq!(
            find_match(&secret, &p, &format!("{code}0"), now, 1, 0),
            None
        );
        assert_eq!(find_match(&secret, &p, "12345a", now, 1, 0), None);
        assert_eq!(find_match(&secret, &p, "", now, 1, 0), None);
        assert_eq!(find_match(&secret, &p, "１２３４５６", now, 1, 0), None);
        let zero_digits = params(Algorithm::Sha1, 0, 30);
        assert_eq!(find_match(&secret, &zero_digits, "", now, 1, 0), None);
        assert_eq!(find_wide(&secret, &zero_digits, "", now, 1), None);
    }

    #[test]
    fn replayed_code_is_refused() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let code = code_at(&secret, &p, now);
        let first = find_match_after(&secret, &p, &code, now, 1, 0, None);
        let Some(first) = first else {
            panic!("fresh code should match")
        };
        assert_eq!(
            find_match_after(&secret, &p, &code, now + 5, 1, 0, Some(first.counter)),
            None
        );
    }

    #[test]
    fn newer_code_in_window_works_after_an_older_one() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let older = code_at(&secret, &p, now - 30);
        let current = code_at(&secret, &p, now);
        let Some(first) = find_match_after(&secret, &p, &older, now, 1, 0, None) else {
            panic!("older code should match")
        };
        let second = find_match_after(&secret, &p, &current, now, 1, 0, Some(first.counter));
        assert_eq!(
            second,
            Some(Match {
                counter: now / 30,
                offset: 0
            })
        );
        // ...but once the current one is used, the older one stays refused.
        assert_eq!(
            find_match_after(&secret, &p, &older, now, 1, 0, Some(now / 30)),
            None
        );
    }

    #[test]
    fn wide_search_reports_offset() {
        let secret = seed(20);
        let p = TotpParams::default();
        let now = 1_700_000_000u64;
        let behind = code_at(&secret, &p, now - 12 * 30);
        assert_eq!(find_wide(&secret, &p, &behind, now, 25), Some(-12));
        let ahead = code_at(&secret, &p, now + 20 * 30);
        assert_eq!(find_wide(&secret, &p, &ahead, now, 25), Some(20));
        let too_far = code_at(&secret, &p, now + 40 * 30);
        assert_eq!(find_wide(&secret, &p, &too_far, now, 25), None);
    }

    #[test]
    fn params_outside_app_support_are_refused() {
        assert!(TotpParams::default().validate().is_ok());
        assert!(params(Algorithm::Sha512, 8, 60).validate().is_ok());
        assert_eq!(
            params(Algorithm::Sha1, 7, 30).validate(),
            Err(TotpError::UnsupportedDigits(7))
        );
        assert_eq!(
            params(Algorithm::Sha1, 6, 45).validate(),
            Err(TotpError::UnsupportedPeriod(45))
        );
        // A zero period must not divide by zero even if unvalidated.
        let _ = code_at(&seed(20), &params(Algorithm::Sha1, 6, 0), 100);
    }

    #[test]
    fn algorithm_names_parse_in_any_case_and_serialize_upper() {
        assert_eq!("sha1".parse(), Ok(Algorithm::Sha1));
        assert_eq!("Sha256".parse(), Ok(Algorithm::Sha256));
        assert_eq!("SHA512".parse(), Ok(Algorithm::Sha512));
        assert_eq!("md5".parse::<Algorithm>(), Err(TotpError::UnknownAlgorithm));
        assert_eq!(Algorithm::Sha256.to_string(), "SHA256");
        let json = serde_json::to_string(&params(Algorithm::Sha256, 8, 60)).ok();
        assert_eq!(
            json.as_deref(),
            Some(r#"{"algorithm":"SHA256","digits":8,"period":60}"#)
        );
        let back: Option<TotpParams> =
            serde_json::from_str(r#"{"algorithm":"sha512","digits":6,"period":30}"#).ok();
        assert_eq!(back, Some(params(Algorithm::Sha512, 6, 30)));
    }

    #[test]
    fn secret_decoding_tolerates_case_spaces_dashes_and_padding() {
        let secret = seed(20);
        let encoded = encode_secret(&secret);
        assert_eq!(encoded, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let variants = [
            encoded.clone(),
            encoded.to_lowercase(),
            setup_key(&secret),
            "gezd-gnbv-gy3t-qojq-gezd-gnbv-gy3t-qojq".to_string(),
            " GEZD GNBV\tGY3T QOJQ GEZD GNBV GY3T QOJQ \n".to_string(),
        ];
        for text in variants {
            let decoded = decode_secret(&text).map(|s| s.to_vec());
            assert_eq!(decoded, Ok(secret.clone()), "{text:?}");
        }
        // 16 bytes needs padding in base32: "====" / "======" forms.
        let sixteen = seed(16);
        let padded = data_encoding::BASE32.encode(&sixteen);
        assert!(padded.ends_with('='));
        assert_eq!(decode_secret(&padded).map(|s| s.to_vec()), Ok(sixteen));
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        assert_eq!(decode_secret("").err(), Some(TotpError::EmptySecret));
        assert_eq!(decode_secret(" - = ").err(), Some(TotpError::EmptySecret));
        let bad = decode_secret("GEZDGNBVGY3TQOJ1GEZD").err();
        assert_eq!(bad, Some(TotpError::BadSecretEncoding));
        let short = decode_secret("GEZDGNBVGY3TQOJQ").err(); // 10 bytes: fine
        assert_eq!(short, None);
        let short = decode_secret("GEZDGNBVGY3TQ").err(); // 8 bytes
        assert_eq!(short, Some(TotpError::SecretTooShort { bits: 64 }));
        let long = encode_secret(&seed(MAX_SECRET_BYTES + 1));
        let err = decode_secret(&long).err();
        assert_eq!(err, Some(TotpError::SecretTooLong { bits: 520 }));
        let longest = encode_secret(&seed(MAX_SECRET_BYTES));
        assert_eq!(
            decode_secret(&longest).map(|s| s.len()),
            Ok(MAX_SECRET_BYTES)
        );
        for err in [
            TotpError::BadSecretEncoding,
            TotpError::SecretTooShort { bits: 64 },
            TotpError::SecretTooLong { bits: 520 },
        ] {
            assert!(!err.to_string().contains("GEZD"));
        }
    }

    #[test]
    fn generated_secrets_are_random_and_round_trip() {
        let (Ok(a), Ok(b)) = (generate_secret(), generate_secret()) else {
            panic!("random generator failed")
        };
        assert_eq!(a.len(), 20);
        assert_ne!(*a, *b);
        assert_eq!(
            decode_secret(&encode_secret(&a)).map(|s| s.to_vec()),
            Ok(a.to_vec())
        );
    }

    #[test]
    fn setup_key_groups_by_four() {
        assert_eq!(
            setup_key(&seed(20)),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        // 16 bytes -> 26 characters: the last group is short.
        assert_eq!(
            setup_key(&seed(16)).rsplit(' ').next().map(str::len),
            Some(2)
        );
    }

    #[test]
    fn uri_percent_encodes_spaces_colons_and_at_signs() {
        let uri = otpauth_uri(
            "Example Host: EU",
            "alice@example.com",
            &seed(20),
            &TotpParams::default(),
        );
        assert_eq!(
            uri,
            "otpauth://totp/Example%20Host%3A%20EU:alice%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Host%3A%20EU"
        );
        let plain = otpauth_uri("", "bob", &seed(20), &params(Algorithm::Sha256, 8, 60));
        assert_eq!(
            plain,
            "otpauth://totp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &algorithm=SHA256&digits=8&period=60"
        );
        let longer = otpauth_uri("", "bob", &seed(20), &params(Algorithm::Sha1, 6, 60));
        assert_eq!(
            longer, "otpauth://totp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=60",
            "only the parameters that differ from the defaults are written"
        );
        assert_eq!(percent_encode("a-b.c_d~é"), "a-b.c_d~%C3%A9");
    }
}
