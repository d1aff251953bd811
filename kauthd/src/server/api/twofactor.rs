//! Two-factor self-service and administration: status, enroll, confirm,
//! disable, recovery codes, list, imports, resetting a replay guard.

use kauth_proto::{ErrorCode, Proof, Response, Secret, TwoFactorEntry, TwoFactorState};

use super::{error, paging, policy, root_only, too_many_failures, Reply};
use crate::activity;
use crate::activity::EventKind;
use crate::clock;
use crate::daemon::Daemon;
use crate::passwords::hashing;
use crate::server::access::{target, Caller};
use crate::store::{Account, StoreError};
use crate::twofactor::code_check::{self, Attempt, CodeOutcome, Origin};
use crate::twofactor::enrollment::{self, EnrollError};
use crate::twofactor::replay_guard;
use crate::twofactor::totp::{self, TotpParams};

/// Proof for a sensitive change by someone other than root: the password
/// (if set) and a current code or recovery code (if 2FA is on).
fn check_proof(
    daemon: &Daemon,
    caller: &Caller,
    account: &Account,
    proof: &Proof,
) -> Result<(), Response> {
    if caller.is_root() {
        return Ok(());
    }
    let origin = Origin::local(caller.uid);
    let refused = |what: &str| {
        error(
            ErrorCode::Refused,
            format!("{what}; give your kauthd password (if your account has one) and a current verification code or a recovery code"),
        )
    };
    if let Some(hash) = &account.password_hash {
        let given = proof.password.as_ref();
        let outcome = code_check::attempt(daemon, &account.name, origin, |turn| {
            Ok(given
                .is_some_and(|p| hashing::verify(turn, p.expose(), hash))
                .then_some(()))
        });
        match outcome? {
            Attempt::Right(()) => {}
            Attempt::Wrong => {
                return Err(refused(
                    "the kauthd password is missing or wrong (the password of your kauthd or panel account, not your system login password)",
                ))
            }
            Attempt::Locked { until } => return Err(too_many_failures(until)),
        }
    }
    let enrolled = daemon.store().has_totp(account.id)?;
    if enrolled {
        let Some(code) = &proof.code else {
            return Err(refused("a verification code is needed"));
        };
        match code_check::check(daemon, &account.name, Some(account), origin, None, code)? {
            CodeOutcome::Accepted(_) => {}
            CodeOutcome::Rejected(_) => {
                return Err(refused("the verification code is wrong or already used"))
            }
            CodeOutcome::Locked { until } => return Err(too_many_failures(until)),
        }
    }
    Ok(())
}

fn enroll_error(e: EnrollError) -> Response {
    match e {
        EnrollError::NoPending => error(
            ErrorCode::NotFound,
            "no enrollment is waiting to be confirmed (they expire after 10 minutes); start again with `kauthctl 2fa enroll`",
        ),
        EnrollError::WrongCode => error(ErrorCode::Refused, enrollment::WRONG_CODE_ANSWER),
        EnrollError::PendingDropped => error(
            ErrorCode::Refused,
            format!(
                "that code does not match the new secret either: after {} wrong codes the enrollment was cancelled; start again with `kauthctl 2fa enroll` (you will get a new secret: remove the old entry from your authenticator app)",
                enrollment::MAX_WRONG_CONFIRM_CODES
            ),
        ),
        EnrollError::Locked { until } => too_many_failures(until),
        EnrollError::Invalid(why) => error(ErrorCode::Invalid, why),
        EnrollError::Store(e) => Response::from(e),
        EnrollError::Internal(why) => {
            log::error!("enrollment failed: {why}");
            error(ErrorCode::Internal, "kauthd could not complete the enrollment; see its log")
        }
    }
}

pub fn status(daemon: &Daemon, caller: &Caller, user: Option<&str>) -> Response {
    let account = match target(daemon, caller, user, false) {
        Ok(account) => account,
        Err(Response::Error {
            code: ErrorCode::NotFound,
            ..
        }) if user.is_some() || caller.name.is_some() => {
            let name = user
                .map(str::to_owned)
                .or_else(|| caller.name.clone())
                .unwrap_or_default();
            return Response::TwoFactorStatus(TwoFactorState {
                enabled: false,
                method: None,
                algorithm: None,
                digits: None,
                period: None,
                enrolled_at: None,
                last_used: None,
                recovery_codes_left: 0,
                pending: false,
                has_password: false,
                policy: policy::user_policy(daemon, &name).ok(),
                user: name,
                clock_offset_seconds: None,
            });
        }
        Err(response) => return response,
    };
    let store = daemon.store();
    let result = (|| -> Result<TwoFactorState, StoreError> {
        let cred = store.totp(account.id)?;
        let pending = store
            .pending_totp(account.id)?
            .is_some_and(|p| clock::now() <= p.created + enrollment::PENDING_SECONDS);
        Ok(TwoFactorState {
            user: account.name.clone(),
            enabled: cred.is_some(),
            method: cred.as_ref().map(|_| "totp".to_owned()),
            algorithm: cred
                .as_ref()
                .map(|c| c.params.algorithm.as_str().to_owned()),
            digits: cred.as_ref().map(|c| c.params.digits),
            period: cred.as_ref().map(|c| c.params.period),
            enrolled_at: cred.as_ref().map(|c| c.enabled_at),
            last_used: cred.as_ref().and_then(|c| c.last_used),
            recovery_codes_left: store.recovery_codes_left(account.id)?,
            pending,
            has_password: account.password_hash.is_some(),
            policy: None,
            clock_offset_seconds: cred.as_ref().and_then(|c| {
                let period = i64::try_from(c.params.period).ok()?;
                (c.learned_offset != 0).then(|| c.learned_offset.saturating_mul(period))
            }),
        })
    })();
    drop(store);
    match result {
        Ok(mut state) => {
            state.policy = policy::user_policy(daemon, &account.name).ok();
            Response::TwoFactorStatus(state)
        }
        Err(e) => Response::from(e),
    }
}

pub fn enroll_begin(daemon: &Daemon, caller: &Caller, user: Option<&str>, proof: &Proof) -> Reply {
    let account = target(daemon, caller, user, true)?;
    let enrolled = daemon.store().has_totp(account.id)?;
    // Replacing a working second factor, or starting with a password set,
    // needs proof from anyone but root.
    if enrolled || account.password_hash.is_some() {
        check_proof(daemon, caller, &account, proof)?;
    }
    let begun = enrollment::begin(daemon, &account).map_err(enroll_error)?;
    Ok(Response::EnrollBegun {
        user: account.name.clone(),
        secret: Secret::new(totp::encode_secret(&begun.secret)),
        setup_key: Secret::new(totp::setup_key(&begun.secret)),
        uri: Secret::new(begun.uri(&account.name)),
        issuer: begun.issuer.clone(),
        algorithm: begun.params.algorithm.as_str().to_owned(),
        digits: begun.params.digits,
        period: begun.params.period,
        expires: begun.expires,
        resumed: begun.resumed,
        replaced: begun.replaced,
    })
}

pub fn enroll_confirm(
    daemon: &Daemon,
    caller: &Caller,
    user: Option<&str>,
    code: &Secret,
) -> Reply {
    let account = target(daemon, caller, user, false)?;
    let origin = Origin::local(caller.uid);
    let codes = enrollment::confirm(daemon, &account, origin, code).map_err(enroll_error)?;
    Ok(Response::NewRecoveryCodes {
        user: account.name,
        codes,
    })
}

pub fn disable(
    daemon: &Daemon,
    caller: &Caller,
    users: &[String],
    proof: &Proof,
    force: bool,
) -> Reply {
    if users.len() > 1 && !caller.is_root() {
        return Err(root_only(
            caller,
            "disable two-factor authentication for several users at once",
        ));
    }
    let names: Vec<Option<&str>> = if users.is_empty() {
        vec![None]
    } else {
        users.iter().map(|u| Some(u.as_str())).collect()
    };
    let mut accounts = Vec::new();
    for name in names {
        accounts.push(target(daemon, caller, name, false)?);
    }
    if !force {
        refuse_disabling_required(daemon, caller, &accounts)?;
    }
    if !caller.is_root() {
        for account in &accounts {
            check_proof(daemon, caller, account, proof)?;
        }
    }
    let mut not_on = Vec::new();
    for account in &accounts {
        if enrollment::disable(daemon, account, &caller.by_whom()).map_err(enroll_error)? {
            log::info!(
                "two-factor authentication of {} turned off by {}",
                account.name,
                caller.describe()
            );
        } else {
            not_on.push(account.name.clone());
        }
    }
    if not_on.len() == accounts.len() {
        return Err(error(
            ErrorCode::NotFound,
            format!(
                "two-factor authentication was not on for {}",
                not_on.join(", ")
            ),
        ));
    }
    Ok(Response::Done)
}

/// Refuses (until confirmed with `force`) to turn off two-factor
/// authentication that the policy requires of a user: the message says
/// what the user's next login will do without it.
fn refuse_disabling_required(
    daemon: &Daemon,
    caller: &Caller,
    accounts: &[Account],
) -> Result<(), Response> {
    let mut required = Vec::new();
    for account in accounts {
        if !daemon.store().has_totp(account.id)? {
            continue;
        }
        let user = policy::user_policy(daemon, &account.name)?;
        if user.required && daemon.config().policy.enabled {
            required.push((account.name.clone(), user.rule));
        }
    }
    let Some((first, rule)) = required.first() else {
        return Ok(());
    };
    let config = daemon.config();
    let yourself = required.len() == 1 && caller.name.as_deref() == Some(first.as_str());
    let names: Vec<&str> = required.iter().map(|(name, _)| name.as_str()).collect();
    let names = names.join(", ");
    let mut then = match (yourself, config.policy.enroll_at_login) {
        (true, true) => "you will be asked to set up a new code at your next login".to_owned(),
        (true, false) => "your next login will be refused".to_owned(),
        (false, true) => format!("{names} will be asked to set up a new code at the next login"),
        (false, false) => format!("the next login of {names} will be refused"),
    };
    if let Some(day) = config.policy.deadline.map(clock::Date::start) {
        if clock::now() < day {
            then = format!(
                "logins go on without a code until {}; from then {then}",
                clock::format_date(day)
            );
        }
    }
    let whom = if yourself { "you".to_owned() } else { names };
    Err(error(
        ErrorCode::ConfirmationNeeded,
        format!(
            "the policy requires two-factor authentication of {whom} ({rule}): with it off, {then}, and the entry in the authenticator app stops working. To turn it off anyway, confirm when kauthctl asks, or add --force"
        ),
    ))
}

pub fn recovery_codes(
    daemon: &Daemon,
    caller: &Caller,
    user: Option<&str>,
    regenerate: bool,
    proof: &Proof,
) -> Reply {
    let account = target(daemon, caller, user, false)?;
    if !daemon.store().has_totp(account.id)? {
        return Err(error(
            ErrorCode::NotFound,
            format!(
                "two-factor authentication is not on for {}; enroll first",
                account.name
            ),
        ));
    }
    if !regenerate {
        let left = daemon.store().recovery_codes_left(account.id)?;
        return Ok(Response::RecoveryCodesLeft {
            user: account.name,
            left,
        });
    }
    check_proof(daemon, caller, &account, proof)?;
    let codes = enrollment::regenerate_codes(daemon, &account).map_err(enroll_error)?;
    Ok(Response::NewRecoveryCodes {
        user: account.name,
        codes,
    })
}

/// One page of the users with 2FA on, by name, after `after`.
pub fn list(daemon: &Daemon, caller: &Caller, after: Option<&str>, limit: Option<u32>) -> Response {
    if !caller.is_root() {
        return root_only(caller, "list who has two-factor authentication");
    }
    let size = paging::page_size(limit, paging::MAX_ROWS);
    let rows = daemon.store().two_factor_rows(after, size + 1);
    match rows {
        Ok(rows) => {
            let entries = rows
                .into_iter()
                .map(|r| TwoFactorEntry {
                    name: r.name,
                    enrolled_at: r.enabled_at,
                    last_used: r.last_used,
                    recovery_codes_left: r.codes_left,
                })
                .collect();
            let (users, next) = paging::fit(entries, size, |u| u.name.clone());
            Response::TwoFactorUsers { users, next }
        }
        Err(e) => Response::from(e),
    }
}

pub struct ImportArgs<'a> {
    pub user: &'a str,
    pub secret: &'a Secret,
    pub algorithm: Option<&'a str>,
    pub digits: Option<u32>,
    pub period: Option<u64>,
}

pub fn import_secret(daemon: &Daemon, caller: &Caller, args: &ImportArgs<'_>) -> Response {
    if !caller.is_root() {
        return root_only(caller, "import two-factor secrets");
    }
    let defaults = TotpParams::default();
    let algorithm = match args.algorithm {
        Some(text) => match text.parse() {
            Ok(a) => a,
            Err(_) => {
                return error(
                    ErrorCode::Invalid,
                    "the algorithm must be SHA1, SHA256 or SHA512",
                )
            }
        },
        None => defaults.algorithm,
    };
    let params = TotpParams {
        algorithm,
        digits: args.digits.unwrap_or(defaults.digits),
        period: args.period.unwrap_or(defaults.period),
    };
    let account = match target(daemon, caller, Some(args.user), true) {
        Ok(account) => account,
        Err(response) => return response,
    };
    match enrollment::import_secret(daemon, &account, args.secret, params) {
        Ok(()) => Response::Done,
        Err(e) => enroll_error(e),
    }
}

pub fn import_google_authenticator(
    daemon: &Daemon,
    caller: &Caller,
    user: &str,
    contents: &Secret,
) -> Response {
    if !caller.is_root() {
        return root_only(caller, "import google-authenticator files");
    }
    let account = match target(daemon, caller, Some(user), true) {
        Ok(account) => account,
        Err(response) => return response,
    };
    match enrollment::import_google_authenticator(daemon, &account, contents) {
        Ok(imported) => Response::Imported {
            user: account.name,
            recovery_codes: imported.recovery_codes,
            notes: imported.notes,
        },
        Err(e) => enroll_error(e),
    }
}

/// Puts back a replay guard that a clock which ran ahead left in the
/// future (see [`code_check::reset_guard`]). Root only.
pub fn reset_guard(daemon: &Daemon, caller: &Caller, user: &str) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "reset a replay guard"));
    }
    let account = target(daemon, caller, Some(user), false)?;
    if !daemon.store().has_totp(account.id)? {
        return Err(error(
            ErrorCode::NotFound,
            format!(
                "two-factor authentication is not on for {}: there is no replay guard to reset",
                account.name
            ),
        ));
    }
    let ahead_seconds = code_check::reset_guard(daemon, &account)?;
    if ahead_seconds > 0 {
        activity::event(
            daemon,
            Some(&account.name),
            EventKind::Admin,
            &format!(
                "replay guard reset by {}: it was {} ahead of the clock",
                caller.by_whom(),
                replay_guard::describe(ahead_seconds)
            ),
        );
    }
    Ok(Response::GuardReset {
        user: account.name,
        ahead_seconds,
    })
}
