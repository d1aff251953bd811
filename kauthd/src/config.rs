//! `/etc/kauthd/kauthd.toml`: every key optional, unknown keys refused.
//! `config/kauthd.toml` documents each key with its default.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::clock::Date;
use crate::error::Error;
use crate::twofactor::totp::{Algorithm, TotpParams};

pub const DEFAULT_CONFIG: &str = "/etc/kauthd/kauthd.toml";
pub const DEFAULT_SECRET_KEY_FILE: &str = "/etc/kauthd/secret.key";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub access: AccessConfig,
    pub totp: TotpConfig,
    pub recovery: RecoveryConfig,
    pub password: PasswordConfig,
    pub ratelimit: RateLimitConfig,
    pub policy: PolicyConfig,
    pub sessions: SessionsConfig,
    pub activity: ActivityConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub max_connections: usize,
    /// Seconds a connection may sit idle (this includes a person typing a
    /// code at a prompt, so it should not be shorter than sshd's grace time).
    pub idle_timeout: u64,
    /// The key that encrypts TOTP secrets in the database; created at the
    /// first start. Kept apart from the state dir so a copy of the database
    /// holds no usable secret.
    pub secret_key_file: PathBuf,
    /// Connections one ordinary uid (not root, not a PAM caller) may hold.
    pub max_connections_per_uid: usize,
    /// Connections only root and `[access] pam_callers` may use; unset: a
    /// quarter of `max_connections` (see `reserved`).
    pub reserved_connections: Option<usize>,
    /// Seconds a whole login conversation may take, from `begin` to its end.
    pub login_timeout: u64,
}

impl DaemonConfig {
    /// The connections kept for root and PAM callers: ordinary uids together
    /// may hold at most `max_connections` minus these.
    pub fn reserved(&self) -> usize {
        self.reserved_connections
            .unwrap_or(self.max_connections / 4)
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(kauth_proto::DEFAULT_SOCKET),
            state_dir: PathBuf::from("/var/lib/kauthd"),
            max_connections: 1024,
            idle_timeout: 120,
            secret_key_file: PathBuf::from(DEFAULT_SECRET_KEY_FILE),
            max_connections_per_uid: 8,
            reserved_connections: None,
            login_timeout: 300,
        }
    }
}

/// A uid or a user or group name from `[access] pam_callers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CallerSpec {
    Uid(u32),
    Name(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub pam_callers: Vec<CallerSpec>,
    pub daemon_user: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            pam_callers: Vec::new(),
            daemon_user: "root".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    /// Shown in authenticator apps; the hostname when unset.
    pub issuer: Option<String>,
    #[serde(deserialize_with = "totp_algorithm")]
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
    pub skew_steps: u32,
    pub learn_skew: bool,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            issuer: None,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            skew_steps: 1,
            learn_skew: true,
        }
    }
}

impl TotpConfig {
    /// The parameters new enrollments get (validated at load time).
    pub fn params(&self) -> TotpParams {
        TotpParams {
            algorithm: self.algorithm,
            digits: self.digits,
            period: self.period,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    pub codes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig { codes: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    pub min_length: usize,
    pub reject_common: bool,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Seconds a password reset token stays valid.
    pub reset_token_seconds: u64,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            min_length: 12,
            reject_common: true,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            reset_token_seconds: 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub max_failures: u32,
    pub window_seconds: u64,
    pub lock_seconds: u64,
    /// A remote IPv4 address's failures count against this network.
    pub ipv4_prefix: u8,
    /// A remote IPv6 address's failures count against this network.
    pub ipv6_prefix: u8,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_failures: 5,
            window_seconds: 300,
            lock_seconds: 900,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "policy_require")]
    pub require: Require,
    pub require_users: Vec<String>,
    pub require_groups: Vec<String>,
    /// `YYYY-MM-DD`: from this day, unenrolled users who must have 2FA are denied.
    #[serde(deserialize_with = "policy_deadline")]
    pub deadline: Option<Date>,
    pub exempt_services: Vec<String>,
    /// A required user without 2FA, whose first factor was checked, sets
    /// it up inside the login conversation instead of being refused.
    pub enroll_at_login: bool,
    /// Services whose PAM application shows prompts but no texts (a
    /// panel's login form): no enrollment at login there, since the QR
    /// code and the recovery codes could not be shown.
    pub prompt_only_services: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enabled: true,
            require: Require::All,
            require_users: Vec::new(),
            require_groups: Vec::new(),
            deadline: None,
            exempt_services: Vec::new(),
            enroll_at_login: true,
            prompt_only_services: Vec::new(),
        }
    }
}

/// `[policy] require`: who must use two-factor authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Every user.
    All,
    /// Nobody (unless a per-user override says so).
    None,
    /// The users in `require_users` and the members of `require_groups`.
    Listed,
}

impl Require {
    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Require::All => "all",
            Require::None => "none",
            Require::Listed => "listed",
        }
    }
}

// The typed fields' own errors say what is allowed; `deserialize` adds
// the key they belong to.

/// `totp.algorithm`, case-insensitive as `Algorithm` parses it.
fn totp_algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
    Algorithm::deserialize(d)
        .map_err(|_| D::Error::custom("must be \"SHA1\", \"SHA256\" or \"SHA512\""))
}

/// `policy.require`.
fn policy_require<'de, D: Deserializer<'de>>(d: D) -> Result<Require, D::Error> {
    Require::deserialize(d).map_err(|_| D::Error::custom("must be \"all\", \"none\" or \"listed\""))
}

/// `policy.deadline`.
fn policy_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
    Date::deserialize(d)
        .map(Some)
        .map_err(|_| D::Error::custom("must be a date written YYYY-MM-DD"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub kill_services: Vec<String>,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            kill_services: vec!["sshd".to_owned()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    pub retention_days: u32,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig { retention_days: 90 }
    }
}

/// A config file that cannot be used, with the key and the reason.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a config file. A missing file at the default path
    /// means "all defaults"; a missing file named explicitly is an error, and
    /// so is a file with no setting in it.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(e) => return Err(err(format!("cannot read the file: {e}"))),
        };
        Config::parse(&text).map_err(|e| err(e.to_string()))
    }

    /// Parses config text; the error names the key and what is wrong with it.
    /// Text with no setting at all (empty, blank or only comments) is
    /// refused: it is far more likely a truncated or wiped file than a wish
    /// to reset every key to its default.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let config = deserialize(text)?;
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::invalid(describe_toml_error(&e)))?;
        if table.is_empty() {
            return Err(Error::invalid(EMPTY_CONFIG));
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |key: &str, why: &str| Err(Error::invalid(format!("key `{key}`: {why}")));
        if self.daemon.max_connections == 0 {
            return bad("daemon.max_connections", "must be at least 1");
        }
        if self.daemon.idle_timeout == 0 {
            return bad("daemon.idle_timeout", "must be at least 1 second");
        }
        if self.daemon.max_connections_per_uid == 0 {
            return bad("daemon.max_connections_per_uid", "must be at least 1");
        }
        if self.daemon.reserved() >= self.daemon.max_connections {
            return bad(
                "daemon.reserved_connections",
                "must be less than daemon.max_connections, or ordinary users get no connection at all",
            );
        }
        if self.daemon.login_timeout == 0 {
            return bad("daemon.login_timeout", "must be at least 1 second");
        }
        if !self.daemon.socket.is_absolute() {
            return bad("daemon.socket", "must be an absolute path");
        }
        if !self.daemon.state_dir.is_absolute() {
            return bad("daemon.state_dir", "must be an absolute path");
        }
        if !self.daemon.secret_key_file.is_absolute() {
            return bad("daemon.secret_key_file", "must be an absolute path");
        }
        if self.totp.digits != 6 && self.totp.digits != 8 {
            return bad("totp.digits", "must be 6 or 8");
        }
        if self.totp.period != 30 && self.totp.period != 60 {
            return bad("totp.period", "must be 30 or 60 (seconds)");
        }
        if self.totp.skew_steps > 10 {
            return bad("totp.skew_steps", "must be between 0 and 10");
        }
        if let Some(issuer) = &self.totp.issuer {
            if issuer.trim().is_empty() || issuer.contains(':') {
                return bad("totp.issuer", "must be non-empty and contain no colon");
            }
        }
        if self.recovery.codes == 0 || self.recovery.codes > 100 {
            return bad("recovery.codes", "must be between 1 and 100");
        }
        if self.password.min_length < 8 {
            return bad("password.min_length", "must be at least 8");
        }
        // The lane count first: the memory rule below depends on it.
        if self.password.argon2_parallelism == 0 || self.password.argon2_parallelism > 16 {
            return bad("password.argon2_parallelism", "must be between 1 and 16");
        }
        if self.password.argon2_memory_kib < 8 * self.password.argon2_parallelism {
            return bad(
                "password.argon2_memory_kib",
                "must be at least 8 KiB per lane (argon2_parallelism)",
            );
        }
        if self.password.argon2_iterations == 0 {
            return bad("password.argon2_iterations", "must be at least 1");
        }
        if self.password.reset_token_seconds == 0 || self.password.reset_token_seconds > 604_800 {
            return bad(
                "password.reset_token_seconds",
                "must be between 1 and 604800 (one week)",
            );
        }
        if self.ratelimit.max_failures == 0 {
            return bad("ratelimit.max_failures", "must be at least 1");
        }
        if self.ratelimit.window_seconds == 0 {
            return bad("ratelimit.window_seconds", "must be at least 1");
        }
        if !(16..=32).contains(&self.ratelimit.ipv4_prefix) {
            return bad(
                "ratelimit.ipv4_prefix",
                "must be between 16 and 32 (32: each address counts alone)",
            );
        }
        if !(32..=128).contains(&self.ratelimit.ipv6_prefix) {
            return bad(
                "ratelimit.ipv6_prefix",
                "must be between 32 and 128 (64: one customer's network)",
            );
        }
        if self.activity.retention_days == 0 {
            return bad("activity.retention_days", "must be at least 1");
        }
        Ok(())
    }

    /// The issuer shown in authenticator apps.
    pub fn issuer(&self) -> String {
        match &self.totp.issuer {
            Some(issuer) => issuer.clone(),
            None => crate::clock::hostname(),
        }
    }
}

const EMPTY_CONFIG: &str = "the file has no settings (it is empty or holds only comments), so every key would silently fall back to its default; kauthd refuses it. Restore the file (the packaged one documents every key), or delete it to run on the defaults on purpose";

/// toml's message names the line and the reason, and usually the key;
/// the path from serde_path_to_error names the key when toml's does not
/// (e.g. a bad item on its own line of a multi-line array).
fn deserialize(text: &str) -> Result<Config, Error> {
    let document =
        toml::Deserializer::parse(text).map_err(|e| Error::invalid(describe_toml_error(&e)))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let message = describe_toml_error(e.inner());
        Error::invalid(match e.path().to_string().as_str() {
            "" | "." => message,
            path => format!("key `{path}`: {message}"),
        })
    })
}

/// toml's message already names the line, the key and the reason.
fn describe_toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_default_file_gives_the_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("kauthd.toml"), false).unwrap();
        assert_eq!(c.daemon.socket, PathBuf::from("/run/kauthd/kauthd.sock"));
        assert_eq!(
            c.daemon.secret_key_file,
            PathBuf::from("/etc/kauthd/secret.key")
        );
        assert_eq!(c.totp.digits, 6);
        assert_eq!(c.recovery.codes, 10);
        assert_eq!(c.policy.require, Require::All);
        assert_eq!(c.sessions.kill_services, vec!["sshd".to_owned()]);
    }

    #[test]
    fn file_without_settings_is_refused() {
        for text in ["", "  \n\t\n", "# nothing here\n\n# [totp]\n# digits = 8\n"] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains("no settings"), "{text:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kauthd.toml");
        std::fs::write(&path, "").unwrap();
        assert!(Config::load(&path, false).is_err());
    }

    #[test]
    fn shipped_config_is_accepted() {
        let text = include_str!("../../config/kauthd.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[totp]\ndigitz = 6\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("digitz"), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let e = Config::parse("[polcy]\nenabled = true\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("polcy"), "{e}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let e = Config::parse("[totp]\ndigits = \"six\"\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("digits") || e.contains("integer"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = Config::parse("[totp]\ndigits = 7\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("totp.digits"), "{e}");
        let e = Config::parse("[policy]\nrequire = \"some\"\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("policy.require"), "{e}");
        let e = Config::parse("[policy]\ndeadline = \"next week\"\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("policy.deadline"), "{e}");
    }

    #[test]
    fn typed_fields_are_parsed_once() {
        let c = Config::parse(
            "[totp]\nalgorithm = \"sha256\"\n[policy]\nrequire = \"listed\"\ndeadline = \"2026-12-01\"\n",
        )
        .unwrap();
        assert_eq!(c.totp.params().algorithm, Algorithm::Sha256);
        assert_eq!(c.policy.require, Require::Listed);
        assert_eq!(
            c.policy.deadline.map(|d| d.to_string()).as_deref(),
            Some("2026-12-01")
        );
        let e = Config::parse("[totp]\nalgorithm = \"MD5\"\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("totp.algorithm"), "{e}");
        let e = Config::parse("[policy]\nrequire = \"All\"\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("policy.require"), "{e}");
    }

    #[test]
    fn reset_token_lifetime_defaults_to_an_hour_and_is_checked() {
        assert_eq!(
            Config::parse("[password]\n")
                .unwrap()
                .password
                .reset_token_seconds,
            3600
        );
        let e = Config::parse("[password]\nreset_token_seconds = 0\n")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("password.reset_token_seconds"), "{e}");
    }

    #[test]
    fn pam_callers_take_uids_and_names() {
        let c = Config::parse("[access]\npam_callers = [33, \"kpanel\"]\n").unwrap();
        assert_eq!(
            c.access.pam_callers,
            vec![CallerSpec::Uid(33), CallerSpec::Name("kpanel".into())]
        );
    }
}
