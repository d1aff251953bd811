//! kauthd: the daemon that owns every secret and makes every decision.
//! `pam_kpanel.so` and `kauthctl` talk to it through `kauth-proto`.

pub mod access;
pub mod api;
pub mod argon2_pool;
pub mod client_fields;
pub mod clock;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod error;
pub mod logging;
pub mod names;
pub mod password;
pub mod password_policy;
pub mod reset_token;
pub mod server;
pub mod store;
pub mod unix_users;

pub mod activity;
pub mod code_check;
pub mod drift;
pub mod enrollment;
pub mod escape;
pub mod google_auth;
pub mod housekeeping;
pub mod malloc;
pub mod manpage;
pub mod policy;
pub mod procinfo;
pub mod recent_codes;
pub mod recovery;
pub mod refusal_log;
pub mod replay_guard;
pub mod sessions;
pub mod totp;

pub mod key_file;
pub mod rekey;
pub mod secret_box;
