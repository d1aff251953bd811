//! kauthd: the daemon that owns every secret and makes every decision.
//! `pam_kpanel.so` and `kauthctl` talk to it through `kauth-proto`.
//!
//! The domains each own a folder: `twofactor/`, `passwords/`, `sessions/`,
//! `secrets/`, `store/`; `policy` makes every decision; `server/` is the
//! socket edge (listener, connection, callers and the thin `api/`). What is
//! left at the top level is used across all of them.

pub mod passwords;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod store;
pub mod twofactor;

pub mod activity;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod error;
pub mod escape;
pub mod host_net;
pub mod housekeeping;
pub mod logging;
pub mod login_texts;
pub mod malloc;
pub mod manpage;
pub mod names;
pub mod round_robin;
pub mod stats;
pub mod unix_users;
