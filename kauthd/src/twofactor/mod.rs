//! Two-factor authentication: TOTP codes, checking them (with the replay
//! guard and clock-drift learning), enrollment, recovery codes and the
//! google-authenticator import.

pub mod code_check;
pub mod drift;
pub mod enrollment;
pub mod google_auth;
pub mod qr;
pub mod recovery;
pub mod replay_guard;
pub mod totp;
