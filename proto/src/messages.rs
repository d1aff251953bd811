//! Every message either side may send. Requests go client → kauthd,
//! responses kauthd → client, one frame each; a connection starts with
//! `Hello` / `Welcome`. `PROTOCOL.md` documents the same in prose.
//!
//! Messages are JSON objects tagged by `"type"` (snake_case). Unknown
//! fields are ignored so that newer clients can add optional fields;
//! an unknown `"type"` is refused.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A request from a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First frame on every connection.
    Hello { version: u32, client: String },

    /// Daemon version, uptime and account count. Anyone.
    Status,

    /// Create an account. Root only.
    UserAdd {
        name: String,
        #[serde(default)]
        password: Option<Secret>,
        #[serde(default)]
        uid: Option<u32>,
    },
    /// Delete an account and everything it owns. Root only.
    UserDel { name: String },
    /// List accounts, by name. Root only. Paged: `after` is the `next`
    /// of the previous page (absent: the first page); `limit` asks for at
    /// most that many rows (kauthd may send fewer).
    UserList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Lock an account: no login succeeds until unlocked. Root only.
    UserLock { name: String },
    /// Clear a lock (administrative or from too many failures). Root only.
    UserUnlock { name: String },

    /// Start a login conversation (PAM `auth`). Root and PAM callers.
    /// kauthd answers with `Prompt`, `Message` or `Finished`.
    Begin {
        user: String,
        service: String,
        #[serde(default)]
        rhost: Option<String>,
        #[serde(default)]
        tty: Option<String>,
        #[serde(default)]
        ruser: Option<String>,
        mode: LoginMode,
        /// The password an earlier PAM module collected (`use_first_pass`).
        #[serde(default)]
        authtok: Option<Secret>,
        /// With `otp_only`: the PAM stack runs this module only once the
        /// first factor passed (the module's `enroll_at_login` option), so
        /// a required user without 2FA may set it up in this login.
        #[serde(default)]
        enroll_at_login: bool,
        /// A panel's login over several connections (root and PAM callers):
        /// each secret `Prompt` carries a `continuation` token and parks
        /// the conversation; `Resume` goes on with it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumable: bool,
    },
    /// The user's answer to the last `Prompt`.
    Answer { text: Secret },
    /// Acknowledges a `Message`; kauthd sends the next step.
    Continue,
    /// The PAM `account` check: may this user log in to this service now?
    /// kauthd answers with `Message`s (if any) and then `Finished`.
    AccountCheck { user: String, service: String },

    /// Record a PAM session. The process that opened it is the connection's
    /// peer (SO_PEERCRED), never a value the client sends.
    SessionOpen {
        user: String,
        service: String,
        #[serde(default)]
        rhost: Option<String>,
        #[serde(default)]
        tty: Option<String>,
        /// What the session runs in, for people (a browser's user agent):
        /// cut to 200 bytes, control characters removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// End a session opened with `SessionOpen`.
    SessionClose { id: String },

    /// Two-factor state of an account. `user` is left out for the caller's
    /// own account; naming another user needs root or a PAM caller.
    TwoFactorStatus {
        #[serde(default)]
        user: Option<String>,
    },
    /// Start an enrollment: a new secret, kept pending until confirmed.
    /// Re-enrolling while 2FA is on needs `proof` (callers other than root).
    EnrollBegin {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        proof: Proof,
    },
    /// Confirm the pending enrollment with a current code from the new secret.
    EnrollConfirm {
        #[serde(default)]
        user: Option<String>,
        code: Secret,
    },
    /// Turn 2FA off. Root may name several users and needs no proof.
    /// For a user the policy requires, kauthd refuses with
    /// `confirmation_needed` (saying what the next login will do) unless
    /// `force` is set.
    TwoFactorDisable {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        proof: Proof,
        #[serde(default)]
        force: bool,
    },
    /// How many recovery codes are left, or (with `regenerate`) a new set.
    RecoveryCodes {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        regenerate: bool,
        #[serde(default)]
        proof: Proof,
    },
    /// Everyone with 2FA on, by name. Root only. Paged like `UserList`.
    TwoFactorList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Migrate a known TOTP secret; 2FA is on at once. Root only.
    TwoFactorImport {
        user: String,
        secret: Secret,
        #[serde(default)]
        algorithm: Option<String>,
        #[serde(default)]
        digits: Option<u32>,
        #[serde(default)]
        period: Option<u64>,
    },
    /// Migrate a `~/.google_authenticator` file (its text). Root only.
    ImportGoogleAuthenticator { user: String, contents: Secret },

    /// The effective policy; with `user`, what it means for that user on
    /// each configured service and which rule decided. Root only.
    PolicyShow {
        #[serde(default)]
        user: Option<String>,
    },
    /// Set a per-user override: `"require"`, `"exempt"`, or `null` to go
    /// back to the server-wide rule. Root only.
    PolicySet {
        user: String,
        #[serde(default)]
        rule: Option<String>,
    },

    /// List sessions: the caller's own, or (root) `user`'s or everyone's.
    /// Paged like `UserList`.
    Sessions {
        #[serde(default)]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Sign out one session by id (or a unique prefix of at least 8 hex
    /// digits), or all of a user's (`all`, with `user` for root; the
    /// caller's own otherwise). With `dry_run`, nothing is ended: the
    /// answer lists what would be.
    SignOut {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        all: bool,
        #[serde(default)]
        dry_run: bool,
    },
    /// Is this session (a panel's `KAUTH_SESSION_ID`) still valid?
    /// Root and PAM callers.
    SessionCheck { id: String },

    /// Recent activity, newest first: the caller's own, or (root) `user`'s
    /// or everyone's. `since` is a Unix time. Paged like `UserList`;
    /// `limit` is the most events of this page (default 200).
    Activity {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        since: Option<i64>,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },

    /// Change a password. Users give the current one; root and PAM callers
    /// may set one for any `user` without it. `sign_out_others` ends the
    /// user's other sessions.
    PasswordChange {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        current: Option<Secret>,
        new: Secret,
        #[serde(default)]
        sign_out_others: bool,
    },
    /// A single-use password reset token valid one hour. Root and PAM callers.
    ResetTokenCreate { user: String },
    /// Set a new password with a reset token (anyone holding the token).
    PasswordReset {
        user: String,
        token: Secret,
        new: Secret,
    },

    /// Figures for `kauthctl doctor`. Root only.
    Diagnostics,

    /// Repair a replay guard left in the future by a server clock that ran
    /// ahead: it goes back to the end of the user's current window. Root only.
    TwoFactorResetGuard { user: String },
    /// Replace the key that encrypts TOTP secrets: kauthd makes a new key
    /// file and re-encrypts every secret with it. Root only.
    Rekey,

    /// Account and host locks in force, by kind and name. Root only.
    /// Paged like `UserList`.
    Locks {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Lift the lock on one remote host (and forget its failures). Root only.
    LockClear { host: String },
    /// Goes on with a parked resumable login: `text` answers the prompt
    /// that carried `continuation`. Only the uid that parked it may.
    Resume { continuation: Secret, text: Secret },
    /// kauthd's counters since it started and over the last minute, and
    /// what is in use now. Root only.
    Stats,
}

/// What a user gives to make a sensitive change: the password (if the
/// account has one) and a current code or a recovery code (if 2FA is on).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proof {
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub code: Option<Secret>,
}

/// Which factors a login conversation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    /// kauthd checks the password, then the code.
    Password,
    /// An earlier module (or an SSH key) checked the first factor: only the code.
    OtpOnly,
    /// PAM `password`: kauthd asks for the current password, then the new one twice.
    ChangePassword,
}

/// A response from kauthd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `Hello`.
    Welcome {
        version: u32,
        server: String,
    },
    /// The request was carried out; nothing more to say.
    Done,
    /// The request was refused or failed. `message` is for people.
    Error {
        code: ErrorCode,
        message: String,
    },

    Status {
        version: String,
        uptime_seconds: u64,
        accounts: u64,
    },
    Users {
        users: Vec<UserSummary>,
        /// Where the next page starts: send it back as `after`. Absent on
        /// the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },

    /// Ask the user something; the client answers with `Answer`.
    Prompt {
        echo: bool,
        message: String,
        /// In a resumable conversation, a secret prompt parks it: send the
        /// answer with `Resume` and this token, on any connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continuation: Option<Secret>,
    },
    /// Show the user a text; the client answers with `Continue`.
    Message {
        style: MessageStyle,
        text: String,
    },
    /// The conversation (or account check) is over.
    Finished {
        outcome: Outcome,
    },
    /// Answer to `SessionOpen`: the id to export as `KAUTH_SESSION_ID`.
    SessionOpened {
        id: String,
    },

    TwoFactorStatus(TwoFactorState),
    /// Answer to `EnrollBegin`: what the authenticator app needs.
    EnrollBegun {
        user: String,
        /// Base32, no padding.
        secret: Secret,
        /// The same in groups of four, for typing by hand.
        setup_key: Secret,
        /// `otpauth://totp/...` for the QR code.
        uri: Secret,
        issuer: String,
        algorithm: String,
        digits: u32,
        period: u64,
        /// Unix time after which the pending enrollment is dropped.
        expires: i64,
        /// The secret of the enrollment already pending (begun earlier and
        /// not confirmed): an app entry made from it stays valid.
        #[serde(default)]
        resumed: bool,
        /// An earlier enrollment (expired, or with other settings) was
        /// replaced by this one: an app entry made from it no longer works.
        #[serde(default)]
        replaced: bool,
    },
    /// A fresh set of recovery codes, shown once (after `EnrollConfirm` or
    /// a regeneration).
    NewRecoveryCodes {
        user: String,
        codes: Vec<Secret>,
    },
    RecoveryCodesLeft {
        user: String,
        left: u64,
    },
    TwoFactorUsers {
        users: Vec<TwoFactorEntry>,
        /// Where the next page starts: send it back as `after`. Absent on
        /// the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `ImportGoogleAuthenticator`.
    Imported {
        user: String,
        recovery_codes: u64,
        /// Options of the file that kauthd does not carry over, and why.
        notes: Vec<String>,
    },

    Policy(PolicyReport),
    SessionList {
        sessions: Vec<SessionInfo>,
        /// Where the next page starts: send it back as `after`. Absent on
        /// the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `SignOut`: the ids that were ended or revoked (with
    /// `dry_run`: that would be). `current` is the caller's own session
    /// (the one its process runs in) when it is among them.
    SignedOut {
        ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<String>,
    },
    SessionValidity {
        id: String,
        valid: bool,
        #[serde(default)]
        user: Option<String>,
    },
    ActivityList {
        events: Vec<ActivityEvent>,
        /// Where the next page starts: send it back as `after`. Absent on
        /// the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `ResetTokenCreate`.
    ResetToken {
        user: String,
        token: Secret,
        expires: i64,
    },
    Diagnostics(DiagnosticsReport),
    /// Answer to `TwoFactorResetGuard`: how far ahead of the clock the
    /// guard was, in seconds (0: it was not ahead, nothing changed).
    GuardReset {
        user: String,
        ahead_seconds: u64,
    },
    /// Answer to `Rekey`: the new key's id (8 hex digits) and how many
    /// secrets it now encrypts.
    Rekeyed {
        key_id: String,
        secrets: u64,
    },
    /// Answer to `UserUnlock`: whether the account had a lock (root's or
    /// one from failures), and the remote hosts whose locks were lifted
    /// because the user failed from them.
    Unlocked {
        user: String,
        account: bool,
        hosts: Vec<String>,
    },
    /// Answer to `Locks`.
    LockList {
        locks: Vec<LockInfo>,
        /// Where the next page starts: send it back as `after`. Absent on
        /// the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `Stats`.
    Stats(StatsReport),
}

/// One lock in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `"account"` or `"host"`.
    pub kind: String,
    /// The account name or the remote host.
    pub name: String,
    /// Unix time the lock from failures ends; absent for root's lock
    /// alone (it holds until `user unlock`).
    pub until: Option<i64>,
    /// Root locked the account (`user lock`).
    pub by_root: bool,
}

/// `[policy]` as in force, and optionally what it means for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    pub enabled: bool,
    pub require: String,
    pub require_users: Vec<String>,
    pub require_groups: Vec<String>,
    pub deadline: Option<String>,
    pub exempt_services: Vec<String>,
    /// Per-user overrides: (name, "require" | "exempt").
    pub overrides: Vec<(String, String)>,
    pub user: Option<UserPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPolicy {
    pub name: String,
    pub enrolled: bool,
    /// Whether the policy requires 2FA of this user, and the rule that says so.
    pub required: bool,
    pub rule: String,
    pub services: Vec<ServiceDecision>,
    /// When the requirement is enforced: the `[policy] deadline`
    /// (YYYY-MM-DD) if there is one; absent: now (no deadline), or not
    /// required.
    #[serde(default)]
    pub required_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDecision {
    pub service: String,
    /// `"ask_code"`, `"skip"` or `"deny"`.
    pub decision: String,
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    pub pid: i32,
    pub started: i64,
    /// `"open"`, `"closed"` or `"revoked"`.
    pub state: String,
    pub ended: Option<i64>,
    /// What the session runs in (a browser's user agent), as opened.
    #[serde(default)]
    pub client: Option<String>,
    /// When the panel last checked the session (`session_check`), Unix
    /// seconds, to about ten seconds; `null` until then.
    #[serde(default)]
    pub last_active: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEvent {
    pub at: i64,
    pub user: Option<String>,
    /// e.g. `login_success`, `login_failure`, `enroll`, `disable`,
    /// `recovery_code_used`, `recovery_codes_regenerated`,
    /// `password_changed`, `sign_out`, `admin`, `guard_reset`, `clock_offset`.
    pub event: String,
    pub service: Option<String>,
    pub rhost: Option<String>,
    /// Free text for people; never a secret.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticsReport {
    pub version: String,
    pub socket: String,
    pub state_dir: String,
    pub config_path: String,
    /// Users whose last accepted code is from the last day.
    pub recent_code_users: u64,
    /// Of those, how many matched off-centre.
    pub off_centre_users: u64,
    /// Median offset of those codes in time steps (positive: phones ahead).
    pub median_offset_steps: i64,
    pub period: u64,
    /// Users whose replay guard (last accepted code) is beyond the end of
    /// their window: every real code is refused until the clock catches up.
    #[serde(default)]
    pub guard_ahead_users: u64,
    /// A few of them (at most ten), furthest ahead first.
    #[serde(default)]
    pub guard_ahead_names: Vec<String>,
    /// How far ahead the furthest one is, in seconds.
    #[serde(default)]
    pub guard_ahead_max_seconds: u64,
    /// kauthd's verdict on its own clock: set when most users' recent
    /// codes matched off-centre the same way, to how many seconds the
    /// server clock looks fast (negative: slow). Absent: no sign of drift.
    #[serde(default)]
    pub server_clock_fast_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorState {
    pub user: String,
    pub enabled: bool,
    /// `"totp"` when enabled.
    pub method: Option<String>,
    pub algorithm: Option<String>,
    pub digits: Option<u32>,
    pub period: Option<u64>,
    pub enrolled_at: Option<i64>,
    pub last_used: Option<i64>,
    pub recovery_codes_left: u64,
    /// An enrollment was begun and not yet confirmed.
    pub pending: bool,
    /// The account has a kauthd password (asked as proof for changes).
    #[serde(default)]
    pub has_password: bool,
    /// What the policy asks of this user: required or not, from when, and
    /// the decision on each service.
    #[serde(default)]
    pub policy: Option<UserPolicy>,
    /// How far the authenticator's clock is off, in seconds (positive:
    /// ahead), as kauthd learned it from consecutive codes; absent when
    /// none was learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorEntry {
    pub name: String,
    pub enrolled_at: i64,
    pub last_used: Option<i64>,
    pub recovery_codes_left: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStyle {
    Info,
    Error,
}

/// How a login conversation or account check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Wrong credentials, unknown user, or not allowed: never says which.
    Denied,
    /// Too many failures or an administrative lock.
    Locked,
}

/// Why a request failed, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnsupportedVersion,
    BadRequest,
    TooLarge,
    /// The caller's uid may not make this request.
    Forbidden,
    NotFound,
    AlreadyExists,
    /// A value in the request is not acceptable (bad name, weak password…).
    Invalid,
    /// Proof (password, code) was wrong or missing.
    Refused,
    Busy,
    Internal,
    /// The change needs confirming (`force`): the message says why.
    ConfirmationNeeded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub uid: Option<u32>,
    pub has_password: bool,
    pub locked: bool,
    pub two_factor: bool,
    /// Unix time the account was created.
    pub created: i64,
}

/// kauthd's health at a glance (answer to `Stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub uptime_seconds: u64,
    /// Counted since kauthd started.
    pub since_start: StatsPeriod,
    /// Counted over the last 60 seconds.
    pub last_minute: StatsPeriod,
    /// Locks in force now.
    pub locks: LocksInForce,
    /// Connections in use now, by the class of the caller.
    pub connections: ConnectionsInUse,
    /// argon2 runs waiting for their turn now.
    pub argon2_queue: u64,
}

/// What happened over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsPeriod {
    /// Logins (conversations that ended; password changes are not
    /// logins) by outcome, all services together.
    pub logins: LoginCounts,
    /// The same by PAM service, by name.
    pub services: Vec<ServiceLogins>,
    pub codes_refused: CodesRefused,
    /// Logins that used a recovery code.
    pub recovery_codes_used: u64,
    /// Time kauthd spent on a login (its requests, argon2 queue
    /// included; not the person's typing), in milliseconds; absent when
    /// no login ended in the period.
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginCounts {
    pub success: u64,
    pub denied: u64,
    pub locked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLogins {
    pub service: String,
    #[serde(flatten)]
    pub logins: LoginCounts,
}

/// Why codes given at a login were refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodesRefused {
    /// Not a right code (a code for another time included).
    pub wrong: u64,
    /// Right, but used before.
    pub replayed: u64,
    /// Not checked: the account or the remote host was locked.
    pub locked: u64,
}

/// Quantiles of login latency (the upper bound of the histogram bucket
/// they fall in; buckets grow by a fourth of a doubling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocksInForce {
    /// Accounts locked by failures or by root.
    pub accounts: u64,
    /// Remote hosts (networks) locked by failures.
    pub hosts: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsInUse {
    pub root: u64,
    /// Callers in `[access] pam_callers`.
    pub pam_callers: u64,
    /// Ordinary local users.
    pub users: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_type() {
        let json = serde_json::to_string(&Request::UserDel { name: "ann".into() }).unwrap();
        assert_eq!(json, r#"{"type":"user_del","name":"ann"}"#);
    }

    #[test]
    fn unknown_type_is_refused() {
        let r: Result<Request, _> = serde_json::from_str(r#"{"type":"format_disk"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn list_requests_without_paging_fields_are_the_same_on_the_wire() {
        let old: Request = serde_json::from_str(r#"{"type":"user_list"}"#).unwrap();
        assert!(matches!(
            old,
            Request::UserList {
                after: None,
                limit: None
            }
        ));
        let first = Request::TwoFactorList {
            after: None,
            limit: None,
        };
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            r#"{"type":"two_factor_list"}"#
        );
        let last = Response::Users {
            users: Vec::new(),
            next: None,
        };
        assert_eq!(
            serde_json::to_string(&last).unwrap(),
            r#"{"type":"users","users":[]}"#
        );
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let r: Request = serde_json::from_str(r#"{"type":"user_add","name":"ann"}"#).unwrap();
        assert!(matches!(
            r,
            Request::UserAdd {
                password: None,
                uid: None,
                ..
            }
        ));
    }
}
