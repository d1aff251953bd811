//! TOTP and recovery codes through the real kauthd: enrollment confirmed
//! with oathtool codes, one use per code under concurrency, the skew
//! window, the rate limit, hashed recovery codes, google-authenticator
//! migration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use kauth_proto::Outcome;
use kauth_tests::daemon::{json, stderr, TestDaemon};
use kauth_tests::login::{
    login_code, login_code_from, now, oathtool, oathtool_at_step, recovery_codes, step_with_margin,
    LoginResult,
};

/// Enrolls `user` through begin/confirm with an oathtool code; returns the
/// secret, the recovery codes and the time step the confirmation used.
fn enroll(daemon: &TestDaemon, user: &str) -> (String, Vec<String>, u64) {
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", user]));
    for field in ["secret", "uri", "algorithm", "digits", "period"] {
        assert!(
            !begun[field].is_null(),
            "begin output lacks {field}: {begun}"
        );
    }
    let secret = begun["secret"].as_str().unwrap().to_owned();
    assert!(begun["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let step = step_with_margin(3);
    let code = oathtool_at_step(&secret, step);
    let confirmed = json(&daemon.ctl(&[
        "--json",
        "2fa",
        "enroll",
        "--confirm",
        &code,
        "--user",
        user,
    ]));
    let codes = recovery_codes(&confirmed);
    (secret, codes, step)
}

fn outcome(r: &LoginResult) -> Option<Outcome> {
    r.outcome
}

const SECRET_A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[test]
fn oathtool_codes_confirm_an_enrollment_and_verify_afterwards() {
    let daemon = TestDaemon::start("");
    let (secret, codes, step) = enroll(&daemon, "ann");
    assert_eq!(codes.len(), 10);
    // The confirming code was spent by the confirmation.
    let reused = login_code(&daemon.socket, "ann", &oathtool_at_step(&secret, step));
    assert_eq!(outcome(&reused), Some(Outcome::Denied));
    // The next step's code is inside the window and newer: accepted.
    let next = login_code(&daemon.socket, "ann", &oathtool_at_step(&secret, step + 1));
    assert!(next.succeeded(), "{next:?}");
    assert_eq!(next.prompts, vec!["Verification code: ".to_owned()]);
    let status = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    assert_eq!(status["enabled"], true);
    assert_eq!(status["recovery_codes_left"], 10);
}

#[test]
fn the_same_code_twice_is_refused_the_second_time() {
    let daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET_A);
    let code = oathtool_at_step(SECRET_A, step_with_margin(3));
    assert!(login_code(&daemon.socket, "ann", &code).succeeded());
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &code)),
        Some(Outcome::Denied)
    );
}

#[test]
fn a_spent_code_stays_spent_across_a_restart() {
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET_A);
    let code = oathtool_at_step(SECRET_A, step_with_margin(5));
    assert!(login_code(&daemon.socket, "ann", &code).succeeded());
    daemon.kill9();
    daemon.restart();
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &code)),
        Some(Outcome::Denied)
    );
}

/// Runs `code` for `user` on two connections at the same moment.
fn race(daemon: &TestDaemon, user: &str, code: &str) -> usize {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let socket = daemon.socket.clone();
            let (user, code) = (user.to_owned(), code.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                login_code(&socket, &user, &code).succeeded()
            })
        })
        .collect();
    handles
        .into_iter()
        .filter(|_| true)
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count()
}

#[test]
fn one_code_on_two_connections_at_once_succeeds_exactly_once_each_time() {
    let daemon = TestDaemon::start("");
    // A user per round, so every round has a fresh valid code.
    let step = step_with_margin(10);
    for round in 0..20 {
        let user = format!("racer{round}");
        let secret = format!("JBSWY3DPEHPK3PX{}", ["A", "B", "C", "D"][round % 4]).repeat(2);
        daemon.import_secret(&user, &secret);
        let code = oathtool_at_step(&secret, step);
        assert_eq!(
            race(&daemon, &user, &code),
            1,
            "round {round}: not exactly one success"
        );
    }
}

#[test]
fn one_recovery_code_on_two_connections_at_once_succeeds_exactly_once_each_time() {
    let daemon = TestDaemon::start("[recovery]\ncodes = 20\n");
    let (_secret, codes, _) = enroll(&daemon, "ann");
    assert_eq!(codes.len(), 20);
    for (round, code) in codes.iter().enumerate() {
        assert_eq!(
            race(&daemon, "ann", code),
            1,
            "round {round}: not exactly one success"
        );
    }
    let left = json(&daemon.ctl(&["--json", "2fa", "recovery-codes", "--user", "ann"]));
    assert_eq!(left["recovery_codes_left"], 0);
}

#[test]
fn recovery_codes_work_once_in_any_spelling_and_report_what_is_left() {
    let daemon = TestDaemon::start("");
    let (_secret, codes, _) = enroll(&daemon, "ann");
    let shouted = codes[0].to_uppercase().replace('-', " ");
    let first = login_code(&daemon.socket, "ann", &shouted);
    assert!(first.succeeded(), "{first:?}");
    assert!(
        first.messages.iter().any(|m| m.contains("9 left")),
        "{first:?}"
    );
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &codes[0])),
        Some(Outcome::Denied)
    );
    let undashed = codes[1].replace('-', "");
    assert!(login_code(&daemon.socket, "ann", &undashed).succeeded());
}

#[test]
fn regenerating_recovery_codes_kills_the_old_set() {
    let daemon = TestDaemon::start("");
    let (_secret, old, _) = enroll(&daemon, "ann");
    let new = json(&daemon.ctl(&[
        "--json",
        "2fa",
        "recovery-codes",
        "--regenerate",
        "--user",
        "ann",
    ]));
    let new = recovery_codes(&new);
    assert_eq!(new.len(), 10);
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &old[0])),
        Some(Outcome::Denied)
    );
    assert!(login_code(&daemon.socket, "ann", &new[0]).succeeded());
}

#[test]
fn skew_of_one_step_accepts_the_previous_code_and_refuses_three_steps_back() {
    let daemon = TestDaemon::start("[totp]\nskew_steps = 1\nlearn_skew = false\n");
    daemon.import_secret("ann", SECRET_A);
    let step = step_with_margin(4);
    let old = login_code(&daemon.socket, "ann", &oathtool_at_step(SECRET_A, step - 3));
    assert_eq!(
        outcome(&old),
        Some(Outcome::Denied),
        "three periods ago must be refused"
    );
    let prev = login_code(&daemon.socket, "ann", &oathtool_at_step(SECRET_A, step - 1));
    assert!(
        prev.succeeded(),
        "one period ago must be accepted: {prev:?}"
    );
}

#[test]
fn after_max_failures_the_right_code_is_refused_until_root_unlocks() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 3\nlock_seconds = 600\n");
    daemon.import_secret("ann", SECRET_A);
    for _ in 0..3 {
        assert_eq!(
            outcome(&login_code(&daemon.socket, "ann", "000000")),
            Some(Outcome::Denied)
        );
    }
    let step = step_with_margin(4);
    let right = oathtool_at_step(SECRET_A, step);
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &right)),
        Some(Outcome::Locked)
    );
    // Locked: the code was not even checked, so it is still unspent.
    assert!(daemon.ctl(&["user", "unlock", "ann"]).status.success());
    assert!(login_code(&daemon.socket, "ann", &right).succeeded());
}

#[test]
fn the_lock_ends_by_itself_after_lock_seconds() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 2\nlock_seconds = 2\n");
    daemon.import_secret("ann", SECRET_A);
    // The code first: waiting for a fresh step after the failures could
    // outlast the 2-second lock.
    let step = step_with_margin(10);
    let right = oathtool_at_step(SECRET_A, step);
    for _ in 0..2 {
        login_code(&daemon.socket, "ann", "000000");
    }
    assert_eq!(
        outcome(&login_code(&daemon.socket, "ann", &right)),
        Some(Outcome::Locked)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(login_code(&daemon.socket, "ann", &right).succeeded());
}

#[test]
fn failures_from_one_remote_host_lock_that_host() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 3\n");
    for user in ["u1", "u2", "u3"] {
        daemon.import_secret(user, SECRET_A);
        login_code_from(&daemon.socket, user, "000000", "198.51.100.7");
    }
    daemon.import_secret("u4", SECRET_A);
    let right = oathtool_at_step(SECRET_A, step_with_margin(3));
    let r = login_code_from(&daemon.socket, "u4", &right, "198.51.100.7");
    assert_eq!(outcome(&r), Some(Outcome::Locked));
    let r = login_code_from(&daemon.socket, "u4", &right, "198.51.100.8");
    assert!(r.succeeded(), "another host is not locked: {r:?}");
}

#[test]
fn the_database_holds_no_recovery_code_in_plain_text() {
    let mut daemon = TestDaemon::start("");
    let (_secret, codes, _) = enroll(&daemon, "ann");
    daemon.stop();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&daemon.state_dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let haystack = String::from_utf8_lossy(&bytes).to_lowercase();
    for code in &codes {
        for form in [code.clone(), code.replace('-', ""), code.replace('-', " ")] {
            assert!(
                !haystack.contains(&form.to_lowercase()),
                "recovery code found in the database"
            );
        }
    }
}

#[test]
fn a_google_authenticator_file_imports_and_its_scratch_codes_work_once() {
    let daemon = TestDaemon::start("");
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".google_authenticator");
    let out = Command::new("google-authenticator")
        .args([
            "--time-based",
            "--disallow-reuse",
            "--force",
            "--rate-limit=3",
            "--rate-time=30",
            "--window-size=3",
            "--qr-mode=NONE",
            "--quiet",
        ])
        .arg(format!("--secret={}", file.display()))
        .env("HOME", home.path())
        .output()
        .expect("google-authenticator is missing: install Debian's libpam-google-authenticator");
    assert!(
        out.status.success(),
        "google-authenticator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let secret = text.lines().next().unwrap().trim().to_owned();
    let scratch: Vec<String> = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('"') && !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(!scratch.is_empty(), "the tool wrote no scratch codes");

    let imported = json(&daemon.ctl(&[
        "--json",
        "import",
        "google-authenticator",
        "--user",
        "ann",
        file.to_str().unwrap(),
    ]));
    assert_eq!(imported["recovery_codes"], scratch.len());

    let code = oathtool(&secret, &["--totp"], now());
    let r = login_code(&daemon.socket, "ann", &code);
    assert!(
        r.succeeded(),
        "oathtool code for the imported secret: {r:?}"
    );
    for s in &scratch {
        assert!(
            login_code(&daemon.socket, "ann", s).succeeded(),
            "scratch code refused"
        );
        assert_eq!(
            outcome(&login_code(&daemon.socket, "ann", s)),
            Some(Outcome::Denied)
        );
    }
}

#[test]
fn an_hotp_google_authenticator_file_gets_a_clear_error() {
    let daemon = TestDaemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ga");
    std::fs::write(&file, format!("{SECRET_A}\n\" HOTP_COUNTER 1\n12345678\n")).unwrap();
    let out = daemon.ctl(&[
        "import",
        "google-authenticator",
        "--user",
        "ann",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("HOTP") || stderr(&out).contains("counter"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(SECRET_A));
}

#[test]
fn root_disables_two_factor_for_several_users_at_once() {
    let daemon = TestDaemon::start("");
    for user in ["ann", "bob", "cat"] {
        daemon.import_secret(user, SECRET_A);
    }
    let out = daemon.ctl(&[
        "2fa", "disable", "--force", "--user", "ann", "--user", "bob",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&daemon.ctl(&["--json", "2fa", "list"]));
    let names: HashSet<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["cat"]));
}

#[test]
fn reenrolling_keeps_the_old_secret_until_the_new_one_is_confirmed() {
    let daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET_A);
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", "ann"]));
    let new_secret = begun["secret"].as_str().unwrap().to_owned();
    let step = step_with_margin(4);
    // The old phone still works while the new one is pending.
    assert!(login_code(&daemon.socket, "ann", &oathtool_at_step(SECRET_A, step)).succeeded());
    let confirm = oathtool_at_step(&new_secret, step);
    json(&daemon.ctl(&[
        "--json",
        "2fa",
        "enroll",
        "--confirm",
        &confirm,
        "--user",
        "ann",
    ]));
    // Now only the new secret works.
    let old_next = login_code(&daemon.socket, "ann", &oathtool_at_step(SECRET_A, step + 1));
    assert_eq!(outcome(&old_next), Some(Outcome::Denied));
    let new_next = login_code(
        &daemon.socket,
        "ann",
        &oathtool_at_step(&new_secret, step + 1),
    );
    assert!(new_next.succeeded(), "{new_next:?}");
}

#[test]
fn a_wrong_confirmation_code_leaves_two_factor_off() {
    let daemon = TestDaemon::start("");
    json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", "ann"]));
    let out = daemon.ctl(&["2fa", "enroll", "--confirm", "000000", "--user", "ann"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    let status = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    assert_eq!(status["enabled"], false);
    assert_eq!(status["pending"], true);
}

#[test]
fn a_phone_clock_running_ahead_is_learned_from_consecutive_codes() {
    let daemon = TestDaemon::start("[totp]\nskew_steps = 1\nlearn_skew = true\n");
    daemon.import_secret("ann", SECRET_A);
    let step = step_with_margin(5);
    // The phone is five steps (150 s) ahead: outside the window.
    for ahead in [5, 6] {
        let r = login_code(
            &daemon.socket,
            "ann",
            &oathtool_at_step(SECRET_A, step + ahead),
        );
        assert_eq!(outcome(&r), Some(Outcome::Denied));
    }
    // The next code, in the next server step, agrees: the offset is learned
    // and the code accepted.
    while now() / 30 == step {
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = login_code(&daemon.socket, "ann", &oathtool_at_step(SECRET_A, step + 7));
    assert!(
        r.succeeded(),
        "third consecutive code: {r:?}\n{}",
        daemon.stderr()
    );
    assert!(
        daemon.stderr().contains("learned a clock offset"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn codes_of_most_users_matching_off_centre_are_reported_as_server_clock_drift() {
    let daemon = TestDaemon::start("");
    let step = step_with_margin(3);
    for user in ["u1", "u2", "u3"] {
        daemon.import_secret(user, SECRET_A);
        // Every phone is one step ahead of the server: accepted, off-centre.
        assert!(
            login_code(&daemon.socket, user, &oathtool_at_step(SECRET_A, step + 1)).succeeded()
        );
    }
    assert!(
        daemon
            .stderr()
            .contains("server clock looks about 30 s slow"),
        "{}",
        daemon.stderr()
    );
}
