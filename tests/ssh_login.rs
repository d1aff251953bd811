//! SSH logins end to end: the real OpenSSH `sshd` on a loopback port,
//! loading the built `pam_kpanel.so` through the PAM stacks documented in
//! `config/pam.d/` and the sshd settings in `config/sshd_config.d/`; the
//! real kauthd on a temp socket; the real `ssh` client answering prompts
//! through an askpass script; codes from Debian's `oathtool`.
//!
//! Needs root, OpenSSH and oathtool, and `cargo build --workspace` first
//! (the PAM module is a cdylib). Nothing is skipped: a missing piece fails
//! the test with the reason. See `tests/support/sshd.rs` for the harness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kauth_tests::daemon::{stderr, stdout, TestDaemon};
use kauth_tests::login::recovery_codes;
use kauth_tests::sshd::{
    example_lines, example_pam_stack, random_hex, require_root_and_openssh, ClientKey, SshLogin,
    SshdSetup, SystemUser, TestSshd, Totp,
};

/// A kauthd account password (long and uncommon enough for the policy).
const KAUTHD_PASSWORD: &str = "Plover-quartz-tundra-1947";
/// A unix password set with chpasswd.
const UNIX_PASSWORD: &str = "Heron-basalt-ochre-7302";
const PASSWORD_PROMPT: &str = "Password: ";
const CODE_PROMPT: &str = "Verification code: ";

/// The PAM examples, paired with their sshd_config snippets.
const PASSWORD_AND_CODE: (&str, &str) = (
    "pam.d/kpanel-password-and-code",
    "sshd_config.d/kauthd-password-and-code.conf",
);
const UNIX_THEN_CODE: (&str, &str) = (
    "pam.d/sshd-unix-then-code",
    "sshd_config.d/kauthd-unix-then-code.conf",
);
const KEY_THEN_CODE: (&str, &str) = (
    "pam.d/sshd-key-then-code",
    "sshd_config.d/kauthd-key-then-code.conf",
);

/// pam_kpanel lines the examples document but these tests leave out
/// (none: every documented line is tested).
const NOT_SERVED_YET: &[&str] = &[];

/// An sshd using the documented PAM stack and sshd settings of `example`,
/// with pam_kpanel pointed at `daemon`. The module is told `service=sshd`
/// so that kauthd sees the service name a real sshd has.
fn sshd_for(example: (&str, &str), daemon: &TestDaemon) -> TestSshd {
    let (pam, conf) = example;
    sshd_with(pam, example_lines(conf), daemon)
}

fn sshd_with(pam: &str, config: Vec<String>, daemon: &TestDaemon) -> TestSshd {
    let args = format!("socket={} service=sshd", daemon.socket.display());
    TestSshd::start(&SshdSetup {
        pam_stack: example_pam_stack(pam, &args, NOT_SERVED_YET),
        config,
    })
}

fn ctl_ok(daemon: &TestDaemon, args: &[&str], stdin: Option<&str>) -> String {
    let out = daemon.ctl_with(args, stdin, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "kauthctl {args:?} failed: {}{}\nkauthd: {}",
        stdout(&out),
        stderr(&out),
        daemon.stderr()
    );
    stdout(&out)
}

/// A kauthd account with a password for the system user.
fn add_kauthd_password(daemon: &TestDaemon, user: &SystemUser) {
    ctl_ok(
        daemon,
        &["user", "add", &user.name, "--password-stdin"],
        Some(&format!("{KAUTHD_PASSWORD}\n")),
    );
}

/// A random base32 TOTP secret (160 bits, like an authenticator app's).
fn new_secret() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hex = random_hex(32);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            ALPHABET[usize::from(byte % 32)] as char
        })
        .collect()
}

/// `kauthctl 2fa import`: TOTP on at once with a known secret.
fn import_totp(daemon: &TestDaemon, user: &SystemUser) -> Totp {
    let secret = new_secret();
    ctl_ok(
        daemon,
        &["2fa", "import", "--user", &user.name, "--secret", &secret],
        None,
    );
    Totp::new(&secret)
}

/// `kauthctl 2fa enroll --begin`, then `--confirm` with an oathtool code;
/// returns the codes and the recovery codes.
fn enroll(daemon: &TestDaemon, user: &SystemUser) -> (Totp, Vec<String>) {
    let begun = ctl_ok(
        daemon,
        &["--json", "2fa", "enroll", "--begin", "--user", &user.name],
        None,
    );
    let doc: serde_json::Value = serde_json::from_str(&begun).expect(&begun);
    assert_eq!(doc["ok"], true, "{begun}");
    let secret = doc["secret"].as_str().expect(&begun).to_owned();
    let mut totp = Totp::new(&secret);
    let code = totp.fresh();
    let confirmed = ctl_ok(
        daemon,
        &[
            "--json",
            "2fa",
            "enroll",
            "--confirm",
            &code,
            "--user",
            &user.name,
        ],
        None,
    );
    let doc: serde_json::Value = serde_json::from_str(&confirmed).expect(&confirmed);
    assert_eq!(doc["ok"], true, "{confirmed}");
    let recovery = recovery_codes(&doc);
    assert!(!recovery.is_empty(), "{confirmed}");
    (totp, recovery)
}

/// No password or recovery code in kauthd's log or sshd's (DEBUG3) log.
/// (Six-digit codes are not checked: any number in a log may contain one.)
fn assert_not_logged(daemon: &TestDaemon, sshd: &TestSshd, secrets: &[&str]) {
    let logs = [("kauthd", daemon.stderr()), ("sshd", sshd.log())];
    for (who, log) in &logs {
        assert!(!log.is_empty(), "{who} logged nothing");
        for secret in secrets {
            assert!(
                !log.contains(secret),
                "{who}'s log contains a secret:\n{log}"
            );
        }
    }
}

#[test]
fn kauthd_password_and_code_log_in() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("pw");
    add_kauthd_password(&daemon, &user);
    let mut totp = import_totp(&daemon, &user);
    let sshd = sshd_for(PASSWORD_AND_CODE, &daemon);

    let run = SshLogin::new(&sshd, &user)
        .password(KAUTHD_PASSWORD)
        .code(&totp.fresh())
        .run();
    run.assert_logged_in(&sshd);
    assert_eq!(
        run.prompt_texts(),
        [PASSWORD_PROMPT, CODE_PROMPT],
        "{run:?}"
    );
    assert_not_logged(&daemon, &sshd, &[KAUTHD_PASSWORD]);
}

#[test]
fn unix_password_then_code_log_in() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("ux");
    user.set_unix_password(UNIX_PASSWORD);
    let mut totp = import_totp(&daemon, &user);
    let sshd = sshd_for(UNIX_THEN_CODE, &daemon);

    let run = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .code(&totp.fresh())
        .run();
    run.assert_logged_in(&sshd);
    assert_eq!(
        run.prompt_texts(),
        [PASSWORD_PROMPT, CODE_PROMPT],
        "{run:?}"
    );
}

#[test]
fn key_then_code_logs_in_and_the_key_alone_does_not() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("key");
    let mut totp = import_totp(&daemon, &user);
    let key = ClientKey::generate();
    let sshd = sshd_for(KEY_THEN_CODE, &daemon);
    sshd.authorize_key(&user, &key.public);

    // The key alone: sshd accepts it as the first of two methods, and the
    // client has nothing else to offer.
    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey")
        .code(&totp.code_at(Totp::current_step()))
        .run();
    run.assert_denied(&sshd);
    assert!(run.prompts.is_empty(), "{run:?}");
    assert!(
        sshd.log().contains("Partial publickey"),
        "sshd did not record the key as a partial success:\n{}",
        sshd.log()
    );

    // A code alone: sshd does not even start keyboard-interactive first.
    let run = SshLogin::new(&sshd, &user)
        .methods("keyboard-interactive")
        .code(&totp.code_at(Totp::current_step()))
        .run();
    run.assert_denied(&sshd);
    assert!(run.prompts.is_empty(), "{run:?}");

    // The key, then the code.
    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey,keyboard-interactive")
        .code(&totp.fresh())
        .run();
    run.assert_logged_in(&sshd);
    assert_eq!(run.prompt_texts(), [CODE_PROMPT], "{run:?}");
}

#[test]
fn account_hook_refuses_a_key_login_that_skipped_the_code() {
    // The key-then-code setup with its AuthenticationMethods line
    // forgotten, so sshd accepts the key alone: the `account` line of the
    // documented PAM stack still refuses a user who must give a code.
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("acct");
    let _totp = import_totp(&daemon, &user);
    let key = ClientKey::generate();
    let config: Vec<String> = example_lines(KEY_THEN_CODE.1)
        .into_iter()
        .filter(|line| !line.starts_with("AuthenticationMethods"))
        .collect();
    let sshd = sshd_with(KEY_THEN_CODE.0, config, &daemon);
    sshd.authorize_key(&user, &key.public);

    let run = SshLogin::new(&sshd, &user)
        .key(&key)
        .methods("publickey")
        .run();
    run.assert_denied(&sshd);
    assert!(run.prompts.is_empty(), "{run:?}");
    assert!(
        sshd.log().contains("by PAM account configuration"),
        "the refusal did not come from the PAM account step:\n{}",
        sshd.log()
    );
}

/// A wrong code after the right password, and a wrong password before a
/// right code: both refused, with the same prompts and the same messages.
/// Each starts with no failures counted (after a second failure of a name
/// a login adds a hint about the phone's clock, whichever factor failed).
fn assert_wrong_answers_look_the_same(
    daemon: &TestDaemon,
    sshd: &TestSshd,
    user: &SystemUser,
    password: &str,
    totp: &mut Totp,
) {
    let forget_failures = || {
        let _ = daemon.ctl(&["user", "unlock", &user.name]);
    };
    forget_failures();
    let wrong_code = SshLogin::new(sshd, user)
        .password(password)
        .code(&totp.wrong_code())
        .run();
    wrong_code.assert_denied(sshd);
    forget_failures();
    let wrong_password = SshLogin::new(sshd, user)
        .password("Not-the-password-4711")
        .code(&totp.fresh())
        .run();
    wrong_password.assert_denied(sshd);

    assert_eq!(wrong_code.prompt_texts(), [PASSWORD_PROMPT, CODE_PROMPT]);
    assert_eq!(wrong_code.prompt_texts(), wrong_password.prompt_texts());
    assert_eq!(
        wrong_code.stderr, wrong_password.stderr,
        "the client saw different messages"
    );
}

#[test]
fn wrong_code_and_wrong_kauthd_password_look_the_same() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("wpw");
    add_kauthd_password(&daemon, &user);
    let mut totp = import_totp(&daemon, &user);
    let sshd = sshd_for(PASSWORD_AND_CODE, &daemon);

    assert_wrong_answers_look_the_same(&daemon, &sshd, &user, KAUTHD_PASSWORD, &mut totp);

    // The account still works: the refusals were about the answers.
    let run = SshLogin::new(&sshd, &user)
        .password(KAUTHD_PASSWORD)
        .code(&totp.fresh())
        .run();
    run.assert_logged_in(&sshd);
    assert_not_logged(&daemon, &sshd, &[KAUTHD_PASSWORD, "Not-the-password-4711"]);
}

#[test]
fn wrong_code_and_wrong_unix_password_look_the_same() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("wux");
    user.set_unix_password(UNIX_PASSWORD);
    let mut totp = import_totp(&daemon, &user);
    let sshd = sshd_for(UNIX_THEN_CODE, &daemon);

    assert_wrong_answers_look_the_same(&daemon, &sshd, &user, UNIX_PASSWORD, &mut totp);
}

#[test]
fn a_code_works_once() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("once");
    user.set_unix_password(UNIX_PASSWORD);
    let mut totp = import_totp(&daemon, &user);
    let sshd = sshd_for(UNIX_THEN_CODE, &daemon);

    let code = totp.fresh();
    let first = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .code(&code)
        .run();
    first.assert_logged_in(&sshd);
    let again = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .code(&code)
        .run();
    again.assert_denied(&sshd);
    assert_eq!(again.prompt_texts(), [PASSWORD_PROMPT, CODE_PROMPT]);
}

#[test]
fn a_recovery_code_logs_in_once() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("");
    let user = SystemUser::create("rec");
    user.set_unix_password(UNIX_PASSWORD);
    let (_totp, recovery) = enroll(&daemon, &user);
    let sshd = sshd_for(UNIX_THEN_CODE, &daemon);

    // An interactive login shows kauthd's notice after the login.
    let first = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .code(&recovery[0])
        .interactive()
        .run();
    first.assert_logged_in(&sshd);
    assert_eq!(first.prompt_texts(), [PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(
        first.stdout.contains("Recovery code accepted"),
        "the recovery-code notice did not reach the user: {first:?}\n{}",
        sshd.log()
    );
    let again = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .code(&recovery[0])
        .run();
    again.assert_denied(&sshd);
    assert_not_logged(&daemon, &sshd, &[&recovery[0], UNIX_PASSWORD]);
}

#[test]
fn no_login_while_kauthd_is_stopped() {
    require_root_and_openssh();
    let mut daemon = TestDaemon::start("");
    let panel_user = SystemUser::create("dpw");
    add_kauthd_password(&daemon, &panel_user);
    let mut panel_totp = import_totp(&daemon, &panel_user);
    let unix_user = SystemUser::create("dux");
    unix_user.set_unix_password(UNIX_PASSWORD);
    let mut unix_totp = import_totp(&daemon, &unix_user);
    let password_sshd = sshd_for(PASSWORD_AND_CODE, &daemon);
    let unix_sshd = sshd_for(UNIX_THEN_CODE, &daemon);

    // Both work while kauthd runs.
    SshLogin::new(&password_sshd, &panel_user)
        .password(KAUTHD_PASSWORD)
        .code(&panel_totp.fresh())
        .run()
        .assert_logged_in(&password_sshd);
    SshLogin::new(&unix_sshd, &unix_user)
        .password(UNIX_PASSWORD)
        .code(&unix_totp.fresh())
        .run()
        .assert_logged_in(&unix_sshd);

    let status = daemon.stop();
    assert!(status.success(), "kauthd did not stop cleanly: {status}");

    let run = SshLogin::new(&password_sshd, &panel_user)
        .password(KAUTHD_PASSWORD)
        .code(&panel_totp.fresh())
        .run();
    run.assert_denied(&password_sshd);
    // The right system password is not enough either (failmode=secure).
    let run = SshLogin::new(&unix_sshd, &unix_user)
        .password(UNIX_PASSWORD)
        .code(&unix_totp.fresh())
        .run();
    run.assert_denied(&unix_sshd);
}

#[test]
fn user_without_2fa_whom_the_policy_does_not_require_logs_in_with_the_first_factor() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let unix_user = SystemUser::create("nux");
    unix_user.set_unix_password(UNIX_PASSWORD);
    let panel_user = SystemUser::create("npw");
    add_kauthd_password(&daemon, &panel_user);
    let unix_sshd = sshd_for(UNIX_THEN_CODE, &daemon);
    let password_sshd = sshd_for(PASSWORD_AND_CODE, &daemon);

    let run = SshLogin::new(&unix_sshd, &unix_user)
        .password(UNIX_PASSWORD)
        .run();
    run.assert_logged_in(&unix_sshd);
    assert_eq!(run.prompt_texts(), [PASSWORD_PROMPT], "{run:?}");

    let run = SshLogin::new(&password_sshd, &panel_user)
        .password(KAUTHD_PASSWORD)
        .run();
    run.assert_logged_in(&password_sshd);
    assert_eq!(run.prompt_texts(), [PASSWORD_PROMPT], "{run:?}");

    // The first factor still counts.
    let run = SshLogin::new(&unix_sshd, &unix_user)
        .password("Not-the-password-4711")
        .run();
    run.assert_denied(&unix_sshd);
}
