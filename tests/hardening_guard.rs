//! A replay guard poisoned by a clock that ran ahead: kauthd run a day in
//! the future under libfaketime accepts a code of that time; started again
//! on the real clock, it refuses every real code of that user, logs why,
//! `kauthctl doctor` lists the user, and `kauthctl 2fa reset-guard` (root)
//! or a recovery-code login repairs it without making a spent code usable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use kauth_proto::Outcome;
use kauth_tests::daemon::{json, stderr, stdout, TestDaemon};
use kauth_tests::login::{
    login_code, now, oathtool_at_step, recovery_codes, step_with_margin, LoginResult,
};
use serde_json::Value;

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// One day in 30-second steps.
const DAY_STEPS: u64 = 86_400 / 30;

/// The uid of `nobody`, for a caller that is not root.
const NOBODY: u32 = 65534;

fn code(step: u64) -> String {
    oathtool_at_step(SECRET, step)
}

fn denied(result: &LoginResult) -> bool {
    result.outcome == Some(Outcome::Denied)
}

/// Debian's libfaketime (package faketime), whatever the architecture.
fn libfaketime() -> PathBuf {
    let lib = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists());
    lib.expect("libfaketime is missing: install Debian's faketime (tests/debian-packages)")
}

/// Starts kauthd again a day in the future, has it accept `user`'s code of
/// that time, and starts it again on the real clock, on the same state.
fn accept_a_code_a_day_ahead(daemon: &mut TestDaemon, user: &str) {
    let lib = libfaketime();
    daemon.restart_with_env(&[
        ("LD_PRELOAD", lib.to_str().expect("a UTF-8 path")),
        ("FAKETIME", "+1d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    let future_step = step_with_margin(3) + DAY_STEPS;
    let result = login_code(&daemon.socket, user, &code(future_step));
    assert!(
        result.succeeded(),
        "kauthd under libfaketime (+1d) refused the code of a day ahead: {result:?}\n{}",
        daemon.stderr()
    );
    daemon.restart();
}

/// Waits until the 30-second step after `step` has begun.
fn wait_for_step_after(step: u64) {
    while now() / 30 <= step {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kauthctl doctor --json` with only the daemon checks.
fn doctor(daemon: &TestDaemon) -> (Option<i32>, Value) {
    let config = daemon.config_path.display().to_string();
    let out = daemon.ctl(&[
        "doctor", "--json", "--config", &config, "--skip", "clock", "--skip", "files", "--skip",
        "pam", "--skip", "sshd",
    ]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", stdout(&out)));
    (out.status.code(), doc)
}

fn guard_findings(doc: &Value) -> Vec<&Value> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == "guard")
        .collect()
}

const LOG_LINE: &str = "every code of ann is refused";

#[test]
#[ignore = "needs root"]
fn a_code_accepted_a_day_ahead_is_reported_and_root_resets_the_guard() {
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET);
    let used_step = step_with_margin(3);
    let used = code(used_step);
    assert!(login_code(&daemon.socket, "ann", &used).succeeded());

    accept_a_code_a_day_ahead(&mut daemon, "ann");

    // Back on the real clock, a fresh real code is refused, and the log
    // says whose, by how much, why and what to run.
    let step = step_with_margin(5);
    let fresh = login_code(&daemon.socket, "ann", &code(step + 1));
    assert!(denied(&fresh), "{fresh:?}");
    let log = daemon.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(LOG_LINE))
        .unwrap_or_else(|| panic!("no error about ann's guard in the log:\n{log}"));
    assert!(line.contains("error"), "{line}");
    assert!(
        line.contains("the last accepted code is 23 h 5"),
        "the gap is not given: {line}"
    );
    assert!(
        line.contains("kauthctl 2fa reset-guard --user ann"),
        "{line}"
    );
    assert!(daemon.syslog_receives(LOG_LINE), "not sent to syslog");
    // Said once, not at every attempt.
    let again = login_code(&daemon.socket, "ann", &code(step + 1));
    assert!(denied(&again));
    assert_eq!(daemon.stderr().matches(LOG_LINE).count(), 1);

    // Doctor names the user and the command.
    let (status, doc) = doctor(&daemon);
    assert_eq!(status, Some(1), "{doc}");
    let findings = guard_findings(&doc);
    assert_eq!(findings.len(), 1, "{doc}");
    let finding = findings[0];
    assert_eq!(finding["severity"], "problem");
    assert!(
        finding["what"].as_str().unwrap().contains("ann"),
        "{finding}"
    );
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("kauthctl 2fa reset-guard --user ann"),
        "{finding}"
    );

    // Only root may reset it.
    let refused = daemon.ctl_with(&["2fa", "reset-guard", "--user", "ann"], None, Some(NOBODY));
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("only root"),
        "{}",
        stderr(&refused)
    );

    let reset_step = step_with_margin(10);
    let reset = json(&daemon.ctl(&["--json", "2fa", "reset-guard", "--user", "ann"]));
    assert_eq!(reset["user"], "ann");
    let ahead = reset["ahead_seconds"].as_u64().expect("ahead_seconds");
    assert!((86_000..=86_400).contains(&ahead), "{reset}");
    // Codes accepted up to now stay spent: the one used before, and any
    // step up to the end of the current window.
    assert!(denied(&login_code(&daemon.socket, "ann", &used)));
    assert!(denied(&login_code(
        &daemon.socket,
        "ann",
        &code(reset_step + 1)
    )));
    let events = json(&daemon.ctl(&["--json", "activity", "--user", "ann"]));
    assert!(
        events.to_string().contains("replay guard reset by root"),
        "{events}"
    );
    let (status, doc) = doctor(&daemon);
    assert!(guard_findings(&doc).is_empty(), "{doc}");
    assert_eq!(status, Some(0), "{doc}");
    // Again: nothing to do, and said so.
    let twice = json(&daemon.ctl(&["--json", "2fa", "reset-guard", "--user", "ann"]));
    assert_eq!(twice["ahead_seconds"], 0);

    // Once the window has moved on, the next real code works.
    wait_for_step_after(reset_step);
    let next = login_code(&daemon.socket, "ann", &code(reset_step + 2));
    assert!(next.succeeded(), "{next:?}\n{}", daemon.stderr());
}

#[test]
#[ignore = "needs root"]
fn a_recovery_code_login_repairs_a_guard_left_in_the_future() {
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("bob", SECRET);
    let regenerated = json(&daemon.ctl(&[
        "--json",
        "2fa",
        "recovery-codes",
        "--regenerate",
        "--user",
        "bob",
    ]));
    let codes = recovery_codes(&regenerated);

    accept_a_code_a_day_ahead(&mut daemon, "bob");

    let step = step_with_margin(10);
    assert!(denied(&login_code(&daemon.socket, "bob", &code(step + 1))));
    let recovered = login_code(&daemon.socket, "bob", &codes[0]);
    assert!(recovered.succeeded(), "{recovered:?}");
    let log = daemon.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("guard_reset: user=bob") && l.contains("23 h 5")),
        "the repair is not logged:\n{log}"
    );
    // The end of the window stays spent; after it, codes work again.
    assert!(denied(&login_code(&daemon.socket, "bob", &code(step + 1))));
    wait_for_step_after(step);
    let next = login_code(&daemon.socket, "bob", &code(step + 2));
    assert!(next.succeeded(), "{next:?}\n{}", daemon.stderr());
}
