//! Enrollment at login: a user whom the policy requires to use 2FA and who
//! has none sets it up inside the login conversation, once the first
//! factor was checked. Through the real libpam (`kauth-pam-harness` and the
//! built pam_kpanel.so) against the real kauthd, and through the real
//! OpenSSH sshd and ssh client; codes from Debian's `oathtool`.
//!
//! These tests need root: the login conversation is for root and PAM
//! callers, and the sshd tests start sshd and create system users.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use kauth_tests::daemon::{json, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};
use kauth_tests::qr_screen::{qr_rows, to_pbm, zbarimg};
use kauth_tests::sshd::{
    example_lines, example_pam_stack, require_root_and_openssh, ClientKey, SshLogin, SshdSetup,
    SystemUser, TestSshd, Totp,
};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-enroll";
const CODE_PROMPT: &str = "Verification code: ";
const SAVED_PROMPT: &str = "Press Enter once you have saved them: ";
/// A system user every test machine has, with no kauthd account yet.
const USER: &str = "nobody";
/// Linux-PAM's PAM_MAX_MSG_SIZE, the final NUL included.
const PAM_MAX_MSG_SIZE: usize = 512;

/// A PAM service running pam_kpanel in `otp_only` mode, its line saying
/// (`enroll_at_login`) that an earlier module (or an SSH key) checked the
/// first factor.
fn otp_only_service(daemon: &TestDaemon) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "otp_only enroll_at_login");
    conf
}

/// PAM `auth` then `account` for [`USER`], answering `answers` in order.
fn pam_login(conf: &PamConfDir, answers: &[&str]) -> HarnessRun {
    let mut harness = Harness::new(HARNESS, conf, SERVICE)
        .user(USER)
        .op("auth")
        .op("account");
    for answer in answers {
        harness = harness.answer(answer);
    }
    let run = harness.run();
    run.assert_completed();
    run
}

/// `kauthctl 2fa enroll --begin` as root: the pending enrollment's secret
/// and whether it was resumed.
fn begin_as_root(daemon: &TestDaemon) -> (String, bool) {
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", USER]));
    (
        begun["secret"].as_str().expect("secret").to_owned(),
        begun["resumed"].as_bool().expect("resumed"),
    )
}

fn status(daemon: &TestDaemon) -> serde_json::Value {
    json(&daemon.ctl(&["--json", "2fa", "status", "--user", USER]))
}

/// `secret` in groups of four, as the setup key is shown.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The setup texts of a run: an intro, the QR code, the setup key; each
/// text short enough for PAM.
fn assert_setup_shown(run: &HarnessRun, secret: &str) {
    let infos = run.infos();
    for text in &infos {
        assert!(
            text.len() < PAM_MAX_MSG_SIZE,
            "a text of {} bytes is over PAM_MAX_MSG_SIZE:\n{text}",
            text.len()
        );
    }
    let all = infos.join("\n");
    assert!(all.contains("Scan this QR code"), "{all}");
    // Intro, QR code with its explanation beside it, setup key: with the
    // prompt, one 80×24 screen.
    let lines: Vec<&str> = all.lines().collect();
    let setup = lines
        .iter()
        .position(|l| l.starts_with("Setup key: "))
        .map_or(lines.len(), |i| i + 1);
    assert!(setup <= 23, "{setup} lines:\n{all}");
    assert!(
        lines[..setup].iter().all(|l| l.chars().count() <= 80),
        "a line is over 80 columns:\n{all}"
    );
    assert!(all.contains('█') && all.contains('▀'), "no QR code:\n{all}");
    let key_line = format!("Setup key: {}", grouped(secret));
    assert!(
        all.lines().any(|l| l == key_line),
        "no line {key_line:?} in:\n{all}"
    );
}

#[test]
#[ignore = "needs root"]
fn enrollment_at_login_in_otp_only_mode_completes_and_the_next_login_asks_for_a_code() {
    let daemon = TestDaemon::start("");
    let conf = otp_only_service(&daemon);

    // A first login with nobody at the keyboard: the setup is shown, the
    // code prompt gets no answer, nothing is turned on.
    let run = pam_login(&conf, &[]);
    assert_ne!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.prompts(), [CODE_PROMPT], "{}", run.stdout);
    assert_eq!(status(&daemon)["enabled"], false);

    // The enrollment it began is pending; `2fa enroll` resumes it (the
    // same secret: an app entry made from the login's QR code stays good).
    let (secret, resumed) = begin_as_root(&daemon);
    assert!(resumed, "2fa enroll made a new secret over the pending one");
    assert_setup_shown(&run, &secret);

    // Two typos, then the code the app shows: 2FA is on, the recovery
    // codes are shown once, the login (auth and account) goes through.
    // (The longest conversation: it stays within the module's step limit.)
    let step = step_with_margin(8);
    let code = oathtool_at_step(&secret, step);
    let typo = wrong_code_near(&secret, step, 2);
    let run = pam_login(&conf, &[&typo, &typo, &code, ""]);
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.code("account"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(
        run.prompts(),
        [CODE_PROMPT, CODE_PROMPT, CODE_PROMPT, SAVED_PROMPT],
        "{}",
        run.stdout
    );
    assert_eq!(run.errors().len(), 2, "{}", run.stdout);
    assert_setup_shown(&run, &secret);
    let last = run.infos().last().cloned().unwrap_or_default();
    assert!(last.contains("recovery codes"), "{}", run.stdout);
    let state = status(&daemon);
    assert_eq!(state["enabled"], true, "{state}");
    let shown = last.lines().filter(|l| l.starts_with("    ")).count() as u64;
    assert_eq!(state["recovery_codes_left"], shown, "{last}");

    // The next login asks for a code, and only for a code.
    let next = oathtool_at_step(&secret, step + 1);
    let run = pam_login(&conf, &[&next]);
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.code("account"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.prompts(), [CODE_PROMPT], "{}", run.stdout);
    assert!(run.infos().is_empty(), "{}", run.stdout);
}

#[test]
#[ignore = "needs root"]
fn three_wrong_codes_at_login_are_refused_and_turn_nothing_on() {
    let daemon = TestDaemon::start("");
    let conf = otp_only_service(&daemon);
    let (secret, _) = begin_as_root(&daemon);
    let wrong = wrong_code_near(&secret, step_with_margin(5), 2);

    let run = pam_login(&conf, &[&wrong, &wrong, &wrong, "unused"]);
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    assert_eq!(run.code("account"), None, "{}", run.stdout);
    assert_eq!(run.prompts(), [CODE_PROMPT; 3], "{}", run.stdout);
    assert_setup_shown(&run, &secret);
    let errors = run.errors();
    assert_eq!(errors.len(), 3, "{}", run.stdout);
    assert!(errors[0].contains("2 tries left"), "{errors:?}");
    assert!(errors[1].contains("1 try left"), "{errors:?}");
    assert!(errors[2].contains("not set up"), "{errors:?}");
    let state = status(&daemon);
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["recovery_codes_left"], 0, "{state}");
}

#[test]
#[ignore = "needs root"]
fn after_a_failed_required_first_module_no_setup_is_shown() {
    // The shipped unix-then-code stack: a `required` first module runs
    // pam_kpanel even when the password was wrong. Without the line's
    // `enroll_at_login`, kauthd must not show the setup to whoever typed
    // it, or they could put their own app on the account.
    let daemon = TestDaemon::start("");
    let conf = PamConfDir::new();
    conf.write_service(
        SERVICE,
        &format!(
            "auth required pam_deny.so\nauth required {} socket={} otp_only\naccount required {} socket={}\n",
            kauth_tests::pam::module_path().display(),
            daemon.socket.display(),
            kauth_tests::pam::module_path().display(),
            daemon.socket.display(),
        ),
    );
    let run = pam_login(&conf, &["123456", "", ""]);
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    assert!(run.prompts().is_empty(), "{}", run.stdout);
    let shown = format!("{}\n{}", run.infos().join("\n"), run.errors().join("\n"));
    assert!(
        !shown.contains("Setup key") && !shown.contains("QR code") && !shown.contains('█'),
        "the setup was shown after a failed first factor:\n{shown}"
    );
    assert_eq!(status(&daemon)["pending"], false, "an enrollment was begun");
    let log = daemon.stderr();
    assert!(log.contains("without enroll_at_login"), "{log}");
}

#[test]
#[ignore = "needs root"]
fn without_enroll_at_login_the_refusal_stands() {
    let daemon = TestDaemon::start("[policy]\nenroll_at_login = false\n");
    let conf = otp_only_service(&daemon);
    let run = pam_login(&conf, &["123456"]);
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    assert!(run.prompts().is_empty(), "{}", run.stdout);
    assert!(run.infos().is_empty(), "{}", run.stdout);
    let errors = run.errors().join("\n");
    assert!(errors.contains("kauthctl 2fa enroll"), "{errors}");
    assert_eq!(status(&daemon)["pending"], false);
}

#[test]
#[ignore = "needs root"]
fn a_prompt_only_service_gets_the_refusal_and_the_log_says_why() {
    let daemon = TestDaemon::start(&format!(
        "[policy]\nprompt_only_services = [\"{SERVICE}\"]\n"
    ));
    let conf = otp_only_service(&daemon);
    let run = pam_login(&conf, &["123456"]);
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    assert!(run.prompts().is_empty(), "{}", run.stdout);
    assert!(run.infos().is_empty(), "{}", run.stdout);
    assert_eq!(status(&daemon)["pending"], false);
    let log = daemon.stderr();
    assert!(
        log.contains("prompt_only_services") && log.contains("enrollment page"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------
// Through the real sshd: a key, then the enrollment at the prompt.

/// Answers like a person enrolling: reads the setup key out of the text
/// before the code prompt, computes the code with oathtool and types it;
/// any other prompt gets `KAUTH_TEST_CODE` (code prompts) or Enter. Every
/// prompt is logged as the default askpass does, and the setup prompt is
/// also kept as it is in `KAUTH_TEST_SETUP_TEXT`.
const ENROLLING_ASKPASS: &str = r#"#!/bin/sh
printf '%s' "$1" | tr '\n' ' ' >> "$KAUTH_TEST_PROMPT_LOG"
printf '\n' >> "$KAUTH_TEST_PROMPT_LOG"
case "$1" in
*"Setup key: "*)
    printf '%s' "$1" > "$KAUTH_TEST_SETUP_TEXT"
    key=$(printf '%s\n' "$1" | sed -n 's/^Setup key: //p' | tr -d ' ')
    oathtool --totp -b "$key" ;;
*"Verification code:"*) printf '%s\n' "$KAUTH_TEST_CODE" ;;
*) printf '\n' ;;
esac
"#;

/// An sshd with the documented key-then-code setup
/// (`AuthenticationMethods publickey,keyboard-interactive`).
fn key_then_code_sshd(daemon: &TestDaemon) -> TestSshd {
    let args = format!("socket={} service=sshd", daemon.socket.display());
    TestSshd::start(&SshdSetup {
        pam_stack: example_pam_stack("pam.d/sshd-key-then-code", &args, &[]),
        config: example_lines("sshd_config.d/kauthd-key-then-code.conf"),
    })
}

/// The setup key in a logged prompt (newlines became spaces), without its
/// spaces: the groups of base32 after `Setup key: `.
fn setup_key_in(prompt: &str) -> Option<String> {
    let after = prompt.split("Setup key: ").nth(1)?;
    let key: String = after
        .split(' ')
        .take_while(|group| {
            !group.is_empty()
                && group.len() <= 4
                && group
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        })
        .collect();
    (!key.is_empty()).then_some(key)
}

#[test]
#[ignore = "needs root"]
fn an_ssh_key_user_enrolls_at_the_prompt_and_the_next_login_asks_for_a_code() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("enr");
    let key = ClientKey::generate();
    let sshd = key_then_code_sshd(&daemon);
    sshd.authorize_key(&user, &key.public);

    // Wait for a time step with room for the whole login.
    step_with_margin(12);
    let setup_text = daemon.socket.parent().unwrap().join("setup-prompt");
    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey,keyboard-interactive")
        .askpass(ENROLLING_ASKPASS)
        .env("KAUTH_TEST_SETUP_TEXT", setup_text.to_str().unwrap())
        // A terminal's usual locale: ssh shows the QR code's block
        // characters only to a UTF-8 locale (and escapes them otherwise).
        .env("LC_ALL", "C.UTF-8")
        .run();
    run.assert_logged_in(&sshd);
    let prompts = run.prompt_texts();
    assert_eq!(prompts.len(), 2, "{run:?}");
    assert!(prompts[0].contains("Scan this QR code"), "{run:?}");
    assert!(prompts[0].contains('█'), "no QR code in {:?}", prompts[0]);
    assert!(prompts[0].ends_with(CODE_PROMPT), "{run:?}");
    let secret = setup_key_in(&prompts[0]).unwrap_or_else(|| panic!("no setup key: {run:?}"));
    assert_eq!(secret.len(), 32, "{secret}");
    // The QR code as ssh showed it decodes to the enrollment's URI, and
    // with the prompt it fits one 80×24 screen.
    let shown = fs::read_to_string(&setup_text).unwrap();
    let screen: Vec<String> = shown.lines().map(str::to_owned).collect();
    assert!(screen.len() <= 24, "{} lines:\n{shown}", screen.len());
    let (_, rows) = qr_rows(&screen);
    let image = setup_text.with_extension("pbm");
    fs::write(&image, to_pbm(&rows, 4, 4)).unwrap();
    let uri = zbarimg(&image);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}&")), "{uri}");
    // The recovery codes come before a last question, so that ssh shows
    // them even to a login that runs a command.
    assert!(prompts[1].contains("recovery codes"), "{run:?}");
    assert!(prompts[1].ends_with(SAVED_PROMPT), "{run:?}");
    let state = json(&daemon.ctl(&["--json", "2fa", "status", "--user", &user.name]));
    assert_eq!(state["enabled"], true, "{state}");
    let recovery: Vec<&str> = prompts[1]
        .split(' ')
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .collect();
    assert_eq!(
        state["recovery_codes_left"],
        recovery.len() as u64,
        "{recovery:?}"
    );
    // Neither kauthd nor sshd (at DEBUG3) logged the secret or the codes.
    let grouped_secret = grouped(&secret);
    for (who, log) in [("kauthd", daemon.stderr()), ("sshd", sshd.log())] {
        assert!(!log.is_empty(), "{who} logged nothing");
        for secret in recovery
            .iter()
            .chain([&secret.as_str(), &grouped_secret.as_str()])
        {
            assert!(!log.contains(secret), "{who}'s log holds a secret:\n{log}");
        }
    }

    // The next login asks for a code (and only that) and takes a fresh one.
    let mut totp = Totp::new(&secret);
    totp.fresh(); // the step the enrollment may have used
    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey,keyboard-interactive")
        .code(&totp.fresh())
        .run();
    run.assert_logged_in(&sshd);
    assert_eq!(run.prompt_texts(), [CODE_PROMPT], "{run:?}");
}

#[test]
#[ignore = "needs root"]
fn without_enroll_at_login_an_ssh_key_user_without_2fa_is_refused() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("[policy]\nenroll_at_login = false\n");
    let user = SystemUser::create("nen");
    let key = ClientKey::generate();
    let sshd = key_then_code_sshd(&daemon);
    sshd.authorize_key(&user, &key.public);

    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey,keyboard-interactive")
        .askpass(ENROLLING_ASKPASS)
        .run();
    run.assert_denied(&sshd);
    assert!(run.prompts.is_empty(), "{run:?}");
    let state = json(&daemon.ctl(&["--json", "2fa", "status", "--user", &user.name]));
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["pending"], false, "{state}");
}

#[test]
#[ignore = "needs root"]
fn a_kauthd_password_login_enrolls_after_the_right_password_only() {
    const PASSWORD: &str = "Marble-juniper-4417-osprey";
    const PANEL: &str = "kauth-enroll-panel";
    let daemon = TestDaemon::start("");
    daemon.add_account("ann", PASSWORD);
    let conf = PamConfDir::new();
    conf.kpanel_service(PANEL, &daemon.socket, "");
    let login = |answers: &[&str]| {
        let mut harness = Harness::new(HARNESS, &conf, PANEL).user("ann");
        for answer in answers {
            harness = harness.answer(answer);
        }
        let run = harness.run();
        run.assert_completed();
        run
    };

    // A wrong password: the usual code prompt and a denial; no setup shown.
    let run = login(&["Not-the-password-0000", "123456"]);
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    assert_eq!(run.prompts(), ["Password: ", CODE_PROMPT], "{}", run.stdout);
    assert!(run.infos().is_empty(), "{}", run.stdout);
    let state = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    assert_eq!(state["pending"], false, "{state}");

    // The right password: the setup, then the code.
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", "ann"]));
    let secret = begun["secret"].as_str().unwrap().to_owned();
    let code = oathtool_at_step(&secret, step_with_margin(5));
    let run = login(&[PASSWORD, &code, ""]);
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(
        run.prompts(),
        ["Password: ", CODE_PROMPT, SAVED_PROMPT],
        "{}",
        run.stdout
    );
    let infos = run.infos().join("\n");
    assert!(
        infos.contains(&format!("Setup key: {}", grouped(&secret))),
        "{infos}"
    );
    let state = json(&daemon.ctl(&["--json", "2fa", "status", "--user", "ann"]));
    assert_eq!(state["enabled"], true, "{state}");
}
