//! The checks of every PAM service that uses pam_kpanel, and the text of
//! what they find.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use kauth_proto::module_options::{FailMode, OptionError, Options};
use kauthd::config::Config;

use super::parse::{modules, Kind, Loader, ModuleLine};
use super::simulate::{find_bypass, Bypass};
use crate::doctor::{Finding, Report};

/// The file under /etc/pam.d that sshd uses.
pub const SSHD_SERVICE: &str = "sshd";

/// What the sshd checks need to know about sshd's PAM stack.
#[derive(Debug, Clone)]
pub struct SshdStack {
    pub file: PathBuf,
    /// pam_kpanel is in the auth stack.
    pub kpanel_auth: bool,
    /// The auth stack asks only for the code (`otp_only` and nothing
    /// before it checks a first factor): the SSH key must be the first factor.
    pub code_only: bool,
}

/// Where libpam looks for a module named without a path.
fn module_found(module: &str) -> bool {
    if module.starts_with('/') {
        return Path::new(module).is_file();
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for base in ["/usr/lib", "/lib"] {
        if let Ok(read) = fs::read_dir(base) {
            for entry in read.flatten() {
                if entry.file_name().to_string_lossy().contains("-linux-") {
                    dirs.push(entry.path().join("security"));
                }
            }
        }
    }
    for dir in [
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ] {
        dirs.push(PathBuf::from(dir));
    }
    dirs.iter().any(|d| d.join(module).is_file())
}

/// Modules that check no first factor: with only these before
/// `pam_kpanel.so otp_only`, the code is all the stack asks for.
const NO_FACTOR_MODULES: &[&str] = &[
    "pam_env.so",
    "pam_permit.so",
    "pam_deny.so",
    "pam_nologin.so",
    "pam_faildelay.so",
    "pam_faillock.so",
    "pam_succeed_if.so",
    "pam_rootok.so",
    "pam_securetty.so",
    "pam_shells.so",
    "pam_group.so",
    "pam_access.so",
    "pam_listfile.so",
    "pam_time.so",
    "pam_warn.so",
    "pam_echo.so",
    "pam_localuser.so",
    "pam_wheel.so",
    "pam_tally2.so",
    "pam_limits.so",
    "pam_motd.so",
    "pam_keyinit.so",
    "pam_loginuid.so",
    "pam_selinux.so",
    "pam_cap.so",
];

fn is_code_only(auth: &[Rc<ModuleLine>]) -> bool {
    let Some(first_kpanel) = auth.iter().position(|l| l.is_kpanel()) else {
        return false;
    };
    let otp_only = auth
        .get(first_kpanel)
        .is_some_and(|l| l.args.iter().any(|a| a == "otp_only"));
    otp_only
        && auth
            .get(..first_kpanel)
            .unwrap_or_default()
            .iter()
            .all(|l| NO_FACTOR_MODULES.contains(&l.name()))
}

fn is_service_file(name: &str) -> bool {
    !(name.starts_with("common-")
        || name.starts_with('.')
        || name.ends_with('~')
        || name.contains(".dpkg-")
        || name.ends_with(".bak")
        || name.ends_with(".orig")
        || name.ends_with(".ucf-old")
        || name.ends_with(".ucf-dist"))
}

/// The line with its control made `required`.
fn required_line(line: &ModuleLine) -> String {
    let mut words = vec![
        line.kind.name().to_owned(),
        "required".to_owned(),
        line.module.clone(),
    ];
    words.extend(line.args.iter().cloned());
    words.join("   ")
}

/// Checks every service in `dir`; returns what the sshd checks need.
pub fn check(dir: &Path, config: &Config, report: &mut Report) -> Option<SshdStack> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(read) => read
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_service_file(n))
            .collect(),
        Err(e) => {
            report.add(
                Finding::warning(
                    "pam",
                    format!("cannot read the PAM directory {} ({e})", dir.display()),
                )
                .why("doctor cannot tell which logins pam_kpanel protects")
                .at(dir, None),
            );
            return None;
        }
    };
    names.sort();
    let mut loader = Loader::new(dir);
    let mut seen = BTreeSet::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut push = |finding: Finding, findings: &mut Vec<Finding>| {
        let key = (finding.what.clone(), finding.file.clone(), finding.line);
        if seen.insert(key) {
            findings.push(finding);
        }
    };
    let mut protected = Vec::new();
    let mut sshd = None;
    let mut broken_files = BTreeSet::new();
    for name in &names {
        let path = dir.join(name);
        loader.visited.clear();
        let auth_entries = loader.stack(&path, Kind::Auth, 0);
        let account_entries = loader.stack(&path, Kind::Account, 0);
        let session_entries = loader.stack(&path, Kind::Session, 0);
        let password_entries = loader.stack(&path, Kind::Password, 0);
        let mut auth = Vec::new();
        modules(&auth_entries, &mut auth);
        let mut account = Vec::new();
        modules(&account_entries, &mut account);
        let mut session = Vec::new();
        modules(&session_entries, &mut session);
        let mut password = Vec::new();
        modules(&password_entries, &mut password);
        let kpanel_auth = auth.iter().any(|l| l.is_kpanel());
        let kpanel_account = account.iter().any(|l| l.is_kpanel());
        let kpanel_session = session.iter().any(|l| l.is_kpanel());
        let kpanel_any = kpanel_auth
            || kpanel_account
            || kpanel_session
            || password.iter().any(|l| l.is_kpanel());
        if name == SSHD_SERVICE {
            sshd = Some(SshdStack {
                file: path.clone(),
                kpanel_auth,
                code_only: is_code_only(&auth),
            });
        }
        if !kpanel_any && name != SSHD_SERVICE {
            continue;
        }
        broken_files.extend(
            loader
                .visited
                .iter()
                .filter(|f| loader.errors.contains_key(*f))
                .cloned(),
        );
        if !kpanel_any {
            continue;
        }
        protected.push(name.clone());

        let all_lines = auth.iter().chain(&account).chain(&session).chain(&password);
        for line in all_lines.filter(|l| l.is_kpanel()) {
            check_module_line(line, config, &mut findings, &mut push);
        }

        for (kind, entries) in [
            (Kind::Auth, &auth_entries),
            (Kind::Account, &account_entries),
        ] {
            if let Some(bypass) = find_bypass(entries, kind) {
                push(bypass_finding(name, kind, &bypass), &mut findings);
            }
        }

        if kpanel_auth && !kpanel_account {
            let what = format!("the {name} stack has pam_kpanel in auth but not in account");
            let finding = if name == SSHD_SERVICE {
                Finding::problem("pam", what)
                    .why("sshd skips the auth stack for a login by key alone (and for GSSAPI or host-based logins); the account line is what refuses such a login when a code is required")
            } else {
                Finding::warning("pam", what)
                    .why("the account check refuses locked accounts and, as a safety net, logins that skipped the code")
            };
            push(
                finding
                    .fix("add `account   required   pam_kpanel.so` after the other account lines")
                    .at(&path, None),
                &mut findings,
            );
        }
        if name == SSHD_SERVICE && kpanel_auth && !kpanel_session {
            push(
                Finding::warning("pam", "the sshd stack does not register sessions with kauthd")
                    .why("`kauthctl sessions sign-out` (sign out everywhere) cannot end SSH sessions it does not know")
                    .fix("add `session   required   pam_kpanel.so` to the session lines")
                    .at(&path, None),
                &mut findings,
            );
        }
        if name != SSHD_SERVICE && is_code_only(&auth) {
            push(
                Finding::warning("pam", format!("the {name} stack asks only for a code"))
                    .why("pam_kpanel has otp_only and no module before it checks a password, so a code alone logs in")
                    .fix("remove otp_only (kauthd then asks for its own password first), or put the password module (e.g. pam_unix.so) before it")
                    .at(&path, None),
                &mut findings,
            );
        }
    }

    for file in &broken_files {
        for (number, why) in loader.errors.get(file).into_iter().flatten() {
            let line = (*number > 0).then_some(*number);
            push(
                Finding::problem("pam", format!("libpam cannot use {}: {why}", file.display()))
                    .why("a PAM file with a line libpam cannot parse, or an include it cannot read, makes every login through the services that use it fail")
                    .fix("correct or remove that line (see pam.conf(5))")
                    .at(file, line),
                &mut findings,
            );
        }
    }

    if protected.is_empty() {
        report.add(
            Finding::warning("pam", format!("no PAM service in {} uses pam_kpanel", dir.display()))
                .why("kauthd asks no one for a code until a PAM stack uses the module")
                .fix("see the examples in /usr/share/doc/kauthd/examples/pam.d/ and the README's \"Install on a server\"; keep a root shell open while you change /etc/pam.d"),
        );
    } else if findings.is_empty() {
        report.ok(
            "pam",
            format!(
                "{}: pam_kpanel is used, and a failed check stops the login",
                protected.join(", ")
            ),
        );
    }
    for finding in findings {
        report.add(finding);
    }
    sshd
}

fn check_module_line(
    line: &ModuleLine,
    config: &Config,
    findings: &mut Vec<Finding>,
    push: &mut impl FnMut(Finding, &mut Vec<Finding>),
) {
    let at = |f: Finding| f.at(&line.file, Some(line.number));
    // The module's own parser, one word at a time, so that every bad word
    // of the line is reported (a refused word changes nothing).
    let mut options = Options::default();
    for arg in &line.args {
        if let Err(why) = options.apply(arg) {
            push(
                at(Finding::problem("pam", format!("pam_kpanel.so has a bad option: {why}"))
                    .why("the module refuses to run with an option it does not understand, so every login through this line fails")
                    .fix(format!("correct or remove it: `{}` (options: see pam_kpanel(8))", line.text))),
                findings,
            );
        }
        if let Some(socket) = arg.strip_prefix("socket=") {
            if Path::new(socket) != config.daemon.socket {
                push(
                    at(Finding::problem(
                        "pam",
                        format!(
                            "pam_kpanel.so looks for kauthd at {socket}, but kauthd listens on {}",
                            config.daemon.socket.display()
                        ),
                    )
                    .why("the module cannot reach kauthd, so every login through this line fails")
                    .fix(format!(
                        "use socket={} or drop the option (the default is /run/kauthd/kauthd.sock)",
                        config.daemon.socket.display()
                    ))),
                    findings,
                );
            }
        }
    }
    match options.check() {
        Ok(()) => {
            if options.failmode == FailMode::Safe && line.kind == Kind::Auth {
                push(
                    at(Finding::warning("pam", "pam_kpanel.so has failmode=safe")
                        .why("while kauthd is down or unreachable, logins pass on the first factor alone")
                        .fix("remove failmode=safe if a code must always be asked")),
                    findings,
                );
            }
        }
        Err(OptionError::SafeWithoutOtpOnly) => push(
            at(Finding::problem("pam", "pam_kpanel.so has failmode=safe without otp_only")
                .why("the module refuses this combination (a password kauthd checks cannot be skipped), so every login through this line fails")
                .fix("remove failmode=safe")),
            findings,
        ),
        Err(why) => push(
            at(Finding::problem("pam", format!("pam_kpanel.so refuses its options: {why}"))
                .why("the module refuses to run with options it does not accept, so every login through this line fails")
                .fix(format!("correct the line: `{}` (options: see pam_kpanel(8))", line.text))),
            findings,
        ),
    }
    if !module_found(&line.module) {
        push(
            at(Finding::problem("pam", format!("PAM cannot find the module {}", line.module))
                .why("libpam fails every login through a stack whose module does not load")
                .fix("install the kauthd package (it puts pam_kpanel.so in /usr/lib/<triplet>/security/), or write the module's full path")),
            findings,
        );
    }
}

fn bypass_finding(service: &str, kind: Kind, bypass: &Bypass) -> Finding {
    let step = match kind {
        Kind::Auth => "a wrong or missing code",
        _ => "kauthd's refusal (locked account, or no code given)",
    };
    match bypass {
        Bypass::Control { line, result } => Finding::problem(
            "pam",
            format!(
                "in the {service} stack, {step} does not stop the login: pam_kpanel.so is `{}`",
                line.control_text
            ),
        )
        .why(format!(
            "when pam_kpanel fails ({result}), this control lets PAM go on and the other modules decide, so the login succeeds without kauthd's approval"
        ))
        .fix(format!("make the line `{}`", required_line(line)))
        .at(&line.file, Some(line.number)),
        Bypass::Skipped { by } => Finding::problem(
            "pam",
            format!(
                "in the {service} stack, the login can succeed before pam_kpanel.so is asked: `{}` ends the {} stack or jumps past it",
                by.text,
                kind.name()
            ),
        )
        .why("a module with `sufficient` (or a done / jump action) that succeeds settles the login, so pam_kpanel never runs")
        .fix(format!(
            "move the pam_kpanel.so line above that line, or make that line `{}`",
            required_line(by)
        ))
        .at(&by.file, Some(by.number)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::doctor::pam::parse::{stack_of, Actions, MODULE};

    #[test]
    fn code_only_stack_is_recognised() {
        let entries = stack_of(
            &[(
                "sshd",
                "auth required pam_env.so\nauth required pam_kpanel.so otp_only\n",
            )],
            "sshd",
            Kind::Auth,
        );
        let mut lines = Vec::new();
        modules(&entries, &mut lines);
        assert!(is_code_only(&lines));
        let entries = stack_of(
            &[(
                "sshd",
                "auth required pam_unix.so\nauth required pam_kpanel.so otp_only\n",
            )],
            "sshd",
            Kind::Auth,
        );
        let mut lines = Vec::new();
        modules(&entries, &mut lines);
        assert!(!is_code_only(&lines));
    }

    /// What check_module_line says about pam_kpanel's arguments.
    fn option_findings(args: &[&str]) -> Vec<String> {
        let line = ModuleLine {
            file: PathBuf::from("/etc/pam.d/test"),
            number: 1,
            text: String::new(),
            kind: Kind::Auth,
            actions: Actions::keyword("required").unwrap(),
            control_text: "required".to_owned(),
            module: MODULE.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let mut findings = Vec::new();
        let mut push = |f: Finding, all: &mut Vec<Finding>| all.push(f);
        check_module_line(&line, &Config::default(), &mut findings, &mut push);
        findings
            .into_iter()
            .map(|f| f.what)
            .filter(|what| what.starts_with("pam_kpanel.so"))
            .collect()
    }

    #[test]
    fn options_are_checked_with_the_modules_parser() {
        assert!(option_findings(&["otp_only", "timeout=10", "debug"]).is_empty());
        let bad = option_findings(&["otp-only", "timeout=0", "service=a b"]);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().all(|w| w.contains("bad option")), "{bad:?}");
        let safe = option_findings(&["failmode=safe"]);
        assert_eq!(safe.len(), 1, "{safe:?}");
        assert!(safe[0].contains("without otp_only"), "{safe:?}");
        let warned = option_findings(&["failmode=safe", "otp_only"]);
        assert_eq!(warned, ["pam_kpanel.so has failmode=safe"]);
    }
}
