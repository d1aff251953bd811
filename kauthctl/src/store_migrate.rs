//! `kauthctl store migrate --to URL`: copies this server's SQLite state into
//! the fleet's shared PostgreSQL database (a server joining the fleet).
//!
//! It reads the SQLite database itself, so kauthd must be stopped (a
//! running kauthd holds the database, and the copy is refused with a
//! message saying so). TOTP secrets are opened with this server's key and
//! sealed again with the fleet's key (`--key-file`, by default this
//! server's own key: the first server of a fleet gives the fleet its key).
//!
//! Copied: accounts (password hash, root's lock), TOTP secrets with their
//! replay guard and learned clock offset, unused recovery codes, pending
//! enrollments, policy overrides and the activity of the accounts copied.
//! Not copied: sessions (they belong to this server's processes, and end
//! when kauthd stops), reset tokens and failure counts (short-lived).
//!
//! A name on both sides is reported and left alone, unless `--prefer
//! local` (this server's record replaces the shared one; the replay guard
//! keeps the later of the two steps, so no spent code works again) or
//! `--prefer remote` (the shared one stays, without a report). An account
//! copied by an earlier run (same creation time, password and TOTP secret)
//! is skipped, so the command can be run again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;
use subtle::ConstantTimeEq;

use kauthd::activity::EventKind;
use kauthd::config::{Config, DEFAULT_CONFIG};
use kauthd::secrets::key_file;
use kauthd::store::{Account, NewEvent, NewTotp, Override, PgSettings, Store, StoreError};

use crate::output::{Failure, Output};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The shared database: a libpq URL or key=value string (several
    /// hosts with target_session_attrs=read-write are fine). Put no
    /// password in it: it comes from --password-file.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Which record wins for a name that exists on both sides; without
    /// it, such names are reported and left alone.
    #[arg(long, value_enum, value_name = "SIDE")]
    pub prefer: Option<Prefer>,
    /// The file holding the database password [default: [store]
    /// password_file of the config].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The fleet's key file, which seals the secrets in the shared
    /// database [default: this server's [daemon] secret_key_file].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// kauthd's configuration file, for the state directory and this
    /// server's key [default: /etc/kauthd/kauthd.toml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Prefer {
    /// This server's record replaces the shared one.
    Local,
    /// The shared record stays.
    Remote,
}

/// What a run did, by name.
#[derive(Debug, Default)]
struct Report {
    copied: Vec<String>,
    overwritten: Vec<String>,
    /// Names on both sides, left alone (no --prefer).
    conflicts: Vec<String>,
    /// Names on both sides where the shared record was kept (--prefer remote).
    kept_remote: Vec<String>,
    /// Copied by an earlier run.
    already_there: Vec<String>,
    /// Copied without their uid, which another shared account has.
    uid_dropped: Vec<String>,
    policy_copied: usize,
    policy_conflicts: Vec<String>,
    activity_copied: usize,
}

pub fn run(args: &MigrateArgs, out: &Output) -> ExitCode {
    match migrate(args) {
        Ok(report) => {
            print(&report, out);
            ExitCode::SUCCESS
        }
        Err(failure) => out.fail(failure),
    }
}

fn migrate(args: &MigrateArgs) -> Result<Report, Failure> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Failure::failed(
            "forbidden",
            "store migrate must run as root: it reads kauthd's state directory and key file. Run it with sudo.".to_owned(),
        ));
    }
    let (path, explicit) = match &args.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let config = Config::load(&path, explicit).map_err(|e| {
        Failure::failed(
            "config",
            format!("cannot use {}: {}", path.display(), e.message),
        )
    })?;
    let mut local = open_local(&config)?;
    let mut remote = open_remote(args, &config)?;
    let mut report = Report::default();
    copy_accounts(&local, &mut remote, args.prefer, &mut report).map_err(store_failure)?;
    copy_policy_overrides(&local, &mut remote, args.prefer, &mut report).map_err(store_failure)?;
    copy_activity(&mut local, &mut remote, &mut report).map_err(store_failure)?;
    Ok(report)
}

/// This server's SQLite store, opened with its own key.
fn open_local(config: &Config) -> Result<Store, Failure> {
    let state_dir = &config.daemon.state_dir;
    let database = state_dir.join(kauthd::store::DATABASE_FILE);
    if !database.exists() {
        return Err(Failure::failed(
            "not_found",
            format!(
                "{} does not exist: there is no SQLite state to copy (is [daemon] state_dir right?)",
                database.display()
            ),
        ));
    }
    let key = read_key(&config.daemon.secret_key_file)?;
    Store::open(state_dir, key).map_err(|e| match e {
        StoreError::InUse(_) => Failure::failed(
            "in_use",
            format!(
                "{} is held by a running kauthd: stop it first (systemctl stop kauthd), then run store migrate again",
                database.display()
            ),
        ),
        e => store_failure(e),
    })
}

/// The shared database, sealing with the fleet's key.
fn open_remote(args: &MigrateArgs, config: &Config) -> Result<Store, Failure> {
    let key_path = args
        .key_file
        .clone()
        .unwrap_or_else(|| config.daemon.secret_key_file.clone());
    let key = read_key(&key_path)?;
    let password_file = args
        .password_file
        .clone()
        .or_else(|| config.store.password_file.clone());
    let settings = PgSettings {
        url: args.to.clone(),
        password_file,
        pool_size: 1,
        connect_timeout: Duration::from_secs(10),
    };
    let mut store = Store::open_postgres(&settings, key).map_err(|e| {
        Failure::failed(
            "unavailable",
            format!("cannot use the shared database: {e}"),
        )
    })?;
    // The copied activity is this server's.
    store.set_host_name(&config.daemon.host_name());
    Ok(store)
}

fn read_key(path: &std::path::Path) -> Result<kauthd::secrets::secret_box::SecretKey, Failure> {
    match key_file::read(path) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(Failure::failed(
            "not_found",
            format!("the key file {} does not exist", path.display()),
        )),
        Err(e) => Err(Failure::failed("key_file", e.to_string())),
    }
}

fn store_failure(e: StoreError) -> Failure {
    Failure::failed("store", format!("the copy stopped: {e}; run it again once this is fixed (accounts already copied are skipped)"))
}

/// Whether `theirs` (in `remote`) is the copy an earlier run made of
/// `ours` (in `local`): the same creation time, password hash and TOTP
/// secret.
fn same_account(
    local: &Store,
    ours: &Account,
    remote: &Store,
    theirs: &Account,
) -> Result<bool, StoreError> {
    if ours.created != theirs.created || ours.password_hash != theirs.password_hash {
        return Ok(false);
    }
    let same_secret = match (local.totp(ours.id)?, remote.totp(theirs.id)?) {
        (None, None) => true,
        (Some(a), Some(b)) => bool::from(a.secret.as_slice().ct_eq(b.secret.as_slice())),
        _ => false,
    };
    Ok(same_secret)
}

fn copy_accounts(
    local: &Store,
    remote: &mut Store,
    prefer: Option<Prefer>,
    report: &mut Report,
) -> Result<(), StoreError> {
    for account in local.all_accounts()? {
        let name = account.name.clone();
        // The later of the two replay guards survives an overwrite.
        let mut guard_floor = None;
        if let Some(existing) = remote.account(&name)? {
            if same_account(local, &account, remote, &existing)? {
                report.already_there.push(name);
                continue;
            }
            match prefer {
                None => {
                    report.conflicts.push(name);
                    continue;
                }
                Some(Prefer::Remote) => {
                    report.kept_remote.push(name);
                    continue;
                }
                Some(Prefer::Local) => {
                    guard_floor = remote.totp(existing.id)?.and_then(|t| t.last_counter);
                    remote.delete_account(&name)?;
                    report.overwritten.push(name.clone());
                }
            }
        } else {
            report.copied.push(name.clone());
        }
        copy_account(local, remote, &account, guard_floor, report)?;
    }
    Ok(())
}

/// Writes one account and what belongs to it into `remote`.
fn copy_account(
    local: &Store,
    remote: &mut Store,
    account: &Account,
    guard_floor: Option<u64>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let name = &account.name;
    // A uid is this server's; another server's account may have it.
    let uid = match account.uid {
        Some(uid) if remote.account_by_uid(uid)?.is_some() => {
            report.uid_dropped.push(name.clone());
            None
        }
        uid => uid,
    };
    let hash = account.password_hash.as_deref();
    let copy = remote.add_account(name, uid, hash, account.created)?;
    if account.locked {
        remote.set_locked(name, true)?;
    }
    if let Some(totp) = local.totp(account.id)? {
        let codes = local.unused_recovery_codes(account.id)?;
        let salt = codes.first().map(|c| c.salt.clone()).unwrap_or_default();
        // One salt serves a whole set of codes (they are replaced together).
        let hashes: Vec<[u8; 32]> = codes
            .iter()
            .filter(|c| c.salt == salt)
            .map(|c| c.hash)
            .collect();
        let first_counter = match (totp.last_counter, guard_floor) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        remote.enable_totp(
            copy.id,
            &NewTotp {
                secret: &totp.secret,
                params: &totp.params,
                now: totp.enabled_at,
                first_counter,
                skew_steps: totp.skew_steps,
                codes: (!hashes.is_empty()).then_some((&salt[..], &hashes[..])),
            },
        )?;
        if totp.learned_offset != 0 {
            remote.set_learned_offset(copy.id, totp.learned_offset)?;
        }
    }
    if let Some(pending) = local.pending_totp(account.id)? {
        remote.set_pending_totp(copy.id, &pending.secret, &pending.params, pending.created)?;
    }
    Ok(())
}

fn copy_policy_overrides(
    local: &Store,
    remote: &mut Store,
    prefer: Option<Prefer>,
    report: &mut Report,
) -> Result<(), StoreError> {
    for (name, rule) in local.policy_overrides()? {
        let theirs: Option<Override> = remote.policy_override(&name)?;
        match theirs {
            Some(existing) if existing == rule => continue,
            Some(_) if prefer.is_none() => {
                report.policy_conflicts.push(name);
                continue;
            }
            Some(_) if prefer == Some(Prefer::Remote) => continue,
            _ => {}
        }
        remote.set_policy_override(&name, Some(rule))?;
        report.policy_copied += 1;
    }
    Ok(())
}

/// Copies the activity of the accounts this run wrote, oldest first, with
/// their times.
fn copy_activity(
    local: &mut Store,
    remote: &mut Store,
    report: &mut Report,
) -> Result<(), StoreError> {
    const PAGE: u32 = 1000;
    for name in report.copied.iter().chain(&report.overwritten) {
        let mut events = Vec::new();
        let mut from = None;
        loop {
            let page = local.activity(Some(name), 0, from, PAGE)?;
            from = page.last().map(|row| row.position);
            let done = page.len() < PAGE as usize;
            events.extend(page);
            if done {
                break;
            }
        }
        for row in events.iter().rev() {
            let e = &row.event;
            // A name this kauthd does not know is from a newer one: kept
            // out rather than renamed.
            let Ok(kind) = serde_json::from_value::<EventKind>(json!(e.event)) else {
                continue;
            };
            let event = NewEvent {
                user: e.user.as_deref(),
                event: kind,
                service: e.service.as_deref(),
                rhost: e.rhost.as_deref(),
                detail: &e.detail,
            };
            remote.record_activity(&event, e.at)?;
            report.activity_copied += 1;
        }
    }
    Ok(())
}

fn print(report: &Report, out: &Output) {
    let conflicts = report.conflicts.len() + report.policy_conflicts.len();
    let mut text = format!(
        "copied {} accounts into the shared database ({} replaced with this server's, {} already there from an earlier run), {} policy overrides and {} activity events",
        report.copied.len() + report.overwritten.len(),
        report.overwritten.len(),
        report.already_there.len(),
        report.policy_copied,
        report.activity_copied
    );
    if !report.kept_remote.is_empty() {
        text.push_str(&format!(
            "\nkept the shared record of {} names that exist on both sides: {}",
            report.kept_remote.len(),
            report.kept_remote.join(", ")
        ));
    }
    if !report.uid_dropped.is_empty() {
        text.push_str(&format!(
            "\ncopied without their uid (another account in the shared database has it): {}",
            report.uid_dropped.join(", ")
        ));
    }
    if !report.conflicts.is_empty() {
        text.push_str(&format!(
            "\nskipped {} accounts whose names exist in the shared database too: {}",
            report.conflicts.len(),
            report.conflicts.join(", ")
        ));
    }
    if !report.policy_conflicts.is_empty() {
        text.push_str(&format!(
            "\nskipped policy overrides that differ in the shared database: {}",
            report.policy_conflicts.join(", ")
        ));
    }
    if conflicts > 0 {
        text.push_str(
            "\nrun again with --prefer local to replace those with this server's records, or --prefer remote to keep the shared ones",
        );
    }
    out.success(
        &text,
        json!({
            "copied": report.copied,
            "overwritten": report.overwritten,
            "already_there": report.already_there,
            "conflicts": report.conflicts,
            "kept_remote": report.kept_remote,
            "uid_dropped": report.uid_dropped,
            "policy_copied": report.policy_copied,
            "policy_conflicts": report.policy_conflicts,
            "activity_copied": report.activity_copied,
        }),
    );
}
