//! The PAM stacks that use pam_kpanel, read the way libpam reads them
//! (`include`, `substack`, Debian's `@include`, `[value=action]`
//! controls, `-type` lines) and evaluated the way libpam evaluates them,
//! to answer one question: can a login pass while pam_kpanel says no?
//!
//! Every other module is assumed able to succeed or fail (each
//! combination is tried), except `pam_deny` (always fails), `pam_permit`
//! (always succeeds) and `pam_rootok` (taken as failing: it only lets root
//! skip what root could change anyway).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use kauth_proto::module_options::{FailMode, OptionError, Options};
use kauthd::config::Config;

use super::{Finding, Report};

/// The file under /etc/pam.d that sshd uses.
pub const SSHD_SERVICE: &str = "sshd";

const MODULE: &str = "pam_kpanel.so";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Auth,
    Account,
    Session,
    Password,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        match word.to_ascii_lowercase().as_str() {
            "auth" => Some(Kind::Auth),
            "account" => Some(Kind::Account),
            "session" => Some(Kind::Session),
            "password" => Some(Kind::Password),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Account => "account",
            Kind::Session => "session",
            Kind::Password => "password",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(usize),
}

/// What a line does for each module result: `value=action` pairs and a
/// default (libpam's default for values not named is `bad`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    pairs: Vec<(String, Action)>,
    default: Action,
}

impl Actions {
    fn keyword(word: &str) -> Option<Actions> {
        let pairs = |success: Action| {
            vec![
                ("success".to_owned(), success),
                ("new_authtok_reqd".to_owned(), success),
                ("ignore".to_owned(), Action::Ignore),
            ]
        };
        let (pairs, default) = match word.to_ascii_lowercase().as_str() {
            "required" => (pairs(Action::Ok), Action::Bad),
            "requisite" => (pairs(Action::Ok), Action::Die),
            "sufficient" => (pairs(Action::Done), Action::Ignore),
            "optional" => (pairs(Action::Ok), Action::Ignore),
            _ => return None,
        };
        Some(Actions { pairs, default })
    }

    fn bracket(inner: &str) -> Result<Actions, String> {
        let mut pairs = Vec::new();
        let mut default = None;
        for item in inner.split_whitespace() {
            let (value, action) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not value=action"))?;
            let action = match action.to_ascii_lowercase().as_str() {
                "ignore" => Action::Ignore,
                "ok" => Action::Ok,
                "done" => Action::Done,
                "bad" => Action::Bad,
                "die" => Action::Die,
                "reset" => Action::Reset,
                n => Action::Jump(
                    n.parse()
                        .map_err(|_| format!("`{action}` is not an action"))?,
                ),
            };
            let value = value.to_ascii_lowercase();
            if value == "default" {
                default = Some(action);
            } else {
                pairs.push((value, action));
            }
        }
        Ok(Actions {
            pairs,
            default: default.unwrap_or(Action::Bad),
        })
    }

    fn for_result(&self, result: &str) -> Action {
        self.pairs
            .iter()
            .find(|(value, _)| value == result)
            .map_or(self.default, |(_, action)| *action)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    Actions(Actions),
    Include(String),
    Substack(String),
}

/// One module line, where it came from, and what it does.
#[derive(Debug, Clone)]
pub struct ModuleLine {
    pub file: PathBuf,
    pub number: usize,
    pub text: String,
    pub kind: Kind,
    pub actions: Actions,
    pub control_text: String,
    pub module: String,
    pub args: Vec<String>,
}

impl ModuleLine {
    fn is_kpanel(&self) -> bool {
        // `libpam_kpanel.so` is the name cargo builds it under.
        let name = module_name(&self.module);
        name == MODULE || name == "libpam_kpanel.so"
    }

    fn name(&self) -> &str {
        module_name(&self.module)
    }
}

fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Debug, Clone)]
enum RawLine {
    /// Debian's `@include FILE`: every type's lines of FILE.
    IncludeAll { target: String },
    Line {
        number: usize,
        text: String,
        kind: Kind,
        control: Control,
        control_text: String,
        module: String,
        args: Vec<String>,
    },
}

#[derive(Debug, Clone)]
enum Entry {
    Module { id: usize, line: Rc<ModuleLine> },
    Substack(Vec<Entry>),
}

/// Splits a PAM line into words, keeping `[ … ]` groups whole.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| "a `[` is never closed".to_owned())?;
            out.push(format!("[{}]", &after[..end]));
            rest = after[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// Parses one PAM file. Lines libpam could not use are returned as errors
/// with their line numbers.
fn parse_file(text: &str) -> (Vec<RawLine>, Vec<(usize, String)>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut pending = String::new();
    let mut first_number = 0;
    for (index, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            first_number = index + 1;
        }
        if let Some(cont) = raw.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let full = std::mem::take(&mut pending);
        let text = full.split('#').next().unwrap_or("").trim().to_owned();
        if text.is_empty() {
            continue;
        }
        match parse_line(&text, first_number) {
            Ok(line) => lines.push(line),
            Err(why) => errors.push((first_number, why)),
        }
    }
    (lines, errors)
}

fn parse_line(text: &str, number: usize) -> Result<RawLine, String> {
    let w = words(text)?;
    let first = w.first().map(String::as_str).unwrap_or("");
    if first == "@include" {
        let target = w
            .get(1)
            .ok_or_else(|| "@include names no file".to_owned())?;
        return Ok(RawLine::IncludeAll {
            target: target.clone(),
        });
    }
    let kind_word = first.strip_prefix('-').unwrap_or(first);
    let kind = Kind::parse(kind_word).ok_or_else(|| format!("`{first}` is not a module type"))?;
    let control_text = w
        .get(1)
        .ok_or_else(|| "the line has no control field".to_owned())?
        .clone();
    let module = w
        .get(2)
        .ok_or_else(|| "the line names no module".to_owned())?
        .clone();
    let control = if let Some(inner) = control_text
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
    {
        Control::Actions(Actions::bracket(inner)?)
    } else {
        match control_text.to_ascii_lowercase().as_str() {
            "include" => Control::Include(module.clone()),
            "substack" => Control::Substack(module.clone()),
            word => Control::Actions(
                Actions::keyword(word)
                    .ok_or_else(|| format!("`{control_text}` is not a control"))?,
            ),
        }
    };
    Ok(RawLine::Line {
        number,
        text: text.to_owned(),
        kind,
        control,
        control_text,
        module,
        args: w.get(3..).map(<[String]>::to_vec).unwrap_or_default(),
    })
}

/// Reads files once and builds stacks, numbering module lines.
struct Loader<'a> {
    dir: &'a Path,
    files: HashMap<PathBuf, Result<Rc<Vec<RawLine>>, String>>,
    /// Lines or files libpam could not use, per file: (line, why).
    errors: HashMap<PathBuf, BTreeSet<(usize, String)>>,
    /// The files read since the last `visited.clear()`.
    visited: BTreeSet<PathBuf>,
    next_id: usize,
}

const MAX_DEPTH: usize = 8;

impl<'a> Loader<'a> {
    fn new(dir: &'a Path) -> Loader<'a> {
        Loader {
            dir,
            files: HashMap::new(),
            errors: HashMap::new(),
            visited: BTreeSet::new(),
            next_id: 0,
        }
    }

    fn resolve(&self, name: &str) -> PathBuf {
        if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            self.dir.join(name)
        }
    }

    fn error(&mut self, path: &Path, line: usize, why: String) {
        self.errors
            .entry(path.to_owned())
            .or_default()
            .insert((line, why));
    }

    fn file(&mut self, path: &Path) -> Option<Rc<Vec<RawLine>>> {
        self.visited.insert(path.to_owned());
        if !self.files.contains_key(path) {
            let loaded = match fs::read_to_string(path) {
                Ok(text) => {
                    let (lines, errors) = parse_file(&text);
                    for (number, why) in errors {
                        self.error(path, number, why);
                    }
                    Ok(Rc::new(lines))
                }
                Err(e) => {
                    self.error(path, 0, format!("cannot read it: {e}"));
                    Err(e.to_string())
                }
            };
            self.files.insert(path.to_owned(), loaded);
        }
        match self.files.get(path) {
            Some(Ok(lines)) => Some(Rc::clone(lines)),
            _ => None,
        }
    }

    fn stack(&mut self, path: &Path, kind: Kind, depth: usize) -> Vec<Entry> {
        let mut entries = Vec::new();
        if depth > MAX_DEPTH {
            self.error(path, 0, "includes nest too deep (a loop?)".to_owned());
            return entries;
        }
        let Some(lines) = self.file(path) else {
            return entries;
        };
        for line in lines.iter() {
            match line {
                RawLine::IncludeAll { target } => {
                    let target = self.resolve(target);
                    entries.extend(self.stack(&target, kind, depth + 1));
                }
                RawLine::Line {
                    number,
                    text,
                    kind: line_kind,
                    control,
                    control_text,
                    module,
                    args,
                } if *line_kind == kind => match control {
                    Control::Include(target) => {
                        let target = self.resolve(target);
                        entries.extend(self.stack(&target, kind, depth + 1));
                    }
                    Control::Substack(target) => {
                        let target = self.resolve(target);
                        entries.push(Entry::Substack(self.stack(&target, kind, depth + 1)));
                    }
                    Control::Actions(actions) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        entries.push(Entry::Module {
                            id,
                            line: Rc::new(ModuleLine {
                                file: path.to_owned(),
                                number: *number,
                                text: text.clone(),
                                kind,
                                actions: actions.clone(),
                                control_text: control_text.clone(),
                                module: module.clone(),
                                args: args.clone(),
                            }),
                        });
                    }
                },
                RawLine::Line { .. } => {}
            }
        }
        entries
    }
}

fn modules(entries: &[Entry], out: &mut Vec<Rc<ModuleLine>>) {
    for entry in entries {
        match entry {
            Entry::Module { line, .. } => out.push(Rc::clone(line)),
            Entry::Substack(inner) => modules(inner, out),
        }
    }
}

fn module_ids(entries: &[Entry], out: &mut Vec<(usize, Rc<ModuleLine>)>) {
    for entry in entries {
        match entry {
            Entry::Module { id, line } => out.push((*id, Rc::clone(line))),
            Entry::Substack(inner) => module_ids(inner, out),
        }
    }
}

fn contains_kpanel(entries: &[Entry]) -> bool {
    entries.iter().any(|e| match e {
        Entry::Module { line, .. } => line.is_kpanel(),
        Entry::Substack(inner) => contains_kpanel(inner),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impression {
    Undef,
    Positive,
    Negative,
}

/// One evaluation of a stack with a given result for every module.
struct Run<'a> {
    results: &'a HashMap<usize, &'static str>,
    impression: Impression,
    success: bool,
    kpanel_ran: Option<Rc<ModuleLine>>,
    /// The last line that ended the stack or jumped past pam_kpanel
    /// before it ran.
    skipper: Option<Rc<ModuleLine>>,
}

impl Run<'_> {
    /// Returns true when the stack (or substack) was decided.
    fn entries(&mut self, entries: &[Entry]) -> bool {
        let mut i = 0;
        while let Some(entry) = entries.get(i) {
            match entry {
                Entry::Substack(inner) => {
                    // done and die end only the substack.
                    self.entries(inner);
                }
                Entry::Module { id, line } => {
                    let result = self.results.get(id).copied().unwrap_or("success");
                    if line.is_kpanel() && self.kpanel_ran.is_none() {
                        self.kpanel_ran = Some(Rc::clone(line));
                    }
                    match line.actions.for_result(result) {
                        Action::Ignore => {}
                        Action::Reset => {
                            self.impression = Impression::Undef;
                            self.success = false;
                        }
                        action @ (Action::Ok | Action::Done) => {
                            if self.impression == Impression::Undef
                                || (self.impression == Impression::Positive && self.success)
                            {
                                self.impression = Impression::Positive;
                                self.success = result == "success";
                            }
                            if action == Action::Done && self.impression != Impression::Negative {
                                if self.kpanel_ran.is_none() {
                                    self.skipper = Some(Rc::clone(line));
                                }
                                return true;
                            }
                        }
                        action @ (Action::Bad | Action::Die) => {
                            if self.impression != Impression::Negative {
                                self.impression = Impression::Negative;
                                self.success = false;
                            }
                            if action == Action::Die {
                                return true;
                            }
                        }
                        Action::Jump(n) => {
                            let skipped = entries.get(i + 1..(i + 1 + n).min(entries.len()));
                            if self.kpanel_ran.is_none() && skipped.is_some_and(contains_kpanel) {
                                self.skipper = Some(Rc::clone(line));
                            }
                            i += n;
                        }
                    }
                }
            }
            i += 1;
        }
        false
    }
}

/// How a login gets through although pam_kpanel failed.
#[derive(Debug, Clone)]
pub enum Bypass {
    /// pam_kpanel ran and failed, and its own control ignored that.
    Control {
        line: Rc<ModuleLine>,
        result: &'static str,
    },
    /// pam_kpanel never ran: this line ended the stack or jumped past it.
    Skipped { by: Rc<ModuleLine> },
}

/// How many modules' results are varied; the rest are taken to succeed.
const MAX_VARIED: usize = 12;

/// Tries every combination of the other modules' results with pam_kpanel
/// failing, and returns a way the stack still succeeds, if there is one.
fn find_bypass(entries: &[Entry], kind: Kind) -> Option<Bypass> {
    let (kpanel_failures, other_failure): (&[&'static str], &'static str) = match kind {
        Kind::Auth => (&["auth_err", "maxtries", "authinfo_unavail"], "auth_err"),
        Kind::Account => (&["perm_denied", "authinfo_unavail"], "perm_denied"),
        Kind::Session => (&["session_err"], "session_err"),
        Kind::Password => (&["authtok_err"], "authtok_err"),
    };
    let mut all = Vec::new();
    module_ids(entries, &mut all);
    let mut fixed: HashMap<usize, &'static str> = HashMap::new();
    let mut varied = Vec::new();
    for (id, line) in &all {
        match line.name() {
            "pam_deny.so" | "pam_rootok.so" => {
                fixed.insert(*id, other_failure);
            }
            "pam_permit.so" => {
                fixed.insert(*id, "success");
            }
            _ if line.is_kpanel() => {}
            _ if varied.len() < MAX_VARIED => varied.push(*id),
            _ => {
                fixed.insert(*id, "success");
            }
        }
    }
    let mut found: Option<Bypass> = None;
    for kpanel_result in kpanel_failures {
        let mut results = fixed.clone();
        for (id, line) in &all {
            if line.is_kpanel() {
                results.insert(*id, kpanel_result);
            }
        }
        for mask in 0u32..(1u32 << varied.len()) {
            for (bit, id) in varied.iter().enumerate() {
                let ok = mask & (1 << bit) != 0;
                results.insert(*id, if ok { "success" } else { other_failure });
            }
            let mut run = Run {
                results: &results,
                impression: Impression::Undef,
                success: false,
                kpanel_ran: None,
                skipper: None,
            };
            run.entries(entries);
            if !(run.impression == Impression::Positive && run.success) {
                continue;
            }
            match (run.kpanel_ran, run.skipper) {
                (Some(line), _) => {
                    return Some(Bypass::Control {
                        line,
                        result: kpanel_result,
                    })
                }
                (None, Some(by)) => {
                    found.get_or_insert(Bypass::Skipped { by });
                }
                (None, None) => {}
            }
        }
    }
    found
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

    fn stack_of(files: &[(&str, &str)], service: &str, kind: Kind) -> Vec<Entry> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let mut loader = Loader::new(dir.path());
        let entries = loader.stack(&dir.path().join(service), kind, 0);
        assert!(loader.errors.is_empty(), "{:?}", loader.errors);
        entries
    }

    fn bypass(text: &str, kind: Kind) -> Option<Bypass> {
        find_bypass(&stack_of(&[("svc", text)], "svc", kind), kind)
    }

    #[test]
    fn required_after_unix_holds() {
        let text = "auth required pam_unix.so\nauth required pam_kpanel.so otp_only\n";
        assert!(bypass(text, Kind::Auth).is_none());
        let text = "auth requisite pam_kpanel.so\n";
        assert!(bypass(text, Kind::Auth).is_none());
    }

    #[test]
    fn optional_and_sufficient_kpanel_are_bypasses() {
        for control in ["optional", "sufficient", "[success=ok default=ignore]"] {
            let text =
                format!("auth required pam_unix.so\nauth {control} pam_kpanel.so otp_only\n");
            match bypass(&text, Kind::Auth) {
                Some(Bypass::Control { line, .. }) => assert_eq!(line.number, 2),
                other => panic!("{control}: {other:?}"),
            }
        }
    }

    #[test]
    fn sufficient_module_before_kpanel_skips_it() {
        let text = "auth sufficient pam_unix.so\nauth required pam_kpanel.so\n";
        match bypass(text, Kind::Auth) {
            Some(Bypass::Skipped { by }) => assert_eq!(by.number, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debian_common_auth_pattern_holds() {
        let common = "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_kpanel.so otp_only\n";
        let files = [("common-auth", common), ("login", "@include common-auth\n")];
        assert!(find_bypass(&stack_of(&files, "login", Kind::Auth), Kind::Auth).is_none());
        // A jump over pam_kpanel is a way round it.
        let common = "auth [success=2 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_kpanel.so otp_only\nauth required pam_permit.so\n";
        let files = [
            ("common-auth", common),
            ("login", "auth include common-auth\n"),
        ];
        match find_bypass(&stack_of(&files, "login", Kind::Auth), Kind::Auth) {
            Some(Bypass::Skipped { by }) => assert_eq!(by.number, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rootok_is_not_counted() {
        let text = "auth sufficient pam_rootok.so\nauth required pam_unix.so\nauth required pam_kpanel.so otp_only\n";
        assert!(bypass(text, Kind::Auth).is_none());
    }

    #[test]
    fn substack_done_does_not_end_the_parent() {
        let files = [
            ("first", "auth sufficient pam_unix.so\n"),
            (
                "svc",
                "auth substack first\nauth required pam_kpanel.so otp_only\n",
            ),
        ];
        assert!(find_bypass(&stack_of(&files, "svc", Kind::Auth), Kind::Auth).is_none());
    }

    #[test]
    fn account_optional_is_a_bypass() {
        let text = "account required pam_unix.so\naccount optional pam_kpanel.so\n";
        assert!(matches!(
            bypass(text, Kind::Account),
            Some(Bypass::Control { .. })
        ));
    }

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

    #[test]
    fn parses_brackets_continuations_and_comments() {
        let (lines, errors) = parse_file(
            "# comment\n-auth [success=1 default=ignore]   pam_x.so a \\\n b # trailing\nbogus line here\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        match lines.first() {
            Some(RawLine::Line {
                number,
                args,
                control,
                ..
            }) => {
                assert_eq!(*number, 2);
                assert_eq!(args, &["a".to_owned(), "b".to_owned()]);
                match control {
                    Control::Actions(a) => {
                        assert_eq!(a.for_result("success"), Action::Jump(1));
                        assert_eq!(a.for_result("auth_err"), Action::Ignore);
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
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
