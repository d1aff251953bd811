//! Helpers shared by the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod daemon;
pub mod login;
pub mod noop_daemon;
pub mod pam;
pub mod pam_ffi;
pub mod postgres;
pub mod qr_screen;
pub mod sshd;
pub mod standalone;
