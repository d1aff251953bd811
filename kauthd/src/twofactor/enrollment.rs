//! Turning two-factor authentication on and off: begin → confirm with a
//! current code → recovery codes shown once; re-enrollment keeps the old
//! secret working until the new one is confirmed; imports from a known
//! secret or a `~/.google_authenticator` file.

use kauth_proto::Secret;
use zeroize::Zeroizing;

use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::store::{Account, NewTotp, StoreError};
use crate::twofactor::code_check::{self, Attempt, Origin};
use crate::twofactor::google_auth;
use crate::twofactor::recovery;
use crate::twofactor::totp::{self, TotpParams};

/// How long an unconfirmed enrollment stays valid.
pub const PENDING_SECONDS: i64 = 600;

/// kauthd's answer to a wrong confirming code while the enrollment still
/// waits (kauthctl offers another try on it).
pub const WRONG_CODE_ANSWER: &str =
    "that code does not match the new secret; check the server and phone clocks and try the current code";

/// Wrong codes a pending enrollment survives: the last one drops it, so
/// guessing has a handful of tries per secret, not the whole window.
pub const MAX_WRONG_CONFIRM_CODES: u32 = 5;

#[derive(Debug)]
pub enum EnrollError {
    /// Nothing to confirm (never begun, or expired).
    NoPending,
    /// The code does not match the new secret.
    WrongCode,
    /// The code does not match, and it was the last wrong code allowed:
    /// the pending enrollment is gone.
    PendingDropped,
    /// Too many failed attempts: nothing was checked.
    Locked {
        until: i64,
    },
    Invalid(String),
    Store(StoreError),
    Internal(String),
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        EnrollError::Store(e)
    }
}

/// What the user's authenticator app needs.
#[derive(Debug)]
pub struct Begun {
    pub secret: Zeroizing<Vec<u8>>,
    pub params: TotpParams,
    pub issuer: String,
    pub expires: i64,
    /// The secret of an enrollment already pending: an app entry made from
    /// it stays valid.
    pub resumed: bool,
    /// An earlier enrollment (expired, or made with other settings) was
    /// replaced: an app entry made from it no longer works.
    pub replaced: bool,
}

impl Begun {
    pub fn uri(&self, account: &str) -> String {
        totp::otpauth_uri(&self.issuer, account, &self.secret, &self.params)
    }
}

/// Starts an enrollment with a fresh secret, or resumes the one pending:
/// an entry the user already made in their app from it stays valid, and
/// its time window starts again (its count of wrong codes does not).
pub fn begin(daemon: &Daemon, account: &Account) -> Result<Begun, EnrollError> {
    let config = daemon.config();
    let params = config.totp.params();
    let now = clock::now();
    let pending = daemon.store().pending_totp(account.id)?;
    let had_pending = pending.is_some();
    let resumable = pending.filter(|p| now <= p.created + PENDING_SECONDS && p.params == params);
    let (secret, resumed) = match resumable {
        Some(pending) => {
            daemon.store().renew_pending_totp(account.id, now)?;
            (pending.secret, true)
        }
        None => {
            let secret =
                totp::generate_secret().map_err(|e| EnrollError::Internal(e.to_string()))?;
            daemon
                .store()
                .set_pending_totp(account.id, &secret, &params, now)?;
            (secret, false)
        }
    };
    let how = if resumed { "resumed" } else { "begun" };
    log::info!("enrollment {how} for {}", account.name);
    Ok(Begun {
        secret,
        params,
        issuer: config.issuer(),
        expires: now + PENDING_SECONDS,
        resumed,
        replaced: had_pending && !resumed,
    })
}

/// Confirms the pending enrollment with a code from the new secret; 2FA is
/// on and the new recovery codes are returned (to be shown once).
pub fn confirm(
    daemon: &Daemon,
    account: &Account,
    origin: Origin<'_>,
    code: &Secret,
) -> Result<Vec<Secret>, EnrollError> {
    let config = daemon.config();
    let now = clock::now();
    let Some(pending) = daemon.store().pending_totp(account.id)? else {
        return Err(EnrollError::NoPending);
    };
    if now > pending.created + PENDING_SECONDS {
        daemon.store().clear_pending_totp(account.id)?;
        return Err(EnrollError::NoPending);
    }
    let digits_only: String = code
        .expose()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let outcome = code_check::attempt(daemon, &account.name, origin, |_| {
        Ok(totp::find_match(
            &pending.secret,
            &pending.params,
            &digits_only,
            u64::try_from(now).unwrap_or(0),
            config.totp.skew_steps,
            0,
        ))
    })?;
    let m = match outcome {
        Attempt::Right(m) => m,
        Attempt::Locked { until } => return Err(EnrollError::Locked { until }),
        Attempt::Wrong => return Err(wrong_confirm_code(daemon, account)?),
    };
    let codes = recovery::generate(config.recovery.codes)
        .map_err(|e| EnrollError::Internal(e.to_string()))?;
    let (salt, hashes) =
        code_check::hash_codes(&account.name, &codes).map_err(EnrollError::Internal)?;
    // The confirming code counts as used: it cannot log in afterwards.
    daemon.store().enable_totp(
        account.id,
        &NewTotp {
            secret: &pending.secret,
            params: &pending.params,
            now,
            first_counter: Some(m.counter),
            skew_steps: None,
            codes: Some((&salt, &hashes)),
        },
    )?;
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::Enroll,
        "two-factor authentication turned on (TOTP)",
    );
    Ok(codes)
}

/// Counts a wrong confirming code; the last one allowed drops the pending
/// enrollment.
fn wrong_confirm_code(daemon: &Daemon, account: &Account) -> Result<EnrollError, StoreError> {
    let mut store = daemon.store();
    if store.count_wrong_pending_code(account.id)? < MAX_WRONG_CONFIRM_CODES {
        return Ok(EnrollError::WrongCode);
    }
    store.clear_pending_totp(account.id)?;
    drop(store);
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::EnrollCancelled,
        &format!("pending enrollment dropped after {MAX_WRONG_CONFIRM_CODES} wrong codes"),
    );
    Ok(EnrollError::PendingDropped)
}

/// A new set of recovery codes; the old set stops working.
pub fn regenerate_codes(daemon: &Daemon, account: &Account) -> Result<Vec<Secret>, EnrollError> {
    let config = daemon.config();
    let codes = recovery::generate(config.recovery.codes)
        .map_err(|e| EnrollError::Internal(e.to_string()))?;
    let (salt, hashes) =
        code_check::hash_codes(&account.name, &codes).map_err(EnrollError::Internal)?;
    daemon
        .store()
        .replace_recovery_codes(account.id, &salt, &hashes)?;
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::RecoveryCodesRegenerated,
        "a new set of recovery codes; the old set no longer works",
    );
    Ok(codes)
}

/// Turns 2FA off; `by` (a user name) did it. False if it was not on.
pub fn disable(daemon: &Daemon, account: &Account, by: &str) -> Result<bool, EnrollError> {
    let was_on = daemon.store().disable_totp(account.id)?;
    if was_on {
        activity::event(
            daemon,
            Some(&account.name),
            EventKind::Disable,
            &format!("two-factor authentication turned off by {by}"),
        );
    }
    Ok(was_on)
}

/// Turns 2FA on with a secret from elsewhere (migration).
pub fn import_secret(
    daemon: &Daemon,
    account: &Account,
    secret_base32: &Secret,
    params: TotpParams,
) -> Result<(), EnrollError> {
    params
        .validate()
        .map_err(|e| EnrollError::Invalid(e.to_string()))?;
    let secret = totp::decode_secret(secret_base32.expose())
        .map_err(|e| EnrollError::Invalid(e.to_string()))?;
    daemon.store().enable_totp(
        account.id,
        &NewTotp {
            secret: &secret,
            params: &params,
            now: clock::now(),
            first_counter: None,
            skew_steps: None,
            codes: Some((&[0u8; 16], &[])),
        },
    )?;
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::Enroll,
        "a TOTP secret was imported by root",
    );
    Ok(())
}

/// What an import carried over.
#[derive(Debug)]
pub struct Imported {
    pub recovery_codes: u64,
    pub notes: Vec<String>,
}

/// Migrates a `~/.google_authenticator` file: secret, step size, window,
/// and its scratch codes as recovery codes.
pub fn import_google_authenticator(
    daemon: &Daemon,
    account: &Account,
    contents: &Secret,
) -> Result<Imported, EnrollError> {
    let file =
        google_auth::parse(contents.expose()).map_err(|e| EnrollError::Invalid(e.to_string()))?;
    let params = TotpParams {
        period: file.step_size,
        ..TotpParams::default()
    };
    params
        .validate()
        .map_err(|e| EnrollError::Invalid(e.to_string()))?;
    let (salt, hashes) =
        code_check::hash_codes(&account.name, &file.scratch_codes).map_err(EnrollError::Invalid)?;
    let skew = file.skew_steps();
    daemon.store().enable_totp(
        account.id,
        &NewTotp {
            secret: &file.secret,
            params: &params,
            now: clock::now(),
            first_counter: None,
            skew_steps: Some(skew),
            codes: Some((&salt, &hashes)),
        },
    )?;
    let mut notes = vec![format!(
        "WINDOW_SIZE {} kept as a window of ±{skew} time steps for this user",
        file.window_size
    )];
    if !file.disallow_reuse {
        notes.push(
            "DISALLOW_REUSE was off; kauthd always refuses a code that was already used".to_owned(),
        );
    }
    if let Some((attempts, seconds)) = file.rate_limit {
        notes.push(format!(
            "RATE_LIMIT {attempts} {seconds} is replaced by kauthd's [ratelimit] settings"
        ));
    }
    for option in &file.ignored_options {
        notes.push(format!("option {option} is not carried over"));
    }
    activity::event(
        daemon,
        Some(&account.name),
        EventKind::Enroll,
        &format!(
            "a google-authenticator file was imported by root ({} scratch codes)",
            hashes.len()
        ),
    );
    Ok(Imported {
        recovery_codes: hashes.len() as u64,
        notes,
    })
}
