//! The administration side of the login experience: `user unlock` lifts
//! the locks of the hosts the user failed from, `kauthctl locks` lists and
//! lifts locks, turning off 2FA that the policy requires needs
//! confirming, `2fa status` and `policy show` tell users what applies to
//! them, `sessions sign-out` takes id prefixes and says when it ends the
//! session it runs in, and policy overrides refuse unknown names.
//!
//! These tests need root: login conversations are for root and PAM
//! callers, kauthctl runs as root or as `nobody`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use kauth_tests::daemon::{json, running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{
    login_code_from, now, oathtool_at_step, step_with_margin, wrong_code_near,
};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-admin";
const NOBODY: u32 = 65534;
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Three failures lock a name or a host for 15 minutes.
const LIMITS: &str = "[ratelimit]\nmax_failures = 3\nwindow_seconds = 300\nlock_seconds = 900\n";

fn as_nobody(daemon: &TestDaemon, args: &[&str]) -> Output {
    daemon.ctl_with(args, None, Some(NOBODY))
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

fn refused(out: &Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should be refused: {}{}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

/// One code-only login through the real libpam and pam_kpanel.
fn pam_code_login(conf: &PamConfDir, user: &str, code: &str, rhost: &str) -> HarnessRun {
    let run = Harness::new(HARNESS, conf, SERVICE)
        .user(user)
        .rhost(rhost)
        .answer(code)
        .run();
    run.assert_completed();
    run
}

#[test]
#[ignore = "needs root"]
fn user_unlock_lifts_the_host_lock_and_a_fresh_code_from_that_host_then_works() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start(LIMITS);
    daemon.import_secret("ann", SECRET);
    daemon.import_secret("bob", SECRET);
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "otp_only");
    let host = "203.0.113.7";
    let step = step_with_margin(12);
    let wrong = wrong_code_near(SECRET, step, 2);

    // ann fails once and bob twice from the host: the host is locked,
    // neither account is.
    for user in ["ann", "bob", "bob"] {
        let run = pam_code_login(&conf, user, &wrong, host);
        assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    }
    let right = oathtool_at_step(SECRET, step);
    let locked = pam_code_login(&conf, "ann", &right, host);
    assert_eq!(
        locked.code("auth"),
        Some("PAM_MAXTRIES"),
        "{}",
        locked.stdout
    );

    // The lockout is in ann's activity too, not only under user `-`.
    let activity = json(&daemon.ctl(&["--json", "activity", "--user", "ann"]));
    let lockout = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "lockout")
        .unwrap_or_else(|| panic!("no lockout in ann's activity: {activity}"));
    assert_eq!(lockout["rhost"], host, "{lockout}");

    let out = daemon.ctl(&["user", "unlock", "ann"]);
    ok(&out, "user unlock ann");
    let said = stdout(&out);
    assert!(
        said.contains("lifted the locks on the hosts ann failed from") && said.contains(host),
        "{said}"
    );

    let fresh = pam_code_login(&conf, "ann", &right, host);
    assert_eq!(fresh.code("auth"), Some("PAM_SUCCESS"), "{}", fresh.stdout);
}

#[test]
#[ignore = "needs root"]
fn locks_lists_account_and_host_locks_until_when_and_clear_lifts_a_host() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start(LIMITS);
    daemon.import_secret("carol", SECRET);
    daemon.import_secret("dave", SECRET);
    ok(&daemon.ctl(&["user", "lock", "dave"]), "user lock dave");
    let host = "198.51.100.23";
    let step = step_with_margin(12);
    let before = i64::try_from(now()).unwrap();
    for _ in 0..3 {
        let r = login_code_from(
            &daemon.socket,
            "carol",
            &wrong_code_near(SECRET, step, 2),
            host,
        );
        assert!(!r.succeeded());
    }

    let doc = json(&daemon.ctl(&["--json", "locks"]));
    let locks = doc["locks"].as_array().unwrap();
    let find = |kind: &str, name: &str| {
        locks
            .iter()
            .find(|l| l["kind"] == kind && l["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} lock on {name}: {doc}"))
            .clone()
    };
    for (kind, name) in [("account", "carol"), ("host", host)] {
        let until = find(kind, name)["until"].as_i64().unwrap();
        assert!(
            (before + 900..=before + 960).contains(&until),
            "{kind} {name} locked until {until}, the failures began at {before}"
        );
    }
    let dave = find("account", "dave");
    assert_eq!(dave["by_root"], true, "{dave}");
    assert!(dave["until"].is_null(), "{dave}");

    let text = stdout(&daemon.ctl(&["locks"]));
    assert!(
        text.contains(host) && text.contains("carol") && text.contains("locked by root"),
        "{text}"
    );
    let out = as_nobody(&daemon, &["locks"]);
    assert!(refused(&out, "locks as nobody").contains("only root"));

    ok(
        &daemon.ctl(&["locks", "clear", "--host", host]),
        "locks clear",
    );
    let doc = json(&daemon.ctl(&["--json", "locks"]));
    assert!(
        !doc["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == host),
        "{doc}"
    );
    let again = daemon.ctl(&["locks", "clear", "--host", host]);
    assert!(refused(&again, "a second clear").contains("is not locked"));
}

#[test]
#[ignore = "needs root"]
fn turning_off_required_two_factor_needs_force_and_says_what_the_next_login_does() {
    assert!(running_as_root(), "run as root (tests/run does)");
    // enroll_at_login defaults to true; with it off, the login is refused.
    for (config, next_login) in [
        (
            "",
            "ann will be asked to set up a new code at the next login",
        ),
        (
            "[policy]\nenroll_at_login = false\n",
            "the next login of ann will be refused",
        ),
    ] {
        let daemon = TestDaemon::start(config);
        daemon.import_secret("ann", SECRET);
        let out = daemon.ctl(&["2fa", "disable", "--user", "ann"]);
        let why = refused(&out, "disable without --force");
        assert!(
            why.contains("requires two-factor authentication of ann")
                && why.contains(next_login)
                && why.contains("--force"),
            "{why}"
        );
        let status = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
        assert_eq!(status["enabled"], true, "still on after the refusal");
    }

    let daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET);
    ok(
        &daemon.ctl(&["2fa", "disable", "--user", "ann", "--force"]),
        "disable --force",
    );
    let status = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    assert_eq!(status["enabled"], false);
    let activity = json(&daemon.ctl(&["--json", "activity", "--user", "ann"]));
    let disable = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "disable")
        .unwrap_or_else(|| panic!("no disable event: {activity}"))
        .clone();
    assert!(
        disable["detail"].as_str().unwrap().ends_with("by root"),
        "{disable}"
    );

    // Not required: no confirmation needed.
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    daemon.import_secret("ann", SECRET);
    ok(
        &daemon.ctl(&["2fa", "disable", "--user", "ann"]),
        "disable of a user the policy does not require",
    );
}

#[test]
#[ignore = "needs root"]
fn status_says_what_is_required_and_users_see_their_own_policy_only() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start(
        "[policy]\nrequire = \"all\"\ndeadline = \"2020-01-01\"\nexempt_services = [\"kpanel-api\"]\n",
    );
    ok(&daemon.ctl(&["user", "add", "ann"]), "user add ann");

    let doc = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    let policy = &doc["policy"];
    assert_eq!(policy["required"], true, "{doc}");
    assert_eq!(policy["required_from"], "2020-01-01", "{doc}");
    let decision = |service: &str| {
        policy["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == service)
            .unwrap_or_else(|| panic!("no {service} in {doc}"))["decision"]
            .clone()
    };
    assert_eq!(decision("sshd"), "enroll");
    assert_eq!(decision("kpanel-api"), "skip");
    let text = stdout(&daemon.ctl(&["2fa", "status", "--user", "ann"]));
    assert!(
        text.contains("required: yes, since 2020-01-01") && text.contains("on sshd"),
        "{text}"
    );

    // A plain user sees their own effective policy, and nobody else's.
    let own = as_nobody(&daemon, &["--json", "policy", "show"]);
    let own = json(&own);
    assert_eq!(own["user"]["name"], "nobody", "{own}");
    assert_eq!(own["user"]["required"], true, "{own}");
    let same = as_nobody(&daemon, &["policy", "show", "--user", "nobody"]);
    ok(&same, "policy show --user nobody as nobody");
    let other = as_nobody(&daemon, &["policy", "show", "--user", "ann"]);
    assert!(refused(&other, "policy show of ann as nobody")
        .contains("only see the policy for your own account"));
    let status = json(&as_nobody(&daemon, &["--json", "2fa", "status"]));
    assert_eq!(status["policy"]["required"], true, "{status}");

    // Without enrollment at login, the login is refused.
    let daemon = TestDaemon::start("[policy]\nrequire = \"all\"\nenroll_at_login = false\n");
    ok(&daemon.ctl(&["user", "add", "ann"]), "user add ann");
    let doc = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    let sshd = doc["policy"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "sshd")
        .unwrap_or_else(|| panic!("no sshd in {doc}"))
        .clone();
    assert_eq!(sshd["decision"], "deny", "{doc}");
}

#[test]
#[ignore = "needs root"]
fn policy_overrides_refuse_names_that_are_no_user() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    for rule in ["require", "exempt"] {
        let out = daemon.ctl(&["policy", rule, "--user", "nosuchuser"]);
        let why = refused(&out, "an override for an unknown name");
        assert!(why.contains("there is no user nosuchuser"), "{why}");
    }
    ok(
        &daemon.ctl(&["policy", "require", "--user", "root"]),
        "a system user",
    );
    ok(&daemon.ctl(&["user", "add", "panelonly"]), "user add");
    ok(
        &daemon.ctl(&["policy", "exempt", "--user", "panelonly"]),
        "a kauthd account",
    );
    let doc = json(&daemon.ctl(&["--json", "policy", "show"]));
    let overrides = doc["overrides"].to_string();
    assert!(!overrides.contains("nosuchuser"), "{overrides}");
}

/// The start time of process `pid` (clock ticks since boot), as kauthd
/// records it with a session.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(19).unwrap().parse().unwrap()
}

/// Open panel sessions of ann with chosen ids, written into the stopped
/// daemon's database: `(id, pid, pid start time)`.
fn insert_sessions(daemon: &TestDaemon, sessions: &[(String, u32, u64)]) {
    const SCRIPT: &str = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
now = int(time.time())
with db:
    for row in sys.argv[2:]:
        sid, pid, start = row.split(",")
        db.execute("INSERT INTO sessions (id, user, service, rhost, tty, pid, pid_start, started) "
                   "VALUES (?, 'ann', 'kpanel', '192.0.2.1', NULL, ?, ?, ?)",
                   (sid, int(pid), int(start), now))
"#;
    let rows: Vec<String> = sessions
        .iter()
        .map(|(id, pid, start)| format!("{id},{pid},{start}"))
        .collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(daemon.state_dir.join("kauthd.sqlite"))
        .args(&rows)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "insert sessions: {}", stderr(&out));
}

fn valid(daemon: &TestDaemon, id: &str) -> bool {
    daemon.ctl(&["sessions", "check", id]).status.success()
}

#[test]
#[ignore = "needs root"]
fn sign_out_takes_a_unique_prefix_and_says_when_all_includes_this_session() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let mut daemon = TestDaemon::start("");
    daemon.stop();
    let twin_a = format!("abcdef01{}", "0".repeat(24));
    let twin_b = format!("abcdef01{}", "f".repeat(24));
    let single = format!("12345678{}", "a".repeat(24));
    // A session whose process is this test: kauthctl runs inside it.
    let here = format!("99999999{}", "0".repeat(24));
    let me = std::process::id();
    insert_sessions(
        &daemon,
        &[
            (twin_a.clone(), 1, 0),
            (twin_b.clone(), 1, 0),
            (single.clone(), 1, 0),
            (here.clone(), me, start_time(me)),
        ],
    );
    daemon.restart();

    let why = refused(
        &daemon.ctl(&["sessions", "sign-out", "abcdef01"]),
        "an ambiguous prefix",
    );
    assert!(
        why.contains("ambiguous") && why.contains(&twin_a) && why.contains(&twin_b),
        "{why}"
    );
    let why = refused(
        &daemon.ctl(&["sessions", "sign-out", "0badc0de"]),
        "an unknown prefix",
    );
    assert!(why.contains("no open session 0badc0de"), "{why}");
    let why = refused(
        &daemon.ctl(&["sessions", "sign-out", "1234"]),
        "a short prefix",
    );
    assert!(why.contains("8 or more hex digits"), "{why}");
    assert!(valid(&daemon, &twin_a) && valid(&daemon, &twin_b));

    let out = daemon.ctl(&["sessions", "sign-out", "12345678"]);
    ok(&out, "sign-out by a unique prefix");
    assert!(stdout(&out).contains(&single), "{}", stdout(&out));
    assert!(!valid(&daemon, &single));
    ok(
        &daemon.ctl(&["sessions", "sign-out", "ABCDEF01FFFF"]),
        "a longer prefix in capitals",
    );
    assert!(!valid(&daemon, &twin_b) && valid(&daemon, &twin_a));

    // --all without --yes, with no terminal: refused, nothing ended.
    let out = daemon.ctl(&["sessions", "sign-out", "--all", "--user", "ann"]);
    let why = refused(&out, "sign-out --all without --yes");
    assert!(
        why.contains("2 sessions, including the one this command runs in") && why.contains("--yes"),
        "{why}"
    );
    assert!(valid(&daemon, &twin_a) && valid(&daemon, &here));

    let out = daemon.ctl(&["sessions", "sign-out", "--all", "--user", "ann", "--yes"]);
    ok(&out, "sign-out --all --yes");
    assert!(
        stdout(&out).contains("signed out 2 sessions, including the one this command runs in"),
        "{}",
        stdout(&out)
    );
    assert!(!valid(&daemon, &twin_a) && !valid(&daemon, &here));
}

/// Runs kauthctl on a terminal (util-linux `script` gives it a pty) with
/// `answer` typed in; returns the exit code and what the terminal showed.
fn ctl_at_terminal(daemon: &TestDaemon, args: &[&str], answer: &str) -> (Option<i32>, String) {
    let kauthctl = kauth_tests::daemon::binary("kauthctl");
    let command = std::iter::once(kauthctl.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("KAUTHD_SOCKET", &daemon.socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stdout(&out) + &stderr(&out))
}

#[test]
#[ignore = "needs root"]
fn at_a_terminal_disable_and_sign_out_all_ask_first() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET);
    let status = |daemon: &TestDaemon| {
        json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]))["enabled"].clone()
    };

    let (code, shown) = ctl_at_terminal(&daemon, &["2fa", "disable", "--user", "ann"], "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("asked to set up a new code") && shown.contains("off anyway? [y/N]"),
        "{shown}"
    );
    assert_eq!(status(&daemon), true, "answered no: {shown}");
    let (code, shown) = ctl_at_terminal(&daemon, &["2fa", "disable", "--user", "ann"], "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(status(&daemon), false, "answered yes: {shown}");

    daemon.stop();
    let here = format!("99999999{}", "0".repeat(24));
    let other = format!("88888888{}", "0".repeat(24));
    let me = std::process::id();
    insert_sessions(
        &daemon,
        &[(here.clone(), me, start_time(me)), (other.clone(), 1, 0)],
    );
    daemon.restart();
    let args = ["sessions", "sign-out", "--all", "--user", "ann"];
    let (code, shown) = ctl_at_terminal(&daemon, &args, "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("This signs out 2 sessions, including the one this command runs in"),
        "{shown}"
    );
    assert!(valid(&daemon, &here) && valid(&daemon, &other));
    let (code, shown) = ctl_at_terminal(&daemon, &args, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(!valid(&daemon, &here) && !valid(&daemon, &other), "{shown}");
}
