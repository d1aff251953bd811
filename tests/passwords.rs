//! Passwords against the real kauthd: a change through the real libpam
//! (`pam_chauthtok`), refusals of weak passwords with their reason, reset
//! tokens (once, and not after their lifetime), self-service with the
//! current password, `--sign-out-others`, and the daemon's peak memory
//! under a burst of logins (argon2 runs are bounded to one per core).
//!
//! Needs `cargo build --workspace` first (the PAM module and the harness).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kauth_proto::{Request, Response};
use kauth_tests::daemon::{running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{self, connect, login_password};
use kauth_tests::pam::{Harness, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-test";

const OLD: &str = "vq7-lantern-kettle-bramble";
const NEW: &str = "ochre-tundra-pivot-marmalade";

/// Users without 2FA log in with the password alone.
const NO_2FA: &str = "[policy]\nrequire = \"none\"\n";

fn start(extra: &str) -> TestDaemon {
    TestDaemon::start(&format!("{extra}\n{NO_2FA}"))
}

fn add_user(daemon: &TestDaemon, name: &str, password: &str) {
    daemon.add_account(name, password);
}

fn logs_in(daemon: &TestDaemon, user: &str, password: &str) -> bool {
    login_password(&daemon.socket, user, password, "").succeeded()
}

/// `kauthctl user passwd NAME --password-stdin` as root.
fn root_sets(daemon: &TestDaemon, name: &str, password: &str) -> std::process::Output {
    daemon.ctl_with(
        &["user", "passwd", name, "--password-stdin"],
        Some(&format!("{password}\n")),
        None,
    )
}

fn chauthtok(daemon: &TestDaemon, user: &str, answers: &[&str]) -> kauth_tests::pam::HarnessRun {
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "");
    let mut harness = Harness::new(HARNESS, &conf, SERVICE)
        .user(user)
        .op("chauthtok");
    for answer in answers {
        harness = harness.answer(answer);
    }
    let run = harness.run();
    run.assert_completed();
    run
}

#[test]
fn pam_chauthtok_changes_the_password() {
    let daemon = start("");
    add_user(&daemon, "ann", OLD);
    assert!(logs_in(&daemon, "ann", OLD));

    let run = chauthtok(&daemon, "ann", &[OLD, NEW, NEW]);
    assert_eq!(run.code("chauthtok"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(
        run.prompts(),
        [
            "Current password: ",
            "New password: ",
            "Retype new password: "
        ]
    );

    assert!(
        !logs_in(&daemon, "ann", OLD),
        "the old password still works"
    );
    assert!(
        logs_in(&daemon, "ann", NEW),
        "the new password does not work"
    );

    // And through the real libpam's auth step too.
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "");
    let run = Harness::new(HARNESS, &conf, SERVICE)
        .user("ann")
        .answer(NEW)
        .run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
}

#[test]
fn pam_chauthtok_with_a_wrong_current_password_changes_nothing() {
    let daemon = start("");
    add_user(&daemon, "ann", OLD);
    let run = chauthtok(&daemon, "ann", &["not-the-password-at-all", NEW, NEW]);
    assert_eq!(
        run.code("chauthtok"),
        Some("PAM_AUTHTOK_ERR"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.prompts(),
        ["Current password: "],
        "asked on after a wrong password"
    );
    assert!(
        run.errors()
            .iter()
            .any(|e| e.contains("current password is wrong")),
        "{}",
        run.stdout
    );
    assert!(logs_in(&daemon, "ann", OLD));
    assert!(!logs_in(&daemon, "ann", NEW));

    // Two different new passwords: nothing changes either.
    let run = chauthtok(&daemon, "ann", &[OLD, NEW, "ochre-tundra-pivot-marmalad"]);
    assert_eq!(
        run.code("chauthtok"),
        Some("PAM_AUTHTOK_ERR"),
        "{}",
        run.stdout
    );
    assert!(
        run.errors().iter().any(|e| e.contains("differ")),
        "{}",
        run.stdout
    );
    assert!(logs_in(&daemon, "ann", OLD));
}

#[test]
fn pam_chauthtok_shows_why_a_weak_password_is_refused() {
    let daemon = start("[password]\nmin_length = 10\n");
    add_user(&daemon, "ann", OLD);
    let run = chauthtok(&daemon, "ann", &[OLD, "password123", "password123"]);
    assert_eq!(
        run.code("chauthtok"),
        Some("PAM_AUTHTOK_ERR"),
        "{}",
        run.stdout
    );
    let errors = run.errors().join(" ");
    assert!(errors.contains("too easy to guess"), "{errors}");
    assert!(logs_in(&daemon, "ann", OLD));
}

#[test]
fn common_guessable_and_short_passwords_are_refused_with_a_reason() {
    // min_length 10, so that the first two are refused for what they are,
    // not for their length (both have 11 characters).
    let daemon = start("[password]\nmin_length = 10\n");
    add_user(&daemon, "ann", OLD);
    for (password, why) in [
        ("password123", "common"),
        ("Summer2025!", "too easy to guess"),
        ("Tr7#kq-x9", "too short: use at least 10 characters"),
        ("my-ann-kettle-bramble-79", "contains the user name"),
    ] {
        let out = root_sets(&daemon, "ann", password);
        assert_eq!(out.status.code(), Some(1), "{password} was accepted");
        let message = stderr(&out);
        assert!(message.contains(why), "{password}: {message}");
        assert!(
            logs_in(&daemon, "ann", OLD),
            "{password} replaced the password"
        );
    }
    let out = root_sets(&daemon, "ann", NEW);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logs_in(&daemon, "ann", NEW));
}

#[test]
fn reject_common_false_keeps_only_the_length_rule() {
    let daemon = start("[password]\nreject_common = false\n");
    add_user(&daemon, "ann", OLD);
    let out = root_sets(&daemon, "ann", "password1234");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = root_sets(&daemon, "ann", "password1");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
}

fn reset_token(daemon: &TestDaemon, user: &str) -> (String, i64) {
    let out = daemon.ctl(&["--json", "reset-token", "--user", user]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        doc["token"].as_str().unwrap().to_owned(),
        doc["expires"].as_i64().unwrap(),
    )
}

fn reset_with(daemon: &TestDaemon, user: &str, token: &str, new: &str) -> std::process::Output {
    daemon.ctl_with(
        &[
            "passwd",
            "--user",
            user,
            "--reset-token",
            token,
            "--password-stdin",
        ],
        Some(&format!("{new}\n")),
        None,
    )
}

#[test]
fn a_reset_token_works_once() {
    let daemon = start("");
    add_user(&daemon, "ann", OLD);
    let (token, expires) = reset_token(&daemon, "ann");
    let now = kauth_tests::login::now() as i64;
    assert!(
        (3590..=3610).contains(&(expires - now)),
        "valid for {} s",
        expires - now
    );

    let wrong = format!("{}0", &token[..token.len() - 1]);
    let wrong = if wrong == token {
        format!("{}1", &token[..token.len() - 1])
    } else {
        wrong
    };
    let out = reset_with(&daemon, "ann", &wrong, NEW);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reset token"), "{}", stderr(&out));

    let out = reset_with(&daemon, "ann", &token, NEW);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logs_in(&daemon, "ann", NEW));
    assert!(!logs_in(&daemon, "ann", OLD));

    let again = "lilac-furnace-quartz-meadow";
    let out = reset_with(&daemon, "ann", &token, again);
    assert_eq!(out.status.code(), Some(1), "a token worked twice");
    assert!(
        stderr(&out).contains("already used or expired"),
        "{}",
        stderr(&out)
    );
    assert!(logs_in(&daemon, "ann", NEW));

    // The token can come on standard input, out of sight of `ps`.
    let (token, _) = reset_token(&daemon, "ann");
    let out = daemon.ctl_with(
        &[
            "passwd",
            "--user",
            "ann",
            "--reset-token",
            "-",
            "--password-stdin",
        ],
        Some(&format!("{token}\n{again}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logs_in(&daemon, "ann", again));

    // The activity log says what happened and never holds the token.
    let out = daemon.ctl(&["--json", "activity", "--user", "ann"]);
    let activity = stdout(&out);
    assert!(activity.contains("reset_token_created"), "{activity}");
    assert!(activity.contains("password_reset"), "{activity}");
    assert!(!activity.contains(&token), "a token in the activity log");
    assert!(
        !daemon.stderr().contains(&token),
        "a token in the daemon's log"
    );
    assert!(
        !daemon.stderr().contains(NEW),
        "a password in the daemon's log"
    );
}

#[test]
fn a_reset_token_stops_working_after_its_lifetime() {
    let daemon = start("[password]\nreset_token_seconds = 2\n");
    add_user(&daemon, "ann", OLD);
    let (token, expires) = reset_token(&daemon, "ann");
    assert!(expires - kauth_tests::login::now() as i64 <= 2);
    std::thread::sleep(Duration::from_millis(3500));
    let out = reset_with(&daemon, "ann", &token, NEW);
    assert_eq!(out.status.code(), Some(1), "an expired token worked");
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(logs_in(&daemon, "ann", OLD));
    assert!(!logs_in(&daemon, "ann", NEW));
}

#[test]
#[ignore = "needs root"]
fn only_root_and_pam_callers_make_reset_tokens() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = start("");
    add_user(&daemon, "ann", OLD);
    let out = daemon.ctl_with(&["reset-token", "--user", "ann"], None, Some(65534));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only root"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn a_user_changes_their_own_password_with_the_current_one() {
    assert!(running_as_root(), "run as root (tests/run does)");
    const NOBODY: u32 = 65534;
    let daemon = start("");
    let out = daemon.ctl_with(
        &[
            "user",
            "add",
            "nobody",
            "--uid",
            "65534",
            "--password-stdin",
        ],
        Some(&format!("{OLD}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    add_user(&daemon, "ann", OLD);
    let passwd = |args: &[&str], input: &str| daemon.ctl_with(args, Some(input), Some(NOBODY));

    let out = passwd(
        &["passwd", "--password-stdin"],
        &format!("wrong-password-here\n{NEW}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("current password is wrong"),
        "{}",
        stderr(&out)
    );

    let out = passwd(
        &["passwd", "--user", "ann", "--password-stdin"],
        &format!("{OLD}\n{NEW}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only manage your own"),
        "{}",
        stderr(&out)
    );
    let out = passwd(
        &["user", "passwd", "ann", "--password-stdin"],
        &format!("{NEW}\n"),
    );
    assert_eq!(out.status.code(), Some(1), "nobody set ann's password");

    let out = passwd(&["passwd", "--password-stdin"], &format!("{OLD}\n{NEW}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logs_in(&daemon, "nobody", NEW));
    assert!(logs_in(&daemon, "ann", OLD));

    // Without a terminal and without --password-stdin: a usage error.
    let out = daemon.ctl_with(&["passwd"], Some(""), Some(NOBODY));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn session_valid(daemon: &TestDaemon, id: &str) -> bool {
    login::session_valid(&mut connect(&daemon.socket), id)
}

#[test]
fn sign_out_others_keeps_the_session_the_command_runs_in() {
    let daemon = start("");
    add_user(&daemon, "ann", OLD);
    // Another session, opened by another process (the PAM harness).
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "");
    let run = Harness::new(HARNESS, &conf, SERVICE)
        .user("ann")
        .op("open")
        .run();
    run.assert_completed();
    let other = run.session_id().expect("session opened").to_owned();
    // This test process's own session: kauthctl runs as its child.
    let mut client = connect(&daemon.socket);
    let request = Request::SessionOpen {
        user: "ann".into(),
        service: "kpanel".into(),
        rhost: None,
        tty: None,
        client: None,
    };
    let Response::SessionOpened { id: mine } = client.call(&request).unwrap() else {
        panic!("no session");
    };

    // A plain change leaves every session alone.
    let out = daemon.ctl_with(
        &["passwd", "--user", "ann", "--password-stdin"],
        Some(&format!("{OLD}\n{NEW}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(session_valid(&daemon, &other) && session_valid(&daemon, &mine));

    let out = daemon.ctl_with(
        &[
            "--json",
            "passwd",
            "--user",
            "ann",
            "--sign-out-others",
            "--password-stdin",
        ],
        Some(&format!("{NEW}\n{OLD}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["signed_out"], serde_json::json!([other]));
    assert!(!session_valid(&daemon, &other));
    assert!(session_valid(&daemon, &mine));
    assert!(logs_in(&daemon, "ann", OLD));
}

/// VmHWM (peak resident memory) of a process, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 200 logins at once (known users with right and wrong passwords, and
/// unknown users): every one is answered, and kauthd's peak memory stays
/// under 64 MiB plus one argon2 memory cost per core. `max_connections`
/// is raised to 256 so that all 200 really reach the daemon at once
/// instead of some being turned away as busy. The memory cost is the
/// default; one pass instead of two halves the time the last login waits
/// in line (memory does not depend on it).
#[test]
fn a_burst_of_200_logins_stays_within_the_memory_bound() {
    const LOGINS: usize = 200;
    const ARGON2_KIB: u64 = 19456;
    let daemon = start(
        "max_connections = 256\n[ratelimit]\nmax_failures = 100000\n\
         [password]\nargon2_iterations = 1\n",
    );
    add_user(&daemon, "ann", OLD);
    add_user(&daemon, "bob", NEW);
    let before = peak_memory_kib(daemon.pid());

    let barrier = Arc::new(Barrier::new(LOGINS));
    let socket = Arc::new(daemon.socket.clone());
    let started = Instant::now();
    let threads: Vec<_> = (0..LOGINS)
        .map(|i| {
            let (barrier, socket) = (barrier.clone(), socket.clone());
            std::thread::spawn(move || {
                let (user, password, should_pass) = match i % 4 {
                    0 => ("ann", OLD, true),
                    1 => ("bob", NEW, true),
                    2 => ("ann", "wrong-password-here", false),
                    _ => ("nobody-by-this-name", OLD, false),
                };
                barrier.wait();
                let result = login_password(&socket, user, password, "");
                assert_eq!(result.succeeded(), should_pass, "login {i}: {result:?}");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a login failed");
    }
    let elapsed = started.elapsed();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = 64 * 1024 + cores * ARGON2_KIB;
    let peak = peak_memory_kib(daemon.pid());
    eprintln!(
        "burst of {LOGINS} logins in {elapsed:.1?}: kauthd peak memory {peak} KiB ({:.1} MiB; {before} KiB before), bound {bound} KiB ({cores} cores)",
        peak as f64 / 1024.0
    );
    assert!(
        peak < bound,
        "kauthd peaked at {peak} KiB, over the bound of {bound} KiB"
    );
}
