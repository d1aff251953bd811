//! What a login says when it fails, or when something needs fixing: a
//! code already used, a clock hint after repeated wrong codes, a lock with
//! until when, a learned clock offset (told once), and advice when the
//! recovery codes run low. None of it may tell an unknown name from a
//! known one, nor which factor failed before the code step.
//!
//! Through the real libpam (`kauth-pam-harness` and the built
//! pam_kpanel.so) against the real kauthd, with codes from `oathtool`.
//! These tests need root: the login conversation is for root and PAM
//! callers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kauth_tests::daemon::{json, TestDaemon};
use kauth_tests::login::{login_code, now, oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const PASSWORD_SERVICE: &str = "kauth-msgs";
const OTP_SERVICE: &str = "kauth-msgs-otp";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "vq7-lantern-kettle-bramble";
const WRONG_PASSWORD: &str = "not-the-password-at-all";

const USED: &str = "That code was already used. Wait for the next one.";
const KEEP_FAILING: &str =
    "If codes keep failing, check that your phone's time is set automatically.";

/// Enough failures allowed that the hint tests lock nothing.
const NO_LOCKS: &str = "[ratelimit]\nmax_failures = 20\nwindow_seconds = 300\n";

/// Three failures lock, for 15 minutes.
const QUICK_LOCKS: &str =
    "[ratelimit]\nmax_failures = 3\nwindow_seconds = 300\nlock_seconds = 900\n";

/// Both services: pam_kpanel asking the kauthd password then the code, and
/// in `otp_only` mode (an earlier module checked the first factor).
fn services(daemon: &TestDaemon) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(PASSWORD_SERVICE, &daemon.socket, "");
    conf.kpanel_service(OTP_SERVICE, &daemon.socket, "otp_only");
    conf
}

/// A kauthd account with a password and 2FA on.
fn add_user(daemon: &TestDaemon, name: &str) {
    daemon.add_account(name, PASSWORD);
    daemon.import_secret(name, SECRET);
}

/// PAM `auth` on `service` for `user`, answering `answers` in order.
fn pam_auth(
    conf: &PamConfDir,
    service: &str,
    user: &str,
    answers: &[&str],
    rhost: Option<&str>,
) -> HarnessRun {
    let mut harness = Harness::new(HARNESS, conf, service).user(user).op("auth");
    for answer in answers {
        harness = harness.answer(answer);
    }
    if let Some(rhost) = rhost {
        harness = harness.rhost(rhost);
    }
    let run = harness.run();
    run.assert_completed();
    run
}

/// A code login in `otp_only` mode.
fn code_login(conf: &PamConfDir, user: &str, code: &str) -> HarnessRun {
    pam_auth(conf, OTP_SERVICE, user, &[code], None)
}

fn status(daemon: &TestDaemon, user: &str) -> serde_json::Value {
    json(&daemon.ctl(&["--json", "2fa", "status", "--user", user]))
}

/// `HH:MM` of a Unix time, UTC.
fn hhmm(unix: u64) -> String {
    format!("{:02}:{:02}", (unix % 86_400) / 3600, (unix % 3600) / 60)
}

#[test]
#[ignore = "needs root"]
fn a_code_already_used_says_so() {
    let daemon = TestDaemon::start(NO_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let step = step_with_margin(8);
    let code = oathtool_at_step(SECRET, step);
    let first = code_login(&conf, "ann", &code);
    assert_eq!(first.code("auth"), Some("PAM_SUCCESS"), "{}", first.seen());
    assert!(first.errors().is_empty() && first.infos().is_empty());

    let again = code_login(&conf, "ann", &code);
    assert_eq!(again.code("auth"), Some("PAM_AUTH_ERR"), "{}", again.seen());
    assert_eq!(again.errors(), vec![USED.to_owned()], "{}", again.seen());
    // Through the password service as well, after the right password.
    let again = pam_auth(&conf, PASSWORD_SERVICE, "ann", &[PASSWORD, &code], None);
    assert_eq!(again.errors(), vec![USED.to_owned()], "{}", again.seen());
    assert_eq!(again.code("auth"), Some("PAM_AUTH_ERR"));
}

#[test]
#[ignore = "needs root"]
fn plain_wrong_codes_get_the_generic_clock_hint_from_the_second_on() {
    let daemon = TestDaemon::start(NO_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let step = step_with_margin(8);
    let wrong = wrong_code_near(SECRET, step, 30);

    let first = code_login(&conf, "ann", &wrong);
    assert_eq!(first.code("auth"), Some("PAM_AUTH_ERR"));
    assert!(
        first.infos().is_empty() && first.errors().is_empty(),
        "one wrong code says nothing more: {}",
        first.seen()
    );
    let second = code_login(&conf, "ann", &wrong);
    assert_eq!(second.code("auth"), Some("PAM_AUTH_ERR"));
    assert_eq!(
        second.infos(),
        vec![KEEP_FAILING.to_owned()],
        "{}",
        second.seen()
    );

    // A right code clears the count: the next wrong one says nothing.
    assert_eq!(
        code_login(&conf, "ann", &oathtool_at_step(SECRET, step)).code("auth"),
        Some("PAM_SUCCESS")
    );
    let after = code_login(&conf, "ann", &wrong);
    assert!(after.infos().is_empty(), "{}", after.seen());
}

#[test]
#[ignore = "needs root"]
fn a_phone_five_minutes_slow_is_told_then_learned_and_told_once() {
    let daemon = TestDaemon::start(NO_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let step = step_with_margin(12);

    // The phone is 5.5 then 5 minutes behind: outside the window.
    let first = code_login(&conf, "ann", &oathtool_at_step(SECRET, step - 11));
    assert_eq!(first.code("auth"), Some("PAM_AUTH_ERR"));
    assert!(first.infos().is_empty(), "{}", first.seen());
    let second = code_login(&conf, "ann", &oathtool_at_step(SECRET, step - 10));
    assert_eq!(second.code("auth"), Some("PAM_AUTH_ERR"));
    let hint = second.infos().join("\n");
    assert!(
        hint.contains("clock looks about 5 minutes behind") && hint.contains("automatic"),
        "{}",
        second.seen()
    );

    // In the next server step, a third code that agrees: the offset is
    // learned, the login goes through and the user is told.
    while now() / 30 == step {
        std::thread::sleep(Duration::from_millis(200));
    }
    let learned = code_login(&conf, "ann", &oathtool_at_step(SECRET, step - 9));
    assert_eq!(
        learned.code("auth"),
        Some("PAM_SUCCESS"),
        "{}",
        learned.seen()
    );
    assert_eq!(
        learned.infos(),
        vec![
            "Your authenticator's clock is about 5 minutes behind; logins still work, but set its time to automatic."
                .to_owned()
        ]
    );

    // The next login (the phone still slow) is not told again.
    let next = code_login(&conf, "ann", &oathtool_at_step(SECRET, step - 8));
    assert_eq!(next.code("auth"), Some("PAM_SUCCESS"), "{}", next.seen());
    assert!(
        next.infos().is_empty() && next.errors().is_empty(),
        "{}",
        next.seen()
    );

    let state = status(&daemon, "ann");
    assert_eq!(state["clock_offset_seconds"], -300, "{state}");
    let text = String::from_utf8_lossy(&daemon.ctl(&["2fa", "status", "--user", "ann"]).stdout)
        .into_owned();
    assert!(text.contains("about 5 minutes behind"), "{text}");
    let activity = json(&daemon.ctl(&["--json", "activity", "--user", "ann"]));
    let event = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "clock_offset")
        .unwrap_or_else(|| panic!("no clock_offset event: {activity}"));
    assert!(
        event["detail"].as_str().unwrap().contains("300 s behind"),
        "{event}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_locked_account_says_until_when_whatever_the_password() {
    let daemon = TestDaemon::start(QUICK_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let step = step_with_margin(8);
    let wrong = wrong_code_near(SECRET, step, 30);
    let before = now();
    for _ in 0..2 {
        assert_eq!(
            code_login(&conf, "ann", &wrong).code("auth"),
            Some("PAM_AUTH_ERR")
        );
    }
    // The third failure locks, and says so.
    let locking = code_login(&conf, "ann", &wrong);
    let after = now();
    assert_eq!(locking.code("auth"), Some("PAM_AUTH_ERR"));
    let text = locking.errors().join("\n");
    let untils: Vec<String> = (before + 900..=after + 900).map(hhmm).collect();
    assert!(
        untils
            .iter()
            .any(|t| text.contains(&format!("Sign-in is locked until {t} UTC"))),
        "expected one of {untils:?}: {}",
        locking.seen()
    );
    assert!(text.contains("kauthctl user unlock"), "{text}");

    // Locked: a right code, the right password and a wrong one all answer
    // the same, with the text.
    let right_code = code_login(&conf, "ann", &oathtool_at_step(SECRET, step));
    assert_eq!(
        right_code.code("auth"),
        Some("PAM_MAXTRIES"),
        "{}",
        right_code.seen()
    );
    assert_eq!(right_code.errors().join("\n"), text);
    let right = pam_auth(&conf, PASSWORD_SERVICE, "ann", &[PASSWORD, "123456"], None);
    let wrong = pam_auth(
        &conf,
        PASSWORD_SERVICE,
        "ann",
        &[WRONG_PASSWORD, "123456"],
        None,
    );
    assert_eq!(right.seen(), wrong.seen());
    assert_eq!(right.errors().join("\n"), text);
    assert_eq!(right.code("auth"), Some("PAM_MAXTRIES"));

    // The account step alone (an SSH key login that skipped auth) says it
    // too.
    let account = Harness::new(HARNESS, &conf, OTP_SERVICE)
        .user("ann")
        .op("account")
        .run();
    account.assert_completed();
    assert_eq!(account.errors().join("\n"), text, "{}", account.stdout);
    assert_eq!(account.code("account"), Some("PAM_PERM_DENIED"));
}

#[test]
#[ignore = "needs root"]
fn a_locked_host_says_the_same_to_a_known_user_with_the_right_password_and_to_an_unknown_name() {
    let daemon = TestDaemon::start(QUICK_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let host = "192.0.2.44";
    // Three names fail once each from the host: the host is locked.
    let before = now();
    for name in ["x1", "x2", "x3"] {
        let run = pam_auth(
            &conf,
            PASSWORD_SERVICE,
            name,
            &[WRONG_PASSWORD, "123456"],
            Some(host),
        );
        assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"));
    }
    let after = now();
    let ann = pam_auth(
        &conf,
        PASSWORD_SERVICE,
        "ann",
        &[PASSWORD, "123456"],
        Some(host),
    );
    let ghost = pam_auth(
        &conf,
        PASSWORD_SERVICE,
        "ghost",
        &[PASSWORD, "123456"],
        Some(host),
    );
    assert_eq!(ann.seen(), ghost.seen());
    assert_eq!(ann.code("auth"), Some("PAM_MAXTRIES"), "{}", ann.seen());
    let text = ann.errors().join("\n");
    assert!(
        (before + 900..=after + 900)
            .map(hhmm)
            .any(|t| text.contains(&format!("locked until {t} UTC"))),
        "{}",
        ann.seen()
    );
    // From elsewhere, ann is not locked.
    let step = step_with_margin(5);
    let elsewhere = pam_auth(
        &conf,
        PASSWORD_SERVICE,
        "ann",
        &[PASSWORD, &oathtool_at_step(SECRET, step)],
        Some("198.51.100.3"),
    );
    assert_eq!(
        elsewhere.code("auth"),
        Some("PAM_SUCCESS"),
        "{}",
        elsewhere.seen()
    );
}

#[test]
#[ignore = "needs root"]
fn an_unknown_name_sees_what_a_known_user_with_a_wrong_password_sees() {
    let daemon = TestDaemon::start(NO_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let step = step_with_margin(8);
    let wrong = wrong_code_near(SECRET, step, 30);
    // Twice each: the second attempt of each name gets the hint alike.
    for attempt in 1..=2 {
        let known = pam_auth(
            &conf,
            PASSWORD_SERVICE,
            "ann",
            &[WRONG_PASSWORD, &wrong],
            None,
        );
        let unknown = pam_auth(
            &conf,
            PASSWORD_SERVICE,
            "ghost",
            &[WRONG_PASSWORD, &wrong],
            None,
        );
        assert_eq!(known.seen(), unknown.seen(), "attempt {attempt}");
        assert_eq!(known.code("auth"), Some("PAM_AUTH_ERR"));
        assert_eq!(
            known.prompts(),
            vec!["Password: ".to_owned(), "Verification code: ".to_owned()]
        );
        if attempt == 2 {
            assert_eq!(known.infos(), vec![KEEP_FAILING.to_owned()]);
        }
    }
    // A right password with a wrong code looks the same as a wrong one.
    let right_password = pam_auth(&conf, PASSWORD_SERVICE, "ann", &[PASSWORD, &wrong], None);
    let unknown = pam_auth(&conf, PASSWORD_SERVICE, "ghost", &[PASSWORD, &wrong], None);
    assert_eq!(right_password.seen(), unknown.seen());

    // otp_only (an earlier module checked the first factor): a name that
    // is neither a kauthd account nor a system user sees what a user with
    // 2FA and a wrong code sees, the hint included. (A system user without
    // 2FA sets it up at login instead: that needs the first factor, which
    // a name that does not exist cannot have passed.)
    add_user(&daemon, "carol");
    for attempt in 1..=2 {
        let known = code_login(&conf, "carol", &wrong);
        let unknown = code_login(&conf, "ghost2", &wrong);
        assert_eq!(known.seen(), unknown.seen(), "otp_only attempt {attempt}");
        assert_eq!(known.code("auth"), Some("PAM_AUTH_ERR"));
        assert_eq!(known.prompts(), vec!["Verification code: ".to_owned()]);
    }
}

#[test]
#[ignore = "needs root"]
fn a_recovery_code_login_updates_last_used_and_advises_when_few_are_left() {
    let daemon = TestDaemon::start(NO_LOCKS);
    add_user(&daemon, "ann");
    let conf = services(&daemon);
    let codes = daemon.regenerate_recovery_codes("ann");
    assert_eq!(codes.len(), 10);
    assert!(status(&daemon, "ann")["last_used"].is_null());

    let before = now();
    let first = code_login(&conf, "ann", &codes[0]);
    assert_eq!(first.code("auth"), Some("PAM_SUCCESS"), "{}", first.seen());
    let infos = first.infos().join("\n");
    assert!(infos.contains("You have 9 left"), "{infos}");
    assert!(
        !infos.contains("--regenerate"),
        "nine left is plenty: {infos}"
    );
    let last_used = status(&daemon, "ann")["last_used"].as_u64();
    assert!(
        last_used.is_some_and(|t| t >= before),
        "last_used after a recovery-code login: {last_used:?}"
    );

    // Spend down to three left over the protocol, then through PAM.
    for code in &codes[1..7] {
        assert!(login_code(&daemon.socket, "ann", code).succeeded());
    }
    let two_left = code_login(&conf, "ann", &codes[7]);
    let infos = two_left.infos().join("\n");
    assert!(
        infos.contains("Only 2 recovery codes are left")
            && infos.contains("kauthctl 2fa recovery-codes --regenerate"),
        "{infos}"
    );
    let text = String::from_utf8_lossy(&daemon.ctl(&["2fa", "status", "--user", "ann"]).stdout)
        .into_owned();
    assert!(text.contains("Only 2 recovery codes are left"), "{text}");
    assert!(code_login(&conf, "ann", &codes[8]).code("auth") == Some("PAM_SUCCESS"));
    let none_left = code_login(&conf, "ann", &codes[9]);
    assert!(
        none_left.infos().join("\n").contains(
            "You have no recovery codes left; make new ones with `kauthctl 2fa recovery-codes --regenerate`."
        ),
        "{}",
        none_left.seen()
    );
}
