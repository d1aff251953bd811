//! `kauthctl doctor`: checks the setup of this server, without needing the
//! daemon to be up.
//!
//! - clock: the kernel's synchronisation state (adjtimex), and the skew
//!   kauthd observed in users' recent codes;
//! - files: the state directory (owner-only), the database (0600), the
//!   config file (not writable by others), the socket;
//! - store: with `[store] backend = "postgres"`, the database can be
//!   reached, its schema version, and its clock against this host's;
//! - daemon: reachable, the running version and config, users whose
//!   replay guard a clock that ran ahead left in the future;
//! - pam: every stack in /etc/pam.d that uses pam_kpanel, evaluated the way
//!   libpam does, for ways a login could pass while kauthd says no;
//! - sshd: the settings that would skip PAM's code prompt or break it.
//!
//! Each finding says what is wrong, why it matters and the line to change.
//! Exit status: 0 when no problem was found (warnings allowed), 1 when at
//! least one was (an unreachable kauthd is one), 2 on a usage error.

mod pam;
mod sshd;
mod store;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kauth_proto::{Client, ClientError, DiagnosticsReport, ErrorCode, Request, Response};
use kauthd::config::{Config, DEFAULT_CONFIG};
use serde::Serialize;
use serde_json::json;

use crate::output::{Failure, Output};

/// How long doctor waits for kauthd before calling it unreachable.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// kauthd's configuration file, for the socket and state directory
    /// [default: /etc/kauthd/kauthd.toml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The PAM configuration directory to check.
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
    pub pam_dir: PathBuf,
    /// sshd's configuration file (its Include lines are followed).
    #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
    pub sshd_config: PathBuf,
    /// Leave a check out (repeatable), e.g. `--skip clock` in a container
    /// whose clock the host keeps.
    #[arg(long, value_enum, value_name = "CHECK")]
    pub skip: Vec<Check>,
}

/// The groups of checks, for `--skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Check {
    Clock,
    Files,
    Daemon,
    Pam,
    Sshd,
    Store,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Logins can bypass 2FA, or break; secrets are exposed. Exit 1.
    Problem,
    /// Worth knowing; does not change the exit status.
    Warning,
}

/// One thing found wrong: what, why it matters, and what to change.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub check: &'static str,
    pub what: String,
    pub why: String,
    pub fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Finding {
    pub fn problem(check: &'static str, what: impl Into<String>) -> Finding {
        Finding::new(Severity::Problem, check, what.into())
    }

    pub fn warning(check: &'static str, what: impl Into<String>) -> Finding {
        Finding::new(Severity::Warning, check, what.into())
    }

    fn new(severity: Severity, check: &'static str, what: String) -> Finding {
        Finding {
            severity,
            check,
            what,
            why: String::new(),
            fix: String::new(),
            file: None,
            line: None,
        }
    }

    pub fn why(mut self, why: impl Into<String>) -> Finding {
        self.why = why.into();
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }

    pub fn at(mut self, file: &Path, line: Option<usize>) -> Finding {
        self.file = Some(file.display().to_string());
        self.line = line;
        self
    }
}

/// A check that found nothing wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Passed {
    pub check: &'static str,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub passed: Vec<Passed>,
}

impl Report {
    pub fn add(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn ok(&mut self, check: &'static str, what: impl Into<String>) {
        self.passed.push(Passed {
            check,
            what: what.into(),
        });
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

pub fn run(args: &DoctorArgs, out: &Output) -> ExitCode {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return out.fail(Failure::failed(
            "forbidden",
            "doctor must run as root: it reads kauthd's state directory and asks kauthd for root-only figures. Run it with sudo.".to_owned(),
        ));
    }
    let report = examine(args);
    print(&report, out);
    if report.count(Severity::Problem) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn examine(args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    let skip = |check: Check| args.skip.contains(&check);
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = load_config(&config_path, args.config.is_some(), &mut report);

    if skip(Check::Clock) {
        report.ok("clock", "skipped (--skip clock)");
    } else {
        check_kernel_clock(&mut report);
    }
    if skip(Check::Files) {
        report.ok("files", "skipped (--skip files)");
    } else {
        check_config_file(&config_path, &mut report);
        if config.store.backend == kauthd::config::StoreBackend::Sqlite {
            check_state(&config, &mut report);
        }
        check_socket_path(&config, &mut report);
    }
    if skip(Check::Store) {
        report.ok("store", "skipped (--skip store)");
    } else {
        store::check(&config, &mut report);
    }
    if skip(Check::Daemon) {
        report.ok("daemon", "skipped (--skip daemon)");
    } else {
        check_daemon(&config, &config_path, !skip(Check::Clock), &mut report);
    }
    let sshd_stack = if skip(Check::Pam) {
        report.ok("pam", "skipped (--skip pam)");
        None
    } else {
        pam::check(&args.pam_dir, &config, &mut report)
    };
    if skip(Check::Sshd) {
        report.ok("sshd", "skipped (--skip sshd)");
    } else {
        sshd::check(&args.sshd_config, sshd_stack.as_ref(), &mut report);
    }
    report
}

fn print(report: &Report, out: &Output) {
    let problems = report.count(Severity::Problem);
    let warnings = report.count(Severity::Warning);
    if out.is_json() {
        let doc = json!({
            "ok": problems == 0,
            "problems": problems,
            "warnings": warnings,
            "findings": report.findings,
            "passed": report.passed,
        });
        println!("{doc}");
        return;
    }
    for passed in &report.passed {
        println!("ok       {}: {}", passed.check, passed.what);
    }
    for finding in &report.findings {
        let label = match finding.severity {
            Severity::Problem => "PROBLEM",
            Severity::Warning => "warning",
        };
        println!();
        println!("{label:<8} {}: {}", finding.check, finding.what);
        if let Some(file) = &finding.file {
            match finding.line {
                Some(line) => println!("         where: {file} line {line}"),
                None => println!("         where: {file}"),
            }
        }
        if !finding.why.is_empty() {
            println!("         why:   {}", finding.why);
        }
        if !finding.fix.is_empty() {
            println!("         fix:   {}", finding.fix);
        }
    }
    println!();
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    if problems == 0 && warnings == 0 {
        println!("doctor: no problems found");
    } else {
        println!(
            "doctor: {}, {}",
            plural(problems, "problem"),
            plural(warnings, "warning")
        );
    }
}

/// The config kauthd would read; its defaults when it cannot be used.
fn load_config(path: &Path, explicit: bool, report: &mut Report) -> Config {
    if !explicit && !path.exists() {
        report.add(
            Finding::warning("config", format!("{} does not exist", path.display()))
                .why("kauthd runs with every default then; the package installs a documented file there")
                .fix("reinstall it (apt-get install --reinstall kauthd) or copy config/kauthd.toml")
                .at(path, None),
        );
        return Config::default();
    }
    match Config::load(path, explicit) {
        Ok(config) => {
            report.ok("config", format!("{} is valid", path.display()));
            config
        }
        Err(e) => {
            report.add(
                Finding::problem("config", format!("kauthd cannot use its configuration: {}", e.message))
                    .why("kauthd refuses to start with it, and keeps the old configuration on reload; the checks below use the defaults")
                    .fix(format!("correct the key named above, then check with `kauthd --check-config --config {}`", path.display()))
                    .at(path, None),
            );
            Config::default()
        }
    }
}

/// The kernel's own view: is something (chrony, ntpd, timesyncd)
/// disciplining the clock?
fn check_kernel_clock(report: &mut Report) {
    // SAFETY: timex is plain integers; all-zero is a valid value (modes 0
    // asks only to read the state).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: tx is a valid, writable timex for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        let e = std::io::Error::last_os_error();
        report.add(
            Finding::warning("clock", format!("cannot read the kernel clock state (adjtimex: {e})"))
                .why("verification codes depend on the server clock being right to within about 30 seconds")
                .fix("check the clock with `timedatectl` and make sure a time service runs"),
        );
        return;
    }
    let unsynced = tx.status & libc::STA_UNSYNC != 0 || state == libc::TIME_ERROR;
    if unsynced {
        report.add(
            Finding::problem("clock", "the kernel says the system clock is not synchronised")
                .why("codes are computed from the time: once the server clock drifts more than about 30 s from the users' phones, every code is refused (\"the security code is invalid\")")
                .fix("run a time service: `timedatectl set-ntp true` (systemd-timesyncd), or `apt-get install chrony`; then check `timedatectl` shows \"System clock synchronized: yes\""),
        );
    } else {
        // maxerror is in microseconds.
        let ms = tx.maxerror / 1000;
        report.ok(
            "clock",
            format!("the kernel clock is synchronised (maximum error {ms} ms)"),
        );
    }
}

/// The config file decides who may do what: only root may change it.
fn check_config_file(path: &Path, report: &mut Report) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 || mode & 0o022 != 0 {
        report.add(
            Finding::problem(
                "files",
                format!(
                    "{} can be changed by someone other than root (owner uid {}, mode {:04o})",
                    path.display(),
                    meta.uid(),
                    mode
                ),
            )
            .why("whoever can edit it can turn two-factor checks off or add themselves to pam_callers")
            .fix(format!("chown root:root {0} && chmod 644 {0}", path.display()))
            .at(path, None),
        );
    } else {
        report.ok(
            "files",
            format!(
                "{} is owned by root and not writable by others",
                path.display()
            ),
        );
    }
}

/// The uid kauthd runs as: root, or `[access] daemon_user`.
fn daemon_uids(config: &Config) -> Vec<u32> {
    let mut uids = vec![0];
    if let Some(user) = kauthd::unix_users::user_by_name(&config.access.daemon_user) {
        if user.uid != 0 {
            uids.push(user.uid);
        }
    }
    uids
}

fn check_state(config: &Config, report: &mut Report) {
    let dir = &config.daemon.state_dir;
    let owners = daemon_uids(config);
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) => {
            report.add(
                Finding::problem("files", format!("the state directory {} cannot be read ({e})", dir.display()))
                    .why("kauthd keeps its database (accounts, TOTP secrets, recovery codes) there and creates it at its first start")
                    .fix("start kauthd (systemctl start kauthd), or point daemon.state_dir in the config at the right place")
                    .at(dir, None),
            );
            return;
        }
    };
    if !meta.is_dir() {
        report.add(
            Finding::problem("files", format!("{} is not a directory", dir.display()))
                .why("kauthd needs a real directory for its database; a symlink could point it somewhere others control")
                .fix(format!("move it away and let kauthd create the directory: mv {0} {0}.old && systemctl restart kauthd", dir.display()))
                .at(dir, None),
        );
        return;
    }
    let mode = meta.mode() & 0o7777;
    let mut fine = true;
    if mode & 0o077 != 0 {
        fine = false;
        report.add(
            Finding::problem(
                "files",
                format!("the state directory {} is accessible to group or others (mode {mode:04o})", dir.display()),
            )
            .why("it holds the database with every TOTP secret and password hash: whoever can read it can compute every user's codes")
            .fix(format!("chmod 700 {}", dir.display()))
            .at(dir, None),
        );
    }
    if !owners.contains(&meta.uid()) {
        fine = false;
        report.add(
            Finding::problem(
                "files",
                format!(
                    "the state directory {} is owned by uid {}, not root",
                    dir.display(),
                    meta.uid()
                ),
            )
            .why("its owner can read and change every secret kauthd keeps")
            .fix(format!("chown root:root {}", dir.display()))
            .at(dir, None),
        );
    }
    let db = dir.join(kauthd::store::DATABASE_FILE);
    if !db.exists() {
        report.add(
            Finding::warning(
                "files",
                format!("there is no database at {} yet", db.display()),
            )
            .why("kauthd creates it at its first start; until then no one is enrolled")
            .fix("start kauthd: systemctl start kauthd")
            .at(&db, None),
        );
        fine = false;
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        let Ok(meta) = fs::symlink_metadata(&file) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        if !meta.is_file() || mode & 0o077 != 0 || !owners.contains(&meta.uid()) {
            fine = false;
            report.add(
                Finding::problem(
                    "files",
                    format!(
                        "{} is not a private file of root's (owner uid {}, mode {mode:04o})",
                        file.display(),
                        meta.uid()
                    ),
                )
                .why("the database holds every TOTP secret and password hash")
                .fix(format!(
                    "chown root:root {0} && chmod 600 {0}",
                    file.display()
                ))
                .at(&file, None),
            );
        }
    }
    if fine {
        report.ok(
            "files",
            format!(
                "{} is 0700 and {} is 0600, both owned by root",
                dir.display(),
                kauthd::store::DATABASE_FILE
            ),
        );
    }
}

/// The socket and its directory: nobody else may replace it.
fn check_socket_path(config: &Config, report: &mut Report) {
    let socket = &config.daemon.socket;
    if let Some(parent) = socket.parent() {
        if let Ok(meta) = fs::metadata(parent) {
            let mode = meta.mode() & 0o7777;
            if meta.uid() != 0 || mode & 0o022 != 0 {
                report.add(
                    Finding::problem(
                        "files",
                        format!(
                            "the socket's directory {} can be written by others (owner uid {}, mode {mode:04o})",
                            parent.display(),
                            meta.uid()
                        ),
                    )
                    .why("whoever can write there can remove kauthd's socket and stop every login it guards")
                    .fix(format!("chown root:root {0} && chmod 755 {0}", parent.display()))
                    .at(parent, None),
                );
            }
        }
    }
    match fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            let mode = meta.mode() & 0o777;
            if mode & 0o006 != 0o006 {
                report.add(
                    Finding::warning(
                        "files",
                        format!("only some users can connect to {} (mode {mode:04o})", socket.display()),
                    )
                    .why("users cannot run `kauthctl 2fa enroll` for themselves; kauthd decides per caller what it may do, so the socket is meant to be open")
                    .fix("restart kauthd, which sets the socket to 0666: systemctl restart kauthd")
                    .at(socket, None),
                );
            } else {
                report.ok("files", format!("the socket {} exists", socket.display()));
            }
        }
        Ok(_) => report.add(
            Finding::problem(
                "files",
                format!("{} exists but is not a socket", socket.display()),
            )
            .why("kauthd cannot listen there, so every login pam_kpanel guards fails")
            .fix(format!(
                "remove it and restart kauthd: rm {} && systemctl restart kauthd",
                socket.display()
            ))
            .at(socket, None),
        ),
        // A missing socket is reported with the daemon check.
        Err(_) => {}
    }
}

fn check_daemon(config: &Config, config_path: &Path, judge_skew: bool, report: &mut Report) {
    let socket = &config.daemon.socket;
    let mut client = match Client::connect(
        socket,
        DAEMON_TIMEOUT,
        &daemon_uids(config),
        "kauthctl doctor",
    ) {
        Ok(client) => client,
        Err(ClientError::UntrustedPeer { uid }) => {
            report.add(
                Finding::problem("daemon", format!("the process listening on {} runs as uid {uid}, not as root or [access] daemon_user", socket.display()))
                    .why("pam_kpanel refuses to talk to it (it could be an impostor collecting codes), so every login it guards fails")
                    .fix(format!("find it with `ss -xlp | grep {}`, stop it, and restart kauthd", socket.display())),
            );
            return;
        }
        Err(e) => {
            let why = match e {
                ClientError::Unreachable(io) => io.to_string(),
                other => other.to_string(),
            };
            report.add(
                Finding::problem("daemon", format!("kauthd is not reachable at {} ({why})", socket.display()))
                    .why("while kauthd is down, every login through a PAM stack with pam_kpanel is refused (failmode=secure)")
                    .fix("start it: systemctl start kauthd; if it stops again, `journalctl -u kauthd -e` says why"),
            );
            return;
        }
    };
    let ours = env!("CARGO_PKG_VERSION");
    match client.call(&Request::Status) {
        Ok(Response::Status {
            version,
            uptime_seconds,
            accounts,
        }) => {
            report.ok(
                "daemon",
                format!(
                    "kauthd {version} answers on {} (up {uptime_seconds} s, {accounts} accounts)",
                    socket.display()
                ),
            );
            if version != ours {
                report.add(
                    Finding::warning(
                        "daemon",
                        format!("kauthd {version} is running, but the installed tools are {ours}"),
                    )
                    .why("after an upgrade the old daemon keeps running until it is restarted")
                    .fix("systemctl restart kauthd"),
                );
            }
        }
        Ok(other) => report.add(unexpected(&other)),
        Err(e) => {
            report.add(
                Finding::problem(
                    "daemon",
                    format!("kauthd accepted the connection but did not answer: {e}"),
                )
                .why("a stuck kauthd refuses every login it guards")
                .fix("systemctl restart kauthd; `journalctl -u kauthd -e` says what happened"),
            );
            return;
        }
    }
    match client.call(&Request::Diagnostics) {
        Ok(Response::Diagnostics(diag)) => {
            compare_running_config(&diag, config, config_path, report);
            if judge_skew {
                check_observed_skew(&diag, report);
            }
            check_guards(&diag, report);
        }
        Ok(Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }) => report.add(
            Finding::warning(
                "daemon",
                "the running kauthd does not report diagnostics (observed clock skew)",
            )
            .why("it is older than this kauthctl")
            .fix("systemctl restart kauthd"),
        ),
        Ok(other) => report.add(unexpected(&other)),
        Err(e) => report.add(
            Finding::warning(
                "daemon",
                format!("kauthd did not answer the diagnostics request: {e}"),
            )
            .why("the observed clock skew could not be checked"),
        ),
    }
}

fn unexpected(response: &Response) -> Finding {
    let text = match response {
        Response::Error { message, .. } => message.clone(),
        other => format!("{other:?}"),
    };
    Finding::warning("daemon", format!("kauthd answered unexpectedly: {text}"))
        .why("doctor could not finish the daemon checks")
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn compare_running_config(
    diag: &DiagnosticsReport,
    config: &Config,
    config_path: &Path,
    report: &mut Report,
) {
    if !same_path(Path::new(&diag.config_path), config_path) {
        report.add(
            Finding::warning(
                "daemon",
                format!(
                    "kauthd runs with {}, but doctor read {}",
                    diag.config_path,
                    config_path.display()
                ),
            )
            .why("the file checks above used the other file's socket and state directory")
            .fix(format!(
                "run `kauthctl doctor --config {}`",
                diag.config_path
            )),
        );
        return;
    }
    if Path::new(&diag.state_dir) != config.daemon.state_dir
        || Path::new(&diag.socket) != config.daemon.socket
    {
        report.add(
            Finding::warning(
                "daemon",
                format!(
                    "kauthd still uses socket {} and state {}; the config now says {} and {}",
                    diag.socket,
                    diag.state_dir,
                    config.daemon.socket.display(),
                    config.daemon.state_dir.display()
                ),
            )
            .why("daemon.socket and daemon.state_dir change only when kauthd restarts")
            .fix("systemctl restart kauthd")
            .at(config_path, None),
        );
    }
}

/// kauthd's verdict on its clock (most users' recent codes matched
/// off-centre the same way), as the diagnostics answer carries it.
fn check_observed_skew(diag: &DiagnosticsReport, report: &mut Report) {
    let users = diag.recent_code_users;
    let off = diag.off_centre_users;
    let median = diag.median_offset_steps;
    if let Some(fast_by) = diag.server_clock_fast_seconds {
        let direction = if fast_by > 0 { "fast" } else { "slow" };
        report.add(
            Finding::problem(
                "clock",
                format!(
                    "the server clock looks about {} s {direction}: {off} of {users} users' codes in the last day matched off-centre (median {median} time steps)",
                    fast_by.unsigned_abs()
                ),
            )
            .why("when most phones disagree with the server the same way, the server is wrong; a little more drift and every code is refused")
            .fix("synchronise the clock: `timedatectl set-ntp true` or `apt-get install chrony`, then check `timedatectl`"),
        );
    } else if users == 0 {
        report.ok(
            "clock",
            "no codes were accepted in the last day, so there is no observed skew to judge",
        );
    } else {
        report.ok(
            "clock",
            format!("users' codes match the server clock ({users} users in the last day, {off} off-centre)"),
        );
    }
}

/// Users whose last accepted code is beyond their window: a clock that ran
/// ahead accepted it, and every real code of theirs is refused until the
/// clock catches up.
fn check_guards(diag: &DiagnosticsReport, report: &mut Report) {
    let count = diag.guard_ahead_users;
    if count == 0 {
        report.ok("guard", "no user's replay guard is ahead of the clock");
        return;
    }
    let names = &diag.guard_ahead_names;
    let mut who = names.join(", ");
    let unnamed = count.saturating_sub(u64::try_from(names.len()).unwrap_or(0));
    if unnamed > 0 {
        who.push_str(&format!(" and {unnamed} more"));
    }
    let example = names.first().map_or("NAME", String::as_str);
    let gap = kauthd::twofactor::replay_guard::describe(diag.guard_ahead_max_seconds);
    let what = if count == 1 {
        format!("the replay guard of {who} is {gap} ahead of the clock")
    } else {
        format!("the replay guards of {count} users are ahead of the clock, by up to {gap}: {who}")
    };
    report.add(
        Finding::problem("guard", what)
        .why("kauthd accepted a code while the server clock ran ahead; it refuses every code of theirs older than that one, so they cannot log in with a code until the clock catches up")
        .fix(format!("for each user: `kauthctl 2fa reset-guard --user {example}` (a login with a recovery code repairs it too); keep the clock synchronised (`timedatectl`)")),
    );
}
