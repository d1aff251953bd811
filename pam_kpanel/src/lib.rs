//! pam_kpanel: forwards the PAM conversation to kauthd.
//!
//! The module holds no secrets and no policy. Each hook parses its
//! arguments (`kauth_proto::module_options`, shared with `kauthctl
//! doctor`), reads the PAM items (`context`), connects to kauthd with a
//! checked peer (`daemon`) and relays kauthd's prompts and texts through
//! the application's conversation (`relay`) until kauthd says how it ended;
//! the hook maps that to a PAM code (`auth`, `account`, `session`,
//! `password`). libpam is reached only through the [`PamIo`]
//! trait (`libpam` implements it), so all of this is tested without libpam.
//!
//! The only exported symbols are the six `pam_sm_*` hooks (`hooks`).
//!
//! | hook | kauthd says | PAM code |
//! | --- | --- | --- |
//! | auth | Success / Denied / Locked | SUCCESS / AUTH_ERR / MAXTRIES |
//! | account | Success / Denied, Locked | SUCCESS / PERM_DENIED |
//! | session open, close | id / done (close: not found is fine) | SUCCESS, else SESSION_ERR |
//! | password | Success / Denied, Locked | SUCCESS / AUTHTOK_ERR (prelim: TRY_AGAIN when unreachable) |
//! | setcred | — | SUCCESS |
//!
//! Everywhere: a bad module argument → SERVICE_ERR (SESSION_ERR for
//! session); kauthd unreachable → AUTHINFO_UNAVAIL (SESSION_ERR for
//! session), or SUCCESS under `failmode=safe`; a listener with the wrong
//! uid, garbage, or a conversation that breaks after it started →
//! AUTHINFO_UNAVAIL whatever the failmode; the application's conversation
//! failing on a prompt → CONV_ERR; an answer over 1024 bytes → AUTH_ERR,
//! not sent; an unusable user name (empty, over 256 bytes, not UTF-8) →
//! USER_UNKNOWN, not sent.

pub mod account;
pub mod auth;
pub mod context;
pub mod daemon;
mod ffi;
pub mod hooks;
mod libpam;
pub mod pam_io;
pub mod password;
pub mod relay;
pub mod session;

#[cfg(test)]
mod testing;

pub use kauth_proto::module_options::{FailMode, FirstPass, OptionError, Options};
pub use pam_io::PamIo;
