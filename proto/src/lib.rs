//! The wire protocol between kauthd and its clients (the PAM module,
//! kauthctl, panels). See `PROTOCOL.md` at the top of the repository.
//!
//! This crate is linked into the PAM module, so it must stay small, never
//! panic and never block without a timeout.
//! (The `testing` module, a fake kauthd for tests, is the exception: only
//! tests enable its feature.)

pub mod client;
pub mod codec;
pub mod messages;
pub mod module_options;
pub mod peer;
pub mod secret;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Client, ClientError};
pub use codec::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use messages::*;
pub use secret::Secret;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where kauthd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/kauthd/kauthd.sock";
