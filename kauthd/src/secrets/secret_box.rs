//! Encryption at rest of TOTP secrets: XChaCha20-Poly1305 with a 256-bit
//! key kept outside the database (see `key_file`). Every secret the store
//! writes or reads passes through `seal` and `open` here.
//!
//! A sealed secret is the 24-byte random nonce followed by the ciphertext
//! and its tag. The associated data binds it to its row (the account id and
//! whether it is an enrolled or a pending secret) and to the key id, so a
//! sealed value copied into another row, or read with another key, does
//! not open.

use crate::error::Error;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes in a key file.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// The key that seals TOTP secrets. Wiped when dropped.
#[derive(Clone)]
pub struct SecretKey {
    id: u32,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", key_id_text(self.id))
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> SecretKey {
        let digest = Sha256::new()
            .chain_update(b"kauthd secret key id\0")
            .chain_update(&bytes[..])
            .finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        SecretKey { id, bytes }
    }

    /// A fresh random key.
    pub fn generate() -> Result<SecretKey, Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..])
            .map_err(|e| Error::failed(format!("cannot get random bytes for a key: {e}")))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// A short public name of the key (from a hash of it), stored with each
    /// sealed secret so the right key can be told from a wrong one.
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// How a key id is written for people: eight hex digits.
pub fn key_id_text(id: u32) -> String {
    format!("{id:08x}")
}

/// Which row a sealed secret belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A confirmed TOTP credential (table `totp`).
    Enrolled,
    /// An enrollment waiting for its first code (table `totp_pending`).
    Pending,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Enrolled => b"totp",
            Purpose::Pending => b"totp_pending",
        }
    }
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// It was sealed with another key than the one kauthd has.
    WrongKey { sealed_with: u32, have: u32 },
    /// The key matches but the value does not open: it was altered or
    /// moved from another row.
    Corrupt,
    /// It was never sealed (a plaintext row that was not migrated).
    NotSealed,
    /// No random nonce could be had.
    Random(String),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::WrongKey { sealed_with, have } => write!(
                f,
                "the TOTP secret was encrypted with key {} but the key file holds key {}: the key file does not match this database; put back the key file that belongs to it (daemon.secret_key_file)",
                key_id_text(*sealed_with),
                key_id_text(*have)
            ),
            SealError::Corrupt => write!(
                f,
                "a stored TOTP secret does not decrypt with the right key: the row was altered or copied from another row; enroll the user again"
            ),
            SealError::NotSealed => write!(f, "a stored TOTP secret is not encrypted"),
            SealError::Random(e) => write!(f, "cannot get random bytes: {e}"),
        }
    }
}

impl std::error::Error for SealError {}

fn associated_data(purpose: Purpose, account_id: i64, key_id: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(48);
    ad.extend_from_slice(b"kauthd totp secret v1\0");
    ad.extend_from_slice(purpose.label());
    ad.push(0);
    ad.extend_from_slice(&account_id.to_be_bytes());
    ad.extend_from_slice(&key_id.to_be_bytes());
    ad
}

/// Encrypts `secret` for one row, with a fresh random nonce.
pub fn seal(
    key: &SecretKey,
    purpose: Purpose,
    account_id: i64,
    secret: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let aad = associated_data(purpose, account_id, key.id());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Corrupt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts a row's secret sealed with key `sealed_with` (`None`: the row
/// was never sealed).
pub fn open(
    key: &SecretKey,
    purpose: Purpose,
    account_id: i64,
    sealed_with: Option<u32>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let Some(sealed_with) = sealed_with else {
        return Err(SealError::NotSealed);
    };
    if sealed_with != key.id() {
        return Err(SealError::WrongKey {
            sealed_with,
            have: key.id(),
        });
    }
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Corrupt);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let aad = associated_data(purpose, account_id, key.id());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(Zeroizing::new([byte; KEY_LEN]))
    }

    #[test]
    fn sealed_secret_opens_only_in_its_own_row_with_its_key() {
        let k = key(1);
        let sealed = seal(&k, Purpose::Enrolled, 7, b"12345678901234567890").unwrap();
        assert!(!sealed.windows(20).any(|w| w == b"12345678901234567890"));
        let opened = open(&k, Purpose::Enrolled, 7, Some(k.id()), &sealed).unwrap();
        assert_eq!(&opened[..], b"12345678901234567890");
        assert_eq!(
            open(&k, Purpose::Enrolled, 8, Some(k.id()), &sealed),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            open(&k, Purpose::Pending, 7, Some(k.id()), &sealed),
            Err(SealError::Corrupt)
        );
        let other = key(2);
        assert!(matches!(
            open(&other, Purpose::Enrolled, 7, Some(k.id()), &sealed),
            Err(SealError::WrongKey { .. })
        ));
        assert_eq!(
            open(&k, Purpose::Enrolled, 7, None, &sealed),
            Err(SealError::NotSealed)
        );
    }

    #[test]
    fn each_seal_uses_a_new_nonce() {
        let k = key(3);
        let a = seal(&k, Purpose::Pending, 1, b"secret").unwrap();
        let b = seal(&k, Purpose::Pending, 1, b"secret").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn key_ids_differ_between_keys() {
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id(), key(1).id());
    }
}
