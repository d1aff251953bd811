//! The master key and what it seals: the secret box, the key file on disk
//! and rekeying the store to a new key.

pub mod key_file;
pub mod rekey;
pub mod secret_box;
