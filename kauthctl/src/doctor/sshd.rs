//! sshd settings that would skip pam_kpanel's code prompt or break it.
//!
//! The effective values come from `sshd -T -f FILE` when sshd can run
//! (it needs the host keys); otherwise from reading the file and its
//! `Include`s the way sshd does (the first value of a keyword wins;
//! `Match` blocks apply only to some connections). Line numbers for the
//! fixes always come from reading the files.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pam::SshdStack;
use super::{Finding, Report};

const SSHD: &str = "/usr/sbin/sshd";
/// Where sshd resolves relative `Include` paths.
const SSH_DIR: &str = "/etc/ssh";
const MAX_INCLUDE_DEPTH: usize = 16;

/// The keywords doctor judges, with sshd's defaults and their spelling.
const KEYWORDS: &[(&str, &str, &str)] = &[
    ("usepam", "UsePAM", "no"),
    (
        "kbdinteractiveauthentication",
        "KbdInteractiveAuthentication",
        "yes",
    ),
    ("passwordauthentication", "PasswordAuthentication", "yes"),
    ("pubkeyauthentication", "PubkeyAuthentication", "yes"),
    ("hostbasedauthentication", "HostbasedAuthentication", "no"),
    ("gssapiauthentication", "GSSAPIAuthentication", "no"),
    ("authenticationmethods", "AuthenticationMethods", "any"),
    ("permitrootlogin", "PermitRootLogin", "prohibit-password"),
];

/// Where a setting was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
}

/// What reading the files gave: the first value of each keyword outside
/// `Match` blocks, and the judged keywords that `Match` blocks set.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<String, (String, Origin)>,
    in_match: Vec<(String, Origin)>,
    errors: Vec<String>,
}

fn normalize(keyword: &str) -> String {
    let lower = keyword.to_ascii_lowercase();
    match lower.as_str() {
        // The old name of the same option; whichever comes first wins.
        "challengeresponseauthentication" => "kbdinteractiveauthentication".to_owned(),
        _ => lower,
    }
}

/// `*` and `?` in one path component, as glob(3) matches them.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            wildcard(rest, name)
                || name
                    .split_first()
                    .is_some_and(|(_, n)| wildcard(pattern, n))
        }
        (Some((b'?', rest)), Some((_, n))) => wildcard(rest, n),
        (Some((p, rest)), Some((c, n))) if p == c => wildcard(rest, n),
        _ => false,
    }
}

fn expand_include(arg: &str) -> Vec<PathBuf> {
    let full = if arg.starts_with('/') {
        PathBuf::from(arg)
    } else {
        Path::new(SSH_DIR).join(arg)
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if full.exists() {
            vec![full]
        } else {
            Vec::new()
        };
    }
    let Some(dir) = full.parent() else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|read| {
            read.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    !n.starts_with('.') && wildcard(name.as_bytes(), n.as_bytes())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

pub fn parse(path: &Path) -> Parsed {
    let mut parsed = Parsed::default();
    parse_into(path, false, 0, &mut parsed);
    parsed
}

fn parse_into(path: &Path, inherited_match: bool, depth: usize, parsed: &mut Parsed) {
    if depth > MAX_INCLUDE_DEPTH {
        parsed
            .errors
            .push(format!("{}: Include nests too deep", path.display()));
        return;
    }
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            parsed
                .errors
                .push(format!("cannot read {}: {e}", path.display()));
            return;
        }
    };
    let mut in_match = inherited_match;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, value) = match line.find(|c: char| c.is_whitespace() || c == '=') {
            Some(at) => (
                &line[..at],
                line[at..]
                    .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                    .trim(),
            ),
            None => (line, ""),
        };
        let key = normalize(keyword);
        let origin = Origin {
            file: path.to_owned(),
            line: index + 1,
            text: line.to_owned(),
        };
        match key.as_str() {
            "match" => in_match = true,
            "include" => {
                for arg in value.split_whitespace() {
                    for file in expand_include(arg) {
                        parse_into(&file, in_match, depth + 1, parsed);
                    }
                }
            }
            _ if in_match => {
                if KEYWORDS.iter().any(|(k, _, _)| *k == key) {
                    parsed.in_match.push((key, origin));
                }
            }
            _ => {
                parsed
                    .values
                    .entry(key)
                    .or_insert_with(|| (value.to_owned(), origin));
            }
        }
    }
}

/// `sshd -T`: the effective global settings, or why it could not run.
fn sshd_t(path: &Path) -> Result<HashMap<String, String>, String> {
    if !Path::new(SSHD).exists() {
        return Err(format!("{SSHD} is not installed"));
    }
    let output = Command::new(SSHD)
        .arg("-T")
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().next().unwrap_or("failed").trim().to_owned());
    }
    let mut values = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((key, value)) = line.split_once(' ') {
            values
                .entry(key.to_ascii_lowercase())
                .or_insert_with(|| value.trim().to_owned());
        }
    }
    Ok(values)
}

/// The settings as sshd applies them, and where each was written.
#[derive(Debug)]
pub struct Settings {
    effective: HashMap<String, String>,
    pub parsed: Parsed,
    pub main_file: PathBuf,
}

impl Settings {
    /// From `sshd -T` values (when it ran) and the parsed files.
    pub fn new(
        main_file: &Path,
        sshd_t: Option<HashMap<String, String>>,
        parsed: Parsed,
    ) -> Settings {
        let mut effective = HashMap::new();
        for (key, _, default) in KEYWORDS {
            let value = sshd_t
                .as_ref()
                .and_then(|t| t.get(*key).cloned())
                .or_else(|| parsed.values.get(*key).map(|(v, _)| v.clone()))
                .unwrap_or_else(|| (*default).to_owned());
            effective.insert((*key).to_owned(), value.to_ascii_lowercase());
        }
        Settings {
            effective,
            parsed,
            main_file: main_file.to_owned(),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.effective.get(key).map_or("", String::as_str)
    }

    fn yes(&self, key: &str) -> bool {
        self.get(key) == "yes"
    }

    fn spelling(key: &str) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or("", |(_, spelled, _)| spelled)
    }

    /// A finding located at the line that sets `key`, with the fix "change
    /// it to `Key value`" (or "add" when nothing sets it).
    fn finding(&self, mut finding: Finding, key: &str, new_value: &str) -> Finding {
        let wanted = format!("{} {new_value}", Self::spelling(key));
        let then = "then check with `sshd -t` and apply with `systemctl reload ssh`, keeping this session open";
        match self.parsed.values.get(key) {
            Some((_, origin)) => {
                finding.fix = format!(
                    "in {} line {}, change `{}` to `{wanted}`; {then}",
                    origin.file.display(),
                    origin.line,
                    origin.text
                );
                finding.at(&origin.file, Some(origin.line))
            }
            None => {
                finding.fix = format!(
                    "add `{wanted}` to {} before any Match block (or to a file in sshd_config.d/ that it includes first); {then}",
                    self.main_file.display()
                );
                finding.at(&self.main_file, None)
            }
        }
    }

    /// `AuthenticationMethods` as lists of method names (submethods
    /// dropped), or `None` for `any`.
    fn method_lists(&self) -> Option<Vec<Vec<String>>> {
        let value = self.get("authenticationmethods");
        if value == "any" || value.is_empty() {
            return None;
        }
        Some(
            value
                .split_whitespace()
                .map(|list| {
                    list.split(',')
                        .map(|m| m.split(':').next().unwrap_or(m).to_owned())
                        .collect()
                })
                .collect(),
        )
    }

    fn method_enabled(&self, method: &str) -> bool {
        match method {
            "publickey" => self.yes("pubkeyauthentication"),
            "password" => self.yes("passwordauthentication"),
            "keyboard-interactive" => self.yes("kbdinteractiveauthentication"),
            "hostbased" => self.yes("hostbasedauthentication"),
            "gssapi-with-mic" => self.yes("gssapiauthentication"),
            _ => false,
        }
    }
}

/// Methods that log in without running PAM's auth stack.
const NON_PAM_METHODS: &[&str] = &["publickey", "hostbased", "gssapi-with-mic"];
const KBDINT: &str = "keyboard-interactive";

pub fn check(path: &Path, stack: Option<&SshdStack>, report: &mut Report) {
    if !path.exists() {
        report.ok(
            "sshd",
            format!("{} does not exist: no sshd to check", path.display()),
        );
        return;
    }
    let Some(stack) = stack.filter(|s| s.kpanel_auth) else {
        report.add(
            Finding::warning("sshd", "SSH logins are not asked for a code: sshd's PAM stack does not use pam_kpanel in auth")
                .why("two-factor authentication protects only the services whose PAM stack has pam_kpanel")
                .fix("if SSH should ask for a code, use /usr/share/doc/kauthd/examples/pam.d/sshd-key-then-code (or sshd-unix-then-code) as /etc/pam.d/sshd with the matching sshd_config.d snippet; keep a root session open and test from a second one"),
        );
        return;
    };
    let parsed = parse(path);
    for error in &parsed.errors {
        report.add(
            Finding::warning("sshd", error.clone())
                .why("doctor may have missed settings in that file")
                .at(path, None),
        );
    }
    let (from_sshd, how) = match sshd_t(path) {
        Ok(values) => (Some(values), "sshd -T".to_owned()),
        Err(why) => {
            let environmental = [
                "hostkey",
                "host key",
                "privilege separation",
                "not installed",
            ]
            .iter()
            .any(|w| why.to_ascii_lowercase().contains(w));
            if !environmental {
                report.add(
                    Finding::warning("sshd", format!("sshd -T rejects {}: {why}", path.display()))
                        .why("sshd will not reload or restart with a configuration it rejects; until fixed, a restart leaves the server without SSH")
                        .fix("run `sshd -t` and correct the line it names")
                        .at(path, None),
                );
            }
            (None, format!("reading the files ({why})"))
        }
    };
    let settings = Settings::new(path, from_sshd, parsed);
    let found = judge(&settings, stack);
    let problems = found
        .iter()
        .filter(|f| f.severity == super::Severity::Problem)
        .count();
    for finding in found {
        report.add(finding);
    }
    for (key, origin) in &settings.parsed.in_match {
        report.add(
            Finding::warning(
                "sshd",
                format!("a Match block sets {} for some connections: `{}`", Settings::spelling(key), origin.text),
            )
            .why("doctor judges the global settings; the connections that block matches may skip or break the code prompt")
            .fix("check that block against the findings above, or remove the setting from it")
            .at(&origin.file, Some(origin.line)),
        );
    }
    if problems == 0 {
        report.ok(
            "sshd",
            format!(
                "UsePAM {}, KbdInteractiveAuthentication {}, PasswordAuthentication {}, AuthenticationMethods {} (from {how})",
                settings.get("usepam"),
                settings.get("kbdinteractiveauthentication"),
                settings.get("passwordauthentication"),
                settings.get("authenticationmethods"),
            ),
        );
    }
}

/// The findings for settings that bypass or break the code prompt.
pub fn judge(s: &Settings, stack: &SshdStack) -> Vec<Finding> {
    let mut out = Vec::new();
    let stack_file = stack.file.display().to_string();
    if !s.yes("usepam") {
        out.push(
            s.finding(
                Finding::problem(
                    "sshd",
                    format!(
                        "UsePAM is {}: sshd never runs {stack_file}",
                        s.get("usepam")
                    ),
                )
                .why("without PAM, pam_kpanel is never asked: SSH logins need no code at all"),
                "usepam",
                "yes",
            ),
        );
    }
    if !s.yes("kbdinteractiveauthentication") {
        out.push(s.finding(
            Finding::problem("sshd", "KbdInteractiveAuthentication is no (or its old name ChallengeResponseAuthentication)")
                .why("the \"Verification code: \" prompt reaches the SSH client only through keyboard-interactive: users who must give a code cannot log in over SSH, and a key alone skips the code for the others"),
            "kbdinteractiveauthentication",
            "yes",
        ));
    }
    let recommended = if stack.code_only {
        "publickey,keyboard-interactive"
    } else {
        "keyboard-interactive"
    };
    match s.method_lists() {
        None => {
            let skipping: Vec<&str> = NON_PAM_METHODS
                .iter()
                .copied()
                .filter(|m| s.method_enabled(m))
                .collect();
            if !skipping.is_empty() {
                out.push(s.finding(
                    Finding::problem(
                        "sshd",
                        format!("AuthenticationMethods is any: a login by {} alone never runs the PAM auth stack, so no code is asked", skipping.join(" or ")),
                    )
                    .why("sshd runs PAM's auth stack (and so pam_kpanel's prompt) only for keyboard-interactive; every other method logs in without it"),
                    "authenticationmethods",
                    recommended,
                ));
            }
        }
        Some(lists) => {
            for list in &lists {
                if !list.iter().all(|m| s.method_enabled(m)) {
                    continue; // a list that cannot complete lets no one in
                }
                let joined = list.join(",");
                if !list.iter().any(|m| m == KBDINT) {
                    out.push(s.finding(
                        Finding::problem(
                            "sshd",
                            format!("AuthenticationMethods allows `{joined}`, which never asks for the code"),
                        )
                        .why("only keyboard-interactive runs the PAM auth stack where pam_kpanel asks for the code"),
                        "authenticationmethods",
                        recommended,
                    ));
                } else if stack.code_only && list.iter().all(|m| m == KBDINT) {
                    out.push(s.finding(
                        Finding::problem(
                            "sshd",
                            format!("AuthenticationMethods allows `{joined}` alone, but {stack_file} asks only for the code (otp_only)"),
                        )
                        .why("with that stack the key is the first factor; keyboard-interactive alone logs in with the code only"),
                        "authenticationmethods",
                        "publickey,keyboard-interactive",
                    ));
                }
            }
        }
    }
    let password_usable = s.yes("passwordauthentication")
        && s.method_lists()
            .is_none_or(|lists| lists.iter().any(|l| l.iter().any(|m| m == "password")));
    if password_usable {
        out.push(s.finding(
            Finding::problem("sshd", "PasswordAuthentication is yes alongside the keyboard-interactive code prompt")
                .why("sshd's password method answers every PAM prompt with the one password the client sent, so it can never give a code: those logins fail, and each counts toward kauthd's lockout"),
            "passwordauthentication",
            "no",
        ));
    }
    let root = s.get("permitrootlogin");
    let kbdint_required = s
        .method_lists()
        .is_some_and(|lists| lists.iter().all(|l| l.iter().any(|m| m == KBDINT)));
    if kbdint_required
        && matches!(
            root,
            "prohibit-password" | "without-password" | "forced-commands-only"
        )
    {
        out.push(s.finding(
            Finding::warning("sshd", format!("PermitRootLogin {root} forbids keyboard-interactive for root, which AuthenticationMethods requires"))
                .why("root can no longer log in over SSH; that is fine if administrators log in as themselves and use sudo, but check before closing your session (with `PermitRootLogin yes`, AuthenticationMethods still demands the key and the code)"),
            "permitrootlogin",
            "yes",
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn settings(text: &str) -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sshd_config");
        fs::write(&path, text).unwrap();
        let parsed = parse(&path);
        let s = Settings::new(&path, None, parsed);
        (dir, s)
    }

    fn stack(code_only: bool) -> SshdStack {
        SshdStack {
            file: PathBuf::from("/etc/pam.d/sshd"),
            kpanel_auth: true,
            code_only,
        }
    }

    fn problems(text: &str, code_only: bool) -> Vec<String> {
        let (_dir, s) = settings(text);
        judge(&s, &stack(code_only))
            .into_iter()
            .filter(|f| f.severity == super::super::Severity::Problem)
            .map(|f| f.what)
            .collect()
    }

    const KEY_THEN_CODE: &str = "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n";

    #[test]
    fn the_shipped_snippets_are_clean() {
        assert!(problems(KEY_THEN_CODE, true).is_empty());
        let text = "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods keyboard-interactive\n";
        assert!(problems(text, false).is_empty());
    }

    #[test]
    fn debian_defaults_are_reported() {
        // Debian's sshd_config: UsePAM yes, KbdInteractiveAuthentication no.
        let found = problems("KbdInteractiveAuthentication no\nUsePAM yes\n", false);
        assert!(
            found
                .iter()
                .any(|w| w.contains("KbdInteractiveAuthentication")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|w| w.contains("AuthenticationMethods is any")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|w| w.contains("PasswordAuthentication")),
            "{found:?}"
        );
    }

    #[test]
    fn first_value_wins_and_old_name_counts() {
        let (_dir, s) =
            settings("ChallengeResponseAuthentication no\nKbdInteractiveAuthentication yes\n");
        assert_eq!(s.get("kbdinteractiveauthentication"), "no");
        let f = s.finding(
            Finding::problem("sshd", "x"),
            "kbdinteractiveauthentication",
            "yes",
        );
        assert_eq!(f.line, Some(1));
        assert!(
            f.fix.contains("ChallengeResponseAuthentication no"),
            "{}",
            f.fix
        );
    }

    #[test]
    fn usepam_no_and_key_alone_are_reported() {
        let text = KEY_THEN_CODE.replace("UsePAM yes", "UsePAM no");
        assert_eq!(problems(&text, true).len(), 1);
        let text = KEY_THEN_CODE.replace(
            "publickey,keyboard-interactive",
            "publickey keyboard-interactive,publickey",
        );
        let found = problems(&text, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("`publickey`"));
        let text = KEY_THEN_CODE.replace("publickey,keyboard-interactive", "keyboard-interactive");
        let found = problems(&text, true);
        assert!(
            found.iter().any(|w| w.contains("asks only for the code")),
            "{found:?}"
        );
    }

    #[test]
    fn match_blocks_are_not_global() {
        let (_dir, s) = settings("UsePAM yes\nMatch User backup\n  UsePAM no\n");
        assert_eq!(s.get("usepam"), "yes");
        assert_eq!(s.parsed.in_match.len(), 1);
    }

    #[test]
    fn includes_are_followed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        fs::create_dir(&d).unwrap();
        fs::write(
            d.join("10-kauthd.conf"),
            "KbdInteractiveAuthentication yes\n",
        )
        .unwrap();
        fs::write(d.join("20-other.conf"), "KbdInteractiveAuthentication no\n").unwrap();
        fs::write(d.join("x.txt"), "UsePAM no\n").unwrap();
        let main = dir.path().join("sshd_config");
        fs::write(
            &main,
            format!(
                "Include {}/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n",
                d.display()
            ),
        )
        .unwrap();
        let parsed = parse(&main);
        let s = Settings::new(&main, None, parsed);
        assert_eq!(s.get("kbdinteractiveauthentication"), "yes");
        assert_eq!(s.get("usepam"), "yes");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"a.conf"));
        assert!(!wildcard(b"*.conf", b"a.conf.bak"));
        assert!(wildcard(b"a?c", b"abc"));
    }
}
