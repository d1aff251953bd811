//! The PHP client (`clients/php/KauthClient.php`) against the real
//! daemon, run by Debian's `php` (php-cli) one process per call, as a
//! panel's PHP requests would: a login with the password on one
//! connection and the code on another, a replayed or foreign token
//! refused, recovery codes, enrollment and sessions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kauth_tests::daemon::{running_as_root, stderr, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin};
use serde_json::{json, Value};

const SECRET: &str = "JBSWY3DPEHPK3PXP";
const PASSWORD: &str = "a long enough password 1";
const NOBODY: u32 = 65534;
const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn daemon_with_ann(extra: &str) -> TestDaemon {
    let daemon = TestDaemon::start(extra);
    daemon.add_account("ann", PASSWORD);
    daemon.import_secret("ann", SECRET);
    daemon
}

/// The PHP files, copied next to the daemon's socket, where any uid can
/// read them (the work tree may sit under a directory only root enters).
fn php_files(daemon: &TestDaemon) -> (PathBuf, PathBuf) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let library = daemon.dir.path().join("KauthClient.php");
    let script = daemon.dir.path().join("kauth_call.php");
    std::fs::copy(source.join("../clients/php/KauthClient.php"), &library).unwrap();
    std::fs::copy(source.join("php/kauth_call.php"), &script).unwrap();
    (library, script)
}

/// Calls `method` of a new KauthClient in a `php` process of its own (as
/// `uid` when given); returns the script's JSON outcome.
fn php(daemon: &TestDaemon, uid: Option<u32>, method: &str, args: Value) -> Value {
    php_trusting(daemon, uid, method, args, &[0])
}

fn php_trusting(
    daemon: &TestDaemon,
    uid: Option<u32>,
    method: &str,
    args: Value,
    trusted: &[u32],
) -> Value {
    let (library, script) = php_files(daemon);
    let mut command = Command::new("php");
    command
        .arg(&script)
        .arg(&library)
        .arg(&daemon.socket)
        .arg(method)
        .arg(args.to_string())
        .arg(json!(trusted).to_string());
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let out = command
        .output()
        .expect("php is missing: install Debian's php-cli (tests/debian-packages)");
    assert!(
        out.status.success(),
        "php failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "php printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    })
}

fn ok(outcome: Value) -> Value {
    assert_eq!(outcome["ok"], true, "{outcome}");
    outcome["result"].clone()
}

fn assert_not_found(outcome: &Value) {
    assert_eq!(outcome["ok"], false, "{outcome}");
    assert_eq!(outcome["error"], "Kauth\\NotFoundError", "{outcome}");
    assert_eq!(
        outcome["message"],
        "that sign-in has expired or was already used; sign in again"
    );
}

/// The password page: returns the continuation token.
fn begin(daemon: &TestDaemon, uid: Option<u32>) -> String {
    let step = ok(php(
        daemon,
        uid,
        "beginLogin",
        json!(["ann", PASSWORD, "kpanel", "203.0.113.9"]),
    ));
    assert_eq!(step["outcome"], Value::Null, "{step}");
    assert_eq!(step["prompt"], "Verification code: ");
    step["continuation"]
        .as_str()
        .unwrap_or_else(|| panic!("no continuation in {step}"))
        .to_owned()
}

#[test]
fn php_logs_in_with_the_code_on_a_second_connection_and_a_replay_is_refused() {
    let daemon = daemon_with_ann("");
    let welcome = ok(php(&daemon, None, "hello", json!([])));
    assert_eq!(welcome["type"], "welcome");

    let token = begin(&daemon, None);
    let code = oathtool_at_step(SECRET, step_with_margin(6));
    let done = ok(php(&daemon, None, "continueLogin", json!([token, code])));
    assert_eq!(done["outcome"], "success", "{done}");
    assert_not_found(&php(&daemon, None, "continueLogin", json!([token, code])));

    // The panel's session: opened with the browser's description,
    // checked at each page, listed, signed out.
    let id = ok(php(
        &daemon,
        None,
        "sessionOpen",
        json!(["ann", "kpanel", "203.0.113.9", AGENT]),
    ));
    let id = id.as_str().unwrap().to_owned();
    assert_eq!(ok(php(&daemon, None, "sessionCheck", json!([id]))), true);
    let sessions = ok(php(&daemon, None, "sessions", json!(["ann"])));
    let mine = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("listed");
    assert_eq!(mine["client"], AGENT);
    assert!(mine["last_active"].is_i64(), "{mine}");
    assert_eq!(ok(php(&daemon, None, "signOut", json!([id]))), json!([id]));
    assert_eq!(ok(php(&daemon, None, "sessionCheck", json!([id]))), false);

    let events = ok(php(&daemon, None, "activity", json!(["ann"])));
    let events: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    for wanted in ["login_success", "session_open", "sign_out"] {
        assert!(events.contains(&wanted), "{wanted} in {events:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn php_refuses_a_token_presented_by_another_uid() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = daemon_with_ann(&format!("[access]\npam_callers = [{NOBODY}]\n"));
    let token = begin(&daemon, None);
    let code = oathtool_at_step(SECRET, step_with_margin(6));
    assert_not_found(&php(
        &daemon,
        Some(NOBODY),
        "continueLogin",
        json!([token, code]),
    ));
    // Shown to another uid, the token is spent for its own uid too.
    assert_not_found(&php(&daemon, None, "continueLogin", json!([token, code])));
    // The other uid's own logins work (it is a PAM caller too).
    let theirs = begin(&daemon, Some(NOBODY));
    let code = oathtool_at_step(SECRET, step_with_margin(6) + 1);
    let done = ok(php(
        &daemon,
        Some(NOBODY),
        "continueLogin",
        json!([theirs, code]),
    ));
    assert_eq!(done["outcome"], "success", "{done}");
}

#[test]
fn php_signs_in_with_a_recovery_code_and_enrolls_a_user() {
    let daemon = daemon_with_ann("");
    let codes = ok(php(
        &daemon,
        None,
        "regenerateRecoveryCodes",
        json!(["ann"]),
    ));
    let codes: Vec<String> = serde_json::from_value(codes).unwrap();
    let token = begin(&daemon, None);
    let done = ok(php(
        &daemon,
        None,
        "continueLogin",
        json!([token, codes[0]]),
    ));
    assert_eq!(done["outcome"], "success", "{done}");
    let left = codes.len() - 1;
    assert!(
        done["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("You have {left} left")),
        "{done}"
    );
    assert_eq!(
        ok(php(&daemon, None, "recoveryCodesLeft", json!(["ann"]))),
        left
    );

    assert!(daemon.ctl(&["user", "add", "bob"]).status.success());
    let begun = ok(php(&daemon, None, "enrollBegin", json!(["bob"])));
    let secret = begun["secret"].as_str().unwrap().to_owned();
    assert!(begun["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let code = oathtool_at_step(&secret, step_with_margin(6));
    let codes = ok(php(&daemon, None, "enrollConfirm", json!(["bob", code])));
    assert!(codes.as_array().unwrap().len() >= 5, "{codes}");
    let status = ok(php(&daemon, None, "twoFactorStatus", json!(["bob"])));
    assert_eq!(status["enabled"], true);
    // A wrong confirmation is a typed error.
    let wrong = php(&daemon, None, "enrollConfirm", json!(["ann", "000000"]));
    assert_eq!(wrong["ok"], false);
    assert!(
        wrong["error"].as_str().unwrap().starts_with("Kauth\\"),
        "{wrong}"
    );
}

#[test]
fn php_refuses_a_listener_that_does_not_run_as_a_trusted_uid() {
    let daemon = daemon_with_ann("");
    // This kauthd runs as the test's uid; trust another one only.
    let outcome = php_trusting(&daemon, None, "hello", json!([]), &[4_000_000]);
    assert_eq!(outcome["ok"], false, "{outcome}");
    assert_eq!(outcome["error"], "Kauth\\ConnectionError");
    assert!(
        outcome["message"]
            .as_str()
            .unwrap()
            .contains("not as kauthd"),
        "{outcome}"
    );
}
