//! pam_kpanel.so through the real libpam: the built module is loaded by
//! `kauth-pam-harness` from a PAM configuration directory of the test's
//! own, against fake daemons that behave well or badly on purpose.
//!
//! Needs `cargo build --workspace` first (the cdylib is not built by
//! `cargo test -p kauth-tests`); a missing module fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kauth_proto::testing::{scripts, Connection, FakeDaemon};
use kauth_proto::{LoginMode, MessageStyle, Outcome, Request};
use kauth_tests::noop_daemon::NoopDaemon;
use kauth_tests::pam::{module_path, Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-test";

/// A conf dir whose service runs pam_kpanel against `socket` with `options`.
fn setup(socket: &Path, options: &str) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, socket, options);
    conf
}

fn harness(conf: &PamConfDir) -> Harness {
    Harness::new(HARNESS, conf, SERVICE)
}

/// The run completed, and the step ended in a PAM error (not success).
fn assert_refused(run: &HarnessRun, step: &str) {
    run.assert_completed();
    let code = run
        .code(step)
        .unwrap_or_else(|| panic!("{step} did not run: {}", run.stdout));
    assert_ne!(code, "PAM_SUCCESS", "{}", run.stdout);
    assert_eq!(run.status, Some(1), "{}", run.stdout);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

fn absent_socket() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kauthd.sock");
    (dir, path)
}

#[test]
fn right_code_logs_in_and_the_prompt_is_shown() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "otp_only");
    let run = harness(&conf)
        .user("ann")
        .answer("314159")
        .rhost("198.51.100.4")
        .run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.status, Some(0));
    assert_eq!(run.prompts(), vec!["Verification code: "]);
    match &daemon.requests()[0] {
        Request::Begin {
            user,
            service,
            rhost,
            mode,
            ..
        } => {
            assert_eq!(user, "ann");
            assert_eq!(service, SERVICE);
            assert_eq!(rhost.as_deref(), Some("198.51.100.4"));
            assert_eq!(*mode, LoginMode::OtpOnly);
        }
        other => panic!("expected begin, got {other:?}"),
    }
}

#[test]
fn wrong_code_is_denied() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "otp_only");
    let run = harness(&conf).user("ann").answer("271828").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"));
}

#[test]
fn empty_answer_is_relayed_and_the_daemons_denial_returned() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").answer("").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"));
    let answered_empty = daemon
        .requests()
        .iter()
        .any(|r| matches!(r, Request::Answer { text } if text.is_empty()));
    assert!(answered_empty, "the empty answer was not relayed");
}

#[test]
fn null_conversation_reply_fails() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").conv_null().run();
    assert_refused(&run, "auth");
    assert_eq!(run.prompts(), vec!["Verification code: "]);
    assert!(!daemon
        .requests()
        .iter()
        .any(|r| matches!(r, Request::Answer { .. })));
}

#[test]
fn failing_conversation_fails() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").conv_fail().run();
    assert_refused(&run, "auth");
}

#[test]
fn huge_answer_is_refused_without_sending() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let huge = "7".repeat(100 * 1024);
    let run = harness(&conf).user("ann").answer(&huge).run();
    assert_refused(&run, "auth");
    assert!(!daemon
        .requests()
        .iter()
        .any(|r| matches!(r, Request::Answer { .. })));
}

#[test]
fn user_name_that_is_not_utf8_is_refused() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf)
        .user_bytes(b"ann\xff\xfe")
        .answer("314159")
        .run();
    assert_refused(&run, "auth");
    assert!(daemon.requests().is_empty());
}

#[test]
fn ten_thousand_character_user_name_is_refused() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf)
        .user(&"a".repeat(10_000))
        .answer("314159")
        .run();
    assert_refused(&run, "auth");
}

#[test]
fn daemon_closing_mid_conversation_fails() {
    let daemon = FakeDaemon::start(scripts::close_mid_conversation());
    let conf = setup(daemon.socket(), "otp_only failmode=safe");
    let run = harness(&conf).user("ann").answer("314159").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTHINFO_UNAVAIL"));
}

#[test]
fn silent_daemon_times_out() {
    let daemon = FakeDaemon::start(scripts::silent());
    let conf = setup(daemon.socket(), "timeout=1");
    let run = harness(&conf).user("ann").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTHINFO_UNAVAIL"));
    assert!(
        run.elapsed < Duration::from_secs(3),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn garbage_from_the_daemon_fails() {
    let daemon = FakeDaemon::start(scripts::garbage());
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTHINFO_UNAVAIL"));
}

#[test]
fn no_daemon_gives_authinfo_unavail() {
    let (_dir, socket) = absent_socket();
    let conf = setup(&socket, "otp_only");
    let run = harness(&conf).user("ann").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_AUTHINFO_UNAVAIL"));
}

#[test]
fn failmode_safe_with_otp_only_lets_the_login_through_without_daemon() {
    let (_dir, socket) = absent_socket();
    let conf = setup(&socket, "otp_only failmode=safe");
    let run = harness(&conf).user("ann").op("login").run();
    run.assert_completed();
    assert_eq!(run.status, Some(0), "{}", run.stdout);
    for step in ["auth", "account", "open_session", "close_session"] {
        assert_eq!(
            run.code(step),
            Some("PAM_SUCCESS"),
            "{step}: {}",
            run.stdout
        );
    }
    assert_eq!(run.session_id(), None);
}

#[test]
fn failmode_safe_without_otp_only_fails_closed() {
    let (_dir, socket) = absent_socket();
    let conf = setup(&socket, "failmode=safe");
    let run = harness(&conf).user("ann").run();
    assert_refused(&run, "auth");
}

#[test]
fn unknown_option_fails_closed() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "otp_only nullok");
    let run = harness(&conf).user("ann").answer("314159").run();
    assert_refused(&run, "auth");
    assert!(daemon.requests().is_empty());
}

#[test]
fn info_message_is_relayed() {
    let daemon = FakeDaemon::start(scripts::info_then_success(
        "Two-factor authentication will be required from 2030-01-01.",
    ));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(
        run.infos(),
        vec!["Two-factor authentication will be required from 2030-01-01."]
    );
}

#[test]
fn info_message_the_application_cannot_show_does_not_block_the_login() {
    let daemon = FakeDaemon::start(scripts::info_then_success("Welcome."));
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").conv_null().run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
}

#[test]
fn error_message_is_relayed() {
    let daemon = FakeDaemon::start(|conn: &mut Connection| {
        if conn.recv().is_some() {
            conn.message(MessageStyle::Error, "Account locked.");
            if conn.recv().is_some() {
                conn.finish(Outcome::Locked);
            }
        }
    });
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf).user("ann").run();
    assert_refused(&run, "auth");
    assert_eq!(run.code("auth"), Some("PAM_MAXTRIES"));
    assert_eq!(run.errors(), vec!["Account locked."]);
}

#[test]
fn full_login_exports_and_closes_the_session() {
    let daemon = FakeDaemon::start(scripts::code_checker("314159"));
    let conf = setup(daemon.socket(), "otp_only");
    let run = harness(&conf)
        .user("ann")
        .answer("314159")
        .arg("--tty")
        .arg("pts/3")
        .op("login")
        .run();
    run.assert_completed();
    assert_eq!(run.status, Some(0), "{}", run.stdout);
    assert_eq!(run.session_id(), Some("fake-session-1"));
    let requests = daemon.requests();
    assert!(requests
        .iter()
        .any(|r| matches!(r, Request::AccountCheck { user, .. } if user == "ann")));
    assert!(requests
        .iter()
        .any(|r| matches!(r, Request::SessionOpen { tty, .. } if tty.as_deref() == Some("pts/3"))));
    assert!(requests
        .iter()
        .any(|r| matches!(r, Request::SessionClose { id } if id == "fake-session-1")));
}

#[test]
fn use_first_pass_takes_the_password_an_earlier_module_collected() {
    let daemon = FakeDaemon::start(|conn: &mut Connection| {
        match conn.recv() {
            Some(Request::Begin {
                authtok: Some(tok),
                mode: LoginMode::Password,
                ..
            }) if tok.expose() == "correct horse battery" => conn.finish(Outcome::Success),
            Some(_) => conn.finish(Outcome::Denied),
            None => false,
        };
    });
    // pam_unix asks for the password and leaves it in PAM_AUTHTOK (it fails
    // itself: the user does not exist, and it is only optional).
    let conf = PamConfDir::new();
    conf.write_service(
        SERVICE,
        &format!(
            "auth optional pam_unix.so nodelay\nauth required {} socket={} use_first_pass\n",
            module_path().display(),
            daemon.socket().display()
        ),
    );
    let run = harness(&conf)
        .user("kauth-test-nosuchuser")
        .answer("correct horse battery")
        .run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.prompts().len(), 1, "pam_kpanel must not ask again");
}

#[test]
fn password_change_is_relayed() {
    let daemon = FakeDaemon::start(|conn: &mut Connection| {
        // The preliminary check only connects; the update converses.
        if let Some(Request::Begin {
            mode: LoginMode::ChangePassword,
            ..
        }) = conn.recv()
        {
            for prompt in [
                "Current password: ",
                "New password: ",
                "Retype new password: ",
            ] {
                conn.prompt(false, prompt);
                if conn.recv().is_none() {
                    return;
                }
            }
            conn.finish(Outcome::Success);
        }
    });
    let conf = setup(daemon.socket(), "");
    let run = harness(&conf)
        .user("ann")
        .answer("old password here")
        .answer("new password here")
        .answer("new password here")
        .op("chauthtok")
        .run();
    run.assert_completed();
    assert_eq!(run.code("chauthtok"), Some("PAM_SUCCESS"), "{}", run.stdout);
    assert_eq!(run.prompts().len(), 3);
}

#[test]
fn module_exports_only_the_six_hooks() {
    let module = module_path();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&module)
        .output()
        .expect("nm (binutils) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut code: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?;
            // Global or weak code symbols.
            matches!(kind, "T" | "W" | "i").then_some(name)
        })
        .collect();
    code.sort_unstable();
    assert_eq!(
        code,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_authenticate",
            "pam_sm_chauthtok",
            "pam_sm_close_session",
            "pam_sm_open_session",
            "pam_sm_setcred",
        ],
        "{listing}"
    );
}

/// The benchmark's floor (`scripts/bench --floor`) logs in through the
/// module to kauth-noop-daemon: it must keep speaking the module's
/// protocol, accepting after its commit or denying.
#[test]
fn the_benchmarks_noop_daemon_accepts_and_denies_through_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let commits = dir.path().join("commits");
    for (mode, expected) in [("accept", "PAM_SUCCESS"), ("deny", "PAM_AUTH_ERR")] {
        let socket = dir.path().join(format!("{mode}.sock"));
        let daemon = NoopDaemon::start(&socket, (mode == "accept").then_some(commits.as_path()));
        let conf = setup(&socket, "otp_only");
        let run = harness(&conf).user("ann").answer("123456").run();
        drop(daemon);
        run.assert_completed();
        assert_eq!(run.code("auth"), Some(expected), "{}", run.stdout);
        assert_eq!(run.prompts(), vec!["Verification code: "]);
    }
    assert_eq!(
        std::fs::metadata(&commits).unwrap().len(),
        4 << 20,
        "the accepting daemon prepares its commit file"
    );
}
