//! Locks come before any check: a locked login looks the same whatever the
//! password (and costs no argon2 run), and every request that checks a
//! password, a code or a token counts its failures and honours the lock.
//! A pending enrollment is dropped after a handful of wrong codes.
//!
//! These tests need root: the login conversation is for root and PAM
//! callers, and self-service runs kauthctl as `nobody`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kauth_tests::daemon::{stderr, stdout, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-hardening";
const NOBODY: u32 = 65534;

const PASSWORD: &str = "vq7-lantern-kettle-bramble";
const WRONG: &str = "not-the-password-at-all";
const NEW_PASSWORD: &str = "ochre-tundra-pivot-marmalade";

/// Three failures lock; no 2FA needed for a password login.
const LIMITS: &str = "[ratelimit]\nmax_failures = 3\nwindow_seconds = 300\nlock_seconds = 900\n\
                      [policy]\nrequire = \"none\"\n";

/// A deliberately expensive password hash, so one argon2 run is plainly
/// slower than a whole conversation without one.
const SLOW_HASH: &str = "[password]\nargon2_memory_kib = 65536\nargon2_iterations = 20\n";

fn add_user(daemon: &TestDaemon, name: &str, uid: Option<u32>) {
    let uid = uid.map(|u| u.to_string());
    let mut args = vec!["user", "add", name, "--password-stdin"];
    if let Some(uid) = uid.as_deref() {
        args.extend(["--uid", uid]);
    }
    let out = daemon.ctl_with(&args, Some(&format!("{PASSWORD}\n")), None);
    assert!(out.status.success(), "user add: {}", stderr(&out));
}

/// One PAM `auth` through the real libpam and pam_kpanel: the password,
/// then a code if one is asked for.
fn pam_login(conf: &PamConfDir, user: &str, password: &str, rhost: Option<&str>) -> HarnessRun {
    let mut harness = Harness::new(HARNESS, conf, SERVICE)
        .user(user)
        .answer(password)
        .answer("123456");
    if let Some(rhost) = rhost {
        harness = harness.rhost(rhost);
    }
    let run = harness.run();
    run.assert_completed();
    run
}

/// [`seen`], with the minute a lock ends written `HH:MM`: two locks set a
/// second apart may end in different minutes.
fn seen_of_a_lock(run: &HarnessRun) -> serde_json::Value {
    const LOCKED_UNTIL: &str = "locked until ";
    let mut seen = run.seen();
    for text in seen["errors"].as_array_mut().unwrap() {
        let mut line = text.as_str().unwrap().to_owned();
        if let Some(at) = line.find(LOCKED_UNTIL) {
            let start = at + LOCKED_UNTIL.len();
            line.replace_range(start..start + 5, "HH:MM");
        }
        *text = serde_json::Value::String(line);
    }
    seen
}

fn pam_service(daemon: &TestDaemon) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "");
    conf
}

/// Locked attempts answer alike whatever the password, and far faster than
/// the fastest attempt that ran argon2.
fn assert_locked_alike(locked: &[HarnessRun], slowest_allowed: Duration) {
    let first = locked[0].seen();
    let took: Vec<Duration> = locked.iter().map(|r| r.elapsed).collect();
    eprintln!("locked attempts took {took:?}; the limit was {slowest_allowed:?}");
    assert_eq!(first["auth"], "PAM_MAXTRIES", "{first}");
    for run in locked {
        assert_eq!(
            run.seen(),
            first,
            "a locked attempt must not depend on the password"
        );
        assert!(
            run.elapsed < slowest_allowed,
            "a locked attempt took {:?} (an argon2 run takes longer than {slowest_allowed:?} here): was the password checked?",
            run.elapsed
        );
    }
}

#[test]
#[ignore = "needs root"]
fn a_locked_account_answers_the_same_whatever_the_password_without_argon2() {
    let daemon = TestDaemon::start(&format!("{SLOW_HASH}{LIMITS}"));
    add_user(&daemon, "ann", None);
    let conf = pam_service(&daemon);

    // A wrong password and an unknown user look alike, attempt by attempt
    // (a hint follows the second failure of a name; the third locks it).
    let mut argon2_runs = Vec::new();
    for attempt in 1..=3 {
        let unknown = pam_login(&conf, "nobody-here", WRONG, None);
        let wrong = pam_login(&conf, "ann", WRONG, None);
        assert_eq!(
            seen_of_a_lock(&wrong),
            seen_of_a_lock(&unknown),
            "attempt {attempt}"
        );
        argon2_runs.push(wrong.elapsed);
    }
    let fastest_argon2 = argon2_runs.iter().min().copied().unwrap();
    assert!(
        fastest_argon2 >= Duration::from_millis(300),
        "the test's argon2 cost is too cheap to tell: {fastest_argon2:?}"
    );

    // Locked: the right password and a wrong one get the same answer.
    let right = pam_login(&conf, "ann", PASSWORD, None);
    let wrong = pam_login(&conf, "ann", WRONG, None);
    assert_locked_alike(&[right, wrong], fastest_argon2 / 3);

    // An unknown name locked by its failures looks like a locked account.
    let unknown = pam_login(&conf, "nobody-here", PASSWORD, None);
    let ann = pam_login(&conf, "ann", PASSWORD, None);
    assert_eq!(seen_of_a_lock(&unknown), seen_of_a_lock(&ann));
}

#[test]
#[ignore = "needs root"]
fn a_locked_host_answers_the_same_whatever_the_password_without_argon2() {
    let daemon = TestDaemon::start(&format!("{SLOW_HASH}{LIMITS}"));
    add_user(&daemon, "bob", None);
    let conf = pam_service(&daemon);
    let host = "203.0.113.7";

    // Three other names fail from the host: the host is locked, bob is not.
    let mut argon2_runs = Vec::new();
    for name in ["carol", "dave", "erin"] {
        argon2_runs.push(pam_login(&conf, name, WRONG, Some(host)).elapsed);
    }
    let fastest_argon2 = argon2_runs.iter().min().copied().unwrap();
    assert!(
        fastest_argon2 >= Duration::from_millis(300),
        "the test's argon2 cost is too cheap to tell: {fastest_argon2:?}"
    );

    let right = pam_login(&conf, "bob", PASSWORD, Some(host));
    let wrong = pam_login(&conf, "bob", WRONG, Some(host));
    assert_locked_alike(&[right, wrong], fastest_argon2 / 3);

    // From elsewhere bob logs in as usual.
    let elsewhere = pam_login(&conf, "bob", PASSWORD, Some("198.51.100.1"));
    assert_eq!(
        elsewhere.code("auth"),
        Some("PAM_SUCCESS"),
        "{}",
        elsewhere.stdout
    );
}

#[test]
#[ignore = "needs root"]
fn a_root_locked_account_answers_the_same_whatever_the_password() {
    let daemon = TestDaemon::start(&format!("{SLOW_HASH}{LIMITS}"));
    add_user(&daemon, "ann", None);
    let conf = pam_service(&daemon);
    let fastest_argon2 = (0..2)
        .map(|_| pam_login(&conf, "nobody-here", WRONG, None).elapsed)
        .min()
        .unwrap();
    assert!(daemon.ctl(&["user", "lock", "ann"]).status.success());

    let right = pam_login(&conf, "ann", PASSWORD, None);
    let wrong = pam_login(&conf, "ann", WRONG, None);
    assert_locked_alike(&[right, wrong], fastest_argon2 / 3);

    // A password change through PAM likewise.
    let change = |current: &str| {
        let run = Harness::new(HARNESS, &conf, SERVICE)
            .user("ann")
            .op("chauthtok")
            .answer(current)
            .answer(NEW_PASSWORD)
            .answer(NEW_PASSWORD)
            .run();
        run.assert_completed();
        run
    };
    let right = change(PASSWORD);
    let wrong = change(WRONG);
    assert_ne!(right.code("chauthtok"), Some("PAM_SUCCESS"));
    assert!(
        right.errors().iter().any(|e| e.contains("locked")),
        "{}",
        right.stdout
    );
    assert_eq!(
        (right.prompts(), right.errors(), right.code("chauthtok")),
        (wrong.prompts(), wrong.errors(), wrong.code("chauthtok"))
    );
}

fn as_nobody(daemon: &TestDaemon, args: &[&str]) -> std::process::Output {
    daemon.ctl_with(args, None, Some(NOBODY))
}

/// Begins an enrollment as nobody; returns the new secret.
fn begin_enrollment(daemon: &TestDaemon) -> String {
    let out = as_nobody(daemon, &["--json", "2fa", "enroll", "--begin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let begun: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    begun["secret"].as_str().unwrap().to_owned()
}

fn confirm(daemon: &TestDaemon, code: &str) -> std::process::Output {
    as_nobody(daemon, &["2fa", "enroll", "--confirm", code])
}

fn two_factor_status(daemon: &TestDaemon) -> String {
    stdout(&as_nobody(daemon, &["2fa", "status"]))
}

#[test]
#[ignore = "needs root"]
fn wrong_enrollment_codes_lock_and_the_right_one_is_then_refused() {
    let daemon = TestDaemon::start(LIMITS);
    let secret = begin_enrollment(&daemon);
    let step = step_with_margin(10);
    let wrong = wrong_code_near(&secret, step, 2);
    for _ in 0..3 {
        let out = confirm(&daemon, &wrong);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    }
    let out = confirm(&daemon, &oathtool_at_step(&secret, step));
    assert_eq!(out.status.code(), Some(1), "confirmed while locked");
    assert!(
        stderr(&out).contains("too many failed attempts"),
        "{}",
        stderr(&out)
    );
    assert!(two_factor_status(&daemon).contains("nobody: off"));

    // The lock was the only obstacle: lifted, the right code confirms.
    assert!(daemon.ctl(&["user", "unlock", "nobody"]).status.success());
    let out = confirm(&daemon, &oathtool_at_step(&secret, step));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn five_wrong_enrollment_codes_drop_the_pending_enrollment() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 20\n");
    let secret = begin_enrollment(&daemon);
    let step = step_with_margin(10);
    let wrong = wrong_code_near(&secret, step, 2);
    for _ in 0..4 {
        let out = confirm(&daemon, &wrong);
        assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    }
    let out = confirm(&daemon, &wrong);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("enrollment was cancelled") && said.contains("kauthctl 2fa enroll"),
        "{said}"
    );
    // The old secret's right code no longer confirms anything.
    let out = confirm(&daemon, &oathtool_at_step(&secret, step));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the dropped enrollment was confirmed"
    );
    assert!(
        stderr(&out).contains("no enrollment is waiting"),
        "{}",
        stderr(&out)
    );
    assert!(two_factor_status(&daemon).contains("nobody: off"));

    // Beginning again gives a new secret, which confirms.
    let fresh = begin_enrollment(&daemon);
    assert_ne!(fresh, secret);
    let out = confirm(&daemon, &oathtool_at_step(&fresh, step_with_margin(4)));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn wrong_proofs_for_disable_lock_and_the_right_one_is_then_refused() {
    let daemon = TestDaemon::start(LIMITS);
    let secret = begin_enrollment(&daemon);
    let step = step_with_margin(10);
    assert!(confirm(&daemon, &oathtool_at_step(&secret, step))
        .status
        .success());
    let wrong = wrong_code_near(&secret, step, 2);
    for _ in 0..3 {
        let out = as_nobody(&daemon, &["2fa", "disable", "--code", &wrong]);
        assert!(stderr(&out).contains("wrong"), "{}", stderr(&out));
    }
    let right = oathtool_at_step(&secret, step + 1);
    for args in [
        &["2fa", "disable", "--code", &right][..],
        &["2fa", "recovery-codes", "--regenerate", "--code", &right][..],
    ] {
        let out = as_nobody(&daemon, args);
        assert_eq!(out.status.code(), Some(1), "{args:?} while locked");
        assert!(
            stderr(&out).contains("too many failed attempts"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(two_factor_status(&daemon).contains("nobody: on"));
}

#[test]
#[ignore = "needs root"]
fn wrong_current_passwords_lock_like_wrong_login_passwords() {
    let daemon = TestDaemon::start(LIMITS);
    add_user(&daemon, "nobody", Some(NOBODY));
    let change = |current: &str| {
        daemon.ctl_with(
            &["passwd", "--password-stdin"],
            Some(&format!("{current}\n{NEW_PASSWORD}\n")),
            Some(NOBODY),
        )
    };
    for _ in 0..3 {
        let out = change(WRONG);
        assert!(stderr(&out).contains("wrong"), "{}", stderr(&out));
    }
    let out = change(PASSWORD);
    assert_eq!(out.status.code(), Some(1), "changed while locked");
    assert!(
        stderr(&out).contains("too many failed attempts"),
        "{}",
        stderr(&out)
    );
    // The same lock holds for logins.
    let conf = pam_service(&daemon);
    let login = pam_login(&conf, "nobody", PASSWORD, None);
    assert_eq!(login.code("auth"), Some("PAM_MAXTRIES"), "{}", login.stdout);
}

#[test]
#[ignore = "needs root"]
fn wrong_reset_tokens_count_as_failures() {
    let daemon = TestDaemon::start(LIMITS);
    add_user(&daemon, "ann", None);
    let reset = |token: &str| {
        daemon.ctl_with(
            &[
                "passwd",
                "--user",
                "ann",
                "--reset-token",
                token,
                "--password-stdin",
            ],
            Some(&format!("{NEW_PASSWORD}\n")),
            Some(NOBODY),
        )
    };
    for _ in 0..3 {
        let out = reset("not-a-real-token-0123456789abcdef");
        assert!(stderr(&out).contains("token is wrong"), "{}", stderr(&out));
    }
    // A real token is refused while locked, and ann's logins are locked.
    let made = daemon.ctl(&["--json", "reset-token", "--user", "ann"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let out = reset(&token);
    assert_eq!(out.status.code(), Some(1), "reset while locked");
    assert!(
        stderr(&out).contains("too many failed attempts"),
        "{}",
        stderr(&out)
    );
    let conf = pam_service(&daemon);
    let login = pam_login(&conf, "ann", PASSWORD, None);
    assert_eq!(login.code("auth"), Some("PAM_MAXTRIES"), "{}", login.stdout);
}
