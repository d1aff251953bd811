//! TOTP codes for the benchmark's users (RFC 6238: HMAC-SHA1, 30-second
//! steps, 6 digits), computed in-process so that no child process sits in
//! the timed path; checked once against Debian's oathtool.

use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per code.
pub const PERIOD: u64 = 30;

/// One user's 20-byte TOTP secret.
pub type Secret = [u8; 20];

/// `count` random secrets (from /dev/urandom).
pub fn random_secrets(count: usize) -> Vec<Secret> {
    let mut bytes = vec![0u8; count * 20];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
        .chunks_exact(20)
        .map(|c| c.try_into().expect("20-byte chunk"))
        .collect()
}

/// The secret as authenticator apps and kauthctl take it.
pub fn base32(secret: &Secret) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The current time step.
pub fn current_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        / PERIOD
}

/// The 6-digit code of `secret` at time step `step` (RFC 4226 truncation).
pub fn code_at(secret: &Secret, step: u64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let bin = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    bin % 1_000_000
}

/// The code valid now, as typed.
pub fn valid_code(secret: &Secret, step: u64) -> String {
    format!("{:06}", code_at(secret, step))
}

/// A code that is wrong at `step` and at the steps either side of it
/// (kauthd's and google-authenticator's default windows).
pub fn wrong_code(secret: &Secret, step: u64) -> String {
    let near: Vec<u32> = (step - 1..=step + 1).map(|s| code_at(secret, s)).collect();
    let mut code = (code_at(secret, step) + 500_000) % 1_000_000;
    while near.contains(&code) {
        code = (code + 1) % 1_000_000;
    }
    format!("{code:06}")
}
