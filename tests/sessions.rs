//! Sessions and activity: SSH sessions through a real sshd listed and
//! really ended by a sign-out, panel sessions revoked, sessions of dead
//! processes closed after a restart, logins in the activity list, and no
//! secret in anything kauthd writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kauth_tests::daemon::{json, stderr, stdout, TestDaemon};
use kauth_tests::login::{
    connect, converse, login_code, login_password, oathtool_at_step, recovery_codes,
    step_with_margin,
};
use kauth_tests::pam::{Harness, PamConfDir};
use kauth_tests::sshd::{
    example_lines, example_pam_stack, require_root_and_openssh, SshLogin, SshdSetup, SystemUser,
    TestSshd,
};
use serde_json::Value;

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const UNIX_PASSWORD: &str = "Heron-basalt-ochre-7302";
const KAUTHD_PASSWORD: &str = "Plover-quartz-tundra-1947";

/// An sshd whose PAM stack is the documented pam_unix-then-code example
/// (with its session line), against `daemon`.
fn sshd(daemon: &TestDaemon, example: &str, conf: &str) -> TestSshd {
    let args = format!("socket={} service=sshd", daemon.socket.display());
    TestSshd::start(&SshdSetup {
        pam_stack: example_pam_stack(example, &args, &[]),
        config: example_lines(conf),
    })
}

fn unix_sshd(daemon: &TestDaemon) -> TestSshd {
    sshd(
        daemon,
        "pam.d/sshd-unix-then-code",
        "sshd_config.d/kauthd-unix-then-code.conf",
    )
}

fn sessions_of(daemon: &TestDaemon, user: &str) -> Vec<Value> {
    let doc = json(&daemon.ctl(&["--json", "sessions", "--user", user]));
    doc["sessions"].as_array().unwrap().clone()
}

/// Waits until `user` has `n` open sessions; returns them.
fn wait_sessions(daemon: &TestDaemon, user: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = sessions_of(daemon, user);
        if list.len() == n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{user} has {} sessions, expected {n}: {list:?}\n{}",
            list.len(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn long_session(sshd: &TestSshd, user: &SystemUser) -> kauth_tests::sshd::RunningSsh {
    SshLogin::new(sshd, user)
        .password(UNIX_PASSWORD)
        .command("sleep 60")
        .spawn()
}

fn system_user(tag: &str) -> SystemUser {
    let user = SystemUser::create(tag);
    user.set_unix_password(UNIX_PASSWORD);
    user
}

#[test]
fn an_ssh_session_is_listed_and_sign_out_ends_the_connection() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let user = system_user("ses");
    let sshd = unix_sshd(&daemon);
    let mut client = long_session(&sshd, &user);
    let list = wait_sessions(&daemon, &user.name, 1);
    let session = &list[0];
    assert_eq!(session["service"], "sshd");
    assert_eq!(session["rhost"], "127.0.0.1");
    assert!(session["started"].as_i64().unwrap() > 0);
    let text = stdout(&daemon.ctl(&["sessions"]));
    assert!(
        text.contains(&user.name) && text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(client.running(), "the ssh session is up");

    let id = session["id"].as_str().unwrap();
    let out = daemon.ctl(&["sessions", "sign-out", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    assert!(
        client.wait_exit(Duration::from_secs(2)).is_some(),
        "ssh still connected 2 s after the sign-out"
    );
    eprintln!("connection ended {:?} after the sign-out", start.elapsed());
    assert!(sessions_of(&daemon, &user.name).is_empty());
}

#[test]
fn sign_out_everywhere_ends_all_of_a_users_sessions_and_no_one_elses() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let ann = system_user("sa");
    let bob = system_user("sb");
    let sshd = unix_sshd(&daemon);
    let mut ann1 = long_session(&sshd, &ann);
    let mut ann2 = long_session(&sshd, &ann);
    let mut bob1 = long_session(&sshd, &bob);
    wait_sessions(&daemon, &ann.name, 2);
    wait_sessions(&daemon, &bob.name, 1);

    let out = daemon.ctl(&[
        "--json", "sessions", "sign-out", "--all", "--yes", "--user", &ann.name,
    ]);
    let doc = json(&out);
    // Both are reported even though sshd closes each PAM session the
    // moment it is signalled: the record is ended before the signal.
    let ended = doc["signed_out"].as_array().unwrap().len();
    assert_eq!(ended, 2, "signed out: {doc}\n{}", daemon.stderr());
    assert!(
        ann1.wait_exit(Duration::from_secs(2)).is_some(),
        "first session still up"
    );
    assert!(
        ann2.wait_exit(Duration::from_secs(2)).is_some(),
        "second session still up"
    );
    assert!(
        sessions_of(&daemon, &ann.name).is_empty(),
        "{}",
        daemon.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(bob1.running(), "another user's session was ended");
    assert_eq!(sessions_of(&daemon, &bob.name).len(), 1);
}

#[test]
fn a_panel_session_is_valid_until_signed_out() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let conf = PamConfDir::new();
    conf.kpanel_service("kpanel", &daemon.socket, "otp_only");
    let run = Harness::new(HARNESS, &conf, "kpanel")
        .user("ann")
        .rhost("203.0.113.9")
        .op("auth")
        .op("account")
        .op("open")
        .run();
    run.assert_completed();
    assert_eq!(run.code("open_session"), Some("PAM_SUCCESS"), "{run:?}");
    let id = run
        .session_id()
        .expect("KAUTH_SESSION_ID exported")
        .to_owned();

    let check = daemon.ctl(&["sessions", "check", &id]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let listed = sessions_of(&daemon, "ann");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["rhost"], "203.0.113.9");

    assert!(daemon.ctl(&["sessions", "sign-out", &id]).status.success());
    let check = daemon.ctl(&["--json", "sessions", "check", &id]);
    assert_eq!(check.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(doc["valid"], false);
}

#[test]
fn closing_a_pam_session_ends_it() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let conf = PamConfDir::new();
    conf.kpanel_service("kpanel", &daemon.socket, "otp_only");
    let run = Harness::new(HARNESS, &conf, "kpanel")
        .user("ann")
        .op("login")
        .run();
    run.assert_completed();
    assert_eq!(run.code("close_session"), Some("PAM_SUCCESS"), "{run:?}");
    assert!(sessions_of(&daemon, "ann").is_empty());
}

#[test]
fn after_a_restart_sessions_whose_process_died_are_closed() {
    require_root_and_openssh();
    let mut daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let user = system_user("sr");
    let sshd = unix_sshd(&daemon);
    let _client = long_session(&sshd, &user);
    let list = wait_sessions(&daemon, &user.name, 1);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let pid = list[0]["pid"].as_i64().unwrap() as i32;

    daemon.kill9();
    // The session's process dies while kauthd is down.
    // SAFETY: kill(2) on the sshd process the test's own sshd started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the session process did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.restart();

    assert!(
        sessions_of(&daemon, &user.name).is_empty(),
        "the dead session is still listed"
    );
    let check = daemon.ctl(&["sessions", "check", &id]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(daemon.stderr().contains("is gone"), "{}", daemon.stderr());
}

#[test]
fn activity_shows_a_failed_then_a_successful_login_with_the_remote_host() {
    require_root_and_openssh();
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let user = SystemUser::create("act");
    let out = daemon.ctl_with(
        &["user", "add", &user.name, "--password-stdin"],
        Some(&format!("{KAUTHD_PASSWORD}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sshd = sshd(
        &daemon,
        "pam.d/kpanel-password-and-code",
        "sshd_config.d/kauthd-password-and-code.conf",
    );
    SshLogin::new(&sshd, &user)
        .password("Wrong-password-000")
        .run()
        .assert_denied(&sshd);
    SshLogin::new(&sshd, &user)
        .password(KAUTHD_PASSWORD)
        .run()
        .assert_logged_in(&sshd);

    let doc = json(&daemon.ctl(&["--json", "activity", "--user", &user.name]));
    let logins: Vec<&Value> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].as_str().unwrap().starts_with("login_"))
        .collect();
    assert_eq!(logins.len(), 2, "{doc}");
    // Newest first.
    assert_eq!(logins[0]["event"], "login_success");
    assert_eq!(logins[1]["event"], "login_failure");
    for e in &logins {
        assert_eq!(e["rhost"], "127.0.0.1");
        assert_eq!(e["service"], "sshd");
    }
    let text = stdout(&daemon.ctl(&["activity", "--user", &user.name, "--since", "1h"]));
    assert!(
        text.contains("login_failure") && text.contains("wrong password"),
        "{text}"
    );
}

#[test]
fn no_secret_appears_in_anything_kauthd_writes() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"all\"\n");
    let password = "Zephyr-lantern-9157-quince";
    let wrong_password = "Wrong-horse-7719-battery";
    let out = daemon.ctl_with(
        &["user", "add", "ann", "--password-stdin"],
        Some(&format!("{password}\n")),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Enrollment: its secret, its confirmation code, its recovery codes.
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", "ann"]));
    let secret = begun["secret"].as_str().unwrap().to_owned();
    let step = step_with_margin(4);
    let confirm = oathtool_at_step(&secret, step);
    let done = json(&daemon.ctl(&[
        "--json",
        "2fa",
        "enroll",
        "--confirm",
        &confirm,
        "--user",
        "ann",
    ]));
    let recovery = recovery_codes(&done);

    // Failing and succeeding logins, recovery-code uses.
    let good = oathtool_at_step(&secret, step + 1);
    let mut used = vec![
        confirm.clone(),
        good.clone(),
        wrong_password.to_owned(),
        "914352".to_owned(),
    ];
    assert!(!login_password(&daemon.socket, "ann", wrong_password, "914352").succeeded());
    assert!(!login_password(&daemon.socket, "ann", password, "914352").succeeded());
    assert!(login_password(&daemon.socket, "ann", password, &good).succeeded());
    assert!(!login_code(&daemon.socket, "ann", &good).succeeded());
    assert!(login_code(&daemon.socket, "ann", &recovery[0]).succeeded());
    assert!(!login_code(&daemon.socket, "ann", &recovery[0]).succeeded());
    // A malformed request carrying a secret.
    let mut client = connect(&daemon.socket);
    let _ = converse(
        &mut client,
        kauth_proto::Request::Begin {
            user: format!("bad user {password}"),
            service: "x".into(),
            rhost: None,
            tty: None,
            ruser: None,
            mode: kauth_proto::LoginMode::Password,
            authtok: Some(kauth_proto::Secret::from(password)),
            enroll_at_login: false,
            resumable: false,
        },
        &[password],
    );
    used.extend([password.to_owned(), secret.clone()]);
    used.extend(recovery.iter().cloned());

    std::thread::sleep(Duration::from_millis(300));
    let activity = stdout(&daemon.ctl(&["--json", "activity", "--limit", "10000"]));
    let written = [
        ("stderr", daemon.stderr()),
        ("syslog", daemon.syslog()),
        ("activity", activity),
    ];
    assert!(
        written[1].1.contains("login_failure"),
        "the syslog capture received nothing: {}",
        written[1].1
    );
    for (what, text) in &written {
        for s in &used {
            let forms = [s.clone(), s.replace('-', ""), s.to_uppercase()];
            for form in forms {
                assert!(
                    !text.contains(&form),
                    "a secret ({} chars) appears in kauthd's {what}",
                    form.len()
                );
            }
        }
    }
}
