//! The engine's fast paths (issue 13, speed): failed attempts written
//! behind in batches, with their crash semantics (a count may be lost on
//! `kill -9`, a reported lock never; a clean stop loses nothing), and
//! the steps of a login conversation served by the worker that answered
//! the previous one, or by the event loop when the next step is slow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kauth_proto::{LoginMode, Outcome, Request, Response, Secret};
use kauth_tests::daemon::{json, TestDaemon};
use kauth_tests::login::{
    begin, connect, login_code, now, oathtool_at_step, step_with_margin, wrong_code_near,
};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Three failures lock an account for ten minutes.
const LOCK_AFTER_3: &str =
    "[ratelimit]\nmax_failures = 3\nwindow_seconds = 600\nlock_seconds = 600\n";

/// A code that is wrong for every step near now (not a clock that is off).
fn wrong_code() -> String {
    wrong_code_near(SECRET, now() / 30, 30)
}

fn denied(daemon: &TestDaemon, user: &str, code: &str) -> Vec<String> {
    let login = login_code(&daemon.socket, user, code);
    assert_eq!(login.outcome, Some(Outcome::Denied), "{login:?}");
    login.messages
}

#[test]
fn a_failure_count_survives_a_clean_stop() {
    let mut daemon = TestDaemon::start(LOCK_AFTER_3);
    daemon.import_secret("ann", SECRET);
    let wrong = wrong_code();
    for _ in 0..2 {
        denied(&daemon, "ann", &wrong);
    }
    assert!(daemon.stop().success());
    daemon.restart();
    // The third failure, counted with the two before the stop, locks.
    let messages = denied(&daemon, "ann", &wrong);
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Sign-in is locked until")),
        "the third failure did not lock: {messages:?}"
    );
    let code = oathtool_at_step(SECRET, step_with_margin(3));
    let login = login_code(&daemon.socket, "ann", &code);
    assert_eq!(login.outcome, Some(Outcome::Locked), "{login:?}");
}

#[test]
fn a_lock_reported_before_kill_9_holds_after_the_restart() {
    let mut daemon = TestDaemon::start(LOCK_AFTER_3);
    daemon.import_secret("ann", SECRET);
    let wrong = wrong_code();
    for _ in 0..2 {
        denied(&daemon, "ann", &wrong);
    }
    let messages = denied(&daemon, "ann", &wrong);
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Sign-in is locked until")),
        "no lock was reported: {messages:?}"
    );
    // At once: the write-behind thread and the flusher have not run.
    daemon.kill9();
    daemon.restart();
    let code = oathtool_at_step(SECRET, step_with_margin(3));
    let login = login_code(&daemon.socket, "ann", &code);
    assert_eq!(
        login.outcome,
        Some(Outcome::Locked),
        "the reported lock was lost: {login:?}"
    );
    let locks = daemon.ctl(&["--json", "locks"]);
    assert!(
        json(&locks).to_string().contains("\"ann\""),
        "kauthctl locks does not list ann: {}",
        json(&locks)
    );
}

#[test]
fn a_failure_held_in_memory_is_in_the_activity_at_once_and_on_disk_soon() {
    let daemon = TestDaemon::start(LOCK_AFTER_3);
    daemon.import_secret("bob", SECRET);
    denied(&daemon, "bob", &wrong_code());
    let shown = json(&daemon.ctl(&["--json", "activity", "--user", "bob"]));
    assert!(
        shown.to_string().contains("login_failure"),
        "the failure is not in the activity: {shown}"
    );
    // Written and counted: two more failures lock.
    let wrong = wrong_code();
    denied(&daemon, "bob", &wrong);
    let messages = denied(&daemon, "bob", &wrong);
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Sign-in is locked until")),
        "{messages:?}"
    );
}

#[test]
fn a_success_clears_failures_still_held_in_memory() {
    let daemon = TestDaemon::start(LOCK_AFTER_3);
    daemon.import_secret("cat", SECRET);
    let wrong = wrong_code();
    for _ in 0..2 {
        denied(&daemon, "cat", &wrong);
    }
    let code = oathtool_at_step(SECRET, step_with_margin(3));
    assert!(login_code(&daemon.socket, "cat", &code).succeeded());
    // Had the two failures survived the success, this one would lock.
    let messages = denied(&daemon, "cat", &wrong);
    assert!(
        !messages.iter().any(|m| m.contains("locked")),
        "a failure before the success still counted: {messages:?}"
    );
}

#[test]
fn a_step_that_comes_after_the_workers_wait_is_still_answered() {
    let daemon = TestDaemon::start("");
    daemon.import_secret("dan", SECRET);
    let code = oathtool_at_step(SECRET, step_with_margin(5));
    let mut client = connect(&daemon.socket);
    let prompt = client
        .call(&begin("dan", LoginMode::OtpOnly, None))
        .unwrap();
    assert!(matches!(prompt, Response::Prompt { .. }), "{prompt:?}");
    // A person typing: far longer than a worker waits for the next step.
    std::thread::sleep(Duration::from_millis(300));
    let answer = client
        .call(&Request::Answer {
            text: Secret::from(code.as_str()),
        })
        .unwrap();
    assert!(
        matches!(
            answer,
            Response::Finished {
                outcome: Outcome::Success
            }
        ),
        "{answer:?}"
    );
}

#[test]
fn many_logins_one_after_another_on_fast_steps_all_succeed() {
    let daemon = TestDaemon::start("");
    let users: Vec<String> = (0..20).map(|i| format!("fast{i}")).collect();
    for user in &users {
        daemon.import_secret(user, SECRET);
    }
    let code = oathtool_at_step(SECRET, step_with_margin(5));
    for user in &users {
        let login = login_code(&daemon.socket, user, &code);
        assert!(login.succeeded(), "{user}: {login:?}");
        // The same code again: already used.
        let again = login_code(&daemon.socket, user, &code);
        assert_eq!(again.outcome, Some(Outcome::Denied), "{user}: {again:?}");
    }
}
