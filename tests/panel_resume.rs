//! Resumable logins for panels over the real protocol, against the real
//! daemon: the password on one connection, the code on another (`resume`
//! with the continuation token), and the session details a panel shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use kauth_proto::{Client, ErrorCode, LoginMode, Outcome, Request, Response, Secret, SessionInfo};
use kauth_tests::daemon::{binary, running_as_root, stderr, world_executable_copy, TestDaemon};
use kauth_tests::login::{connect, oathtool_at_step, session_valid, step_with_margin};

const SECRET: &str = "JBSWY3DPEHPK3PXP";
const PASSWORD: &str = "a long enough password 1";
const NOT_FOUND: &str = "that sign-in has expired or was already used; sign in again";
const NOBODY: u32 = 65534;

/// A daemon with `ann` (a password and 2FA on).
fn daemon_with_ann(extra: &str) -> TestDaemon {
    let daemon = TestDaemon::start(extra);
    daemon.add_account("ann", PASSWORD);
    daemon.import_secret("ann", SECRET);
    daemon
}

fn begin(user: &str, password: &str) -> Request {
    Request::Begin {
        user: user.to_owned(),
        service: "kpanel".to_owned(),
        rhost: Some("203.0.113.9".to_owned()),
        tty: None,
        ruser: None,
        mode: LoginMode::Password,
        authtok: Some(Secret::from(password)),
        enroll_at_login: false,
        resumable: true,
    }
}

/// Begins a resumable login on a connection of its own and returns the
/// token of the code prompt it parked at.
fn park(daemon: &TestDaemon, user: &str, password: &str) -> Secret {
    let mut client = connect(&daemon.socket);
    match client.call(&begin(user, password)).unwrap() {
        Response::Prompt {
            echo: false,
            message,
            continuation: Some(token),
        } => {
            assert_eq!(message, "Verification code: ");
            let text = token.expose();
            assert!(
                text.len() >= 32 && text.bytes().all(|b| b.is_ascii_hexdigit()),
                "token of 128 bits or more, hex: {} characters",
                text.len()
            );
            // The conversation is parked: this connection may go on with
            // other requests.
            assert!(matches!(
                client.call(&Request::Status).unwrap(),
                Response::Status { .. }
            ));
            token
        }
        other => panic!("expected a code prompt with a continuation, got {other:?}"),
    }
}

fn resume(client: &mut Client, token: &Secret, text: &str) -> Response {
    client
        .call(&Request::Resume {
            continuation: token.clone(),
            text: Secret::from(text),
        })
        .unwrap()
}

/// Relays `continue` after each message until `finished`; returns the
/// messages and the outcome.
fn finish(client: &mut Client, mut response: Response) -> (Vec<String>, Outcome) {
    let mut messages = Vec::new();
    for _ in 0..8 {
        response = match response {
            Response::Message { text, .. } => {
                messages.push(text);
                client.call(&Request::Continue).unwrap()
            }
            Response::Finished { outcome } => return (messages, outcome),
            other => panic!("unexpected step {other:?}"),
        };
    }
    panic!("the conversation did not finish");
}

fn assert_not_found(response: &Response) {
    match response {
        Response::Error {
            code: ErrorCode::NotFound,
            message,
        } => assert_eq!(message, NOT_FOUND),
        other => panic!("expected not_found, got {other:?}"),
    }
}

fn events(client: &mut Client, user: &str) -> Vec<(String, String)> {
    let request = Request::Activity {
        user: Some(user.to_owned()),
        since: None,
        limit: None,
        after: None,
    };
    match client.call(&request).unwrap() {
        Response::ActivityList { events, .. } => events
            .into_iter()
            .map(|e| (e.event, e.service.unwrap_or_default()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panel_login_gives_the_code_on_a_second_connection() {
    let daemon = daemon_with_ann("");
    let step = step_with_margin(5);
    let token = park(&daemon, "ann", PASSWORD);
    let mut second = connect(&daemon.socket);
    let first = resume(&mut second, &token, &oathtool_at_step(SECRET, step));
    let (messages, outcome) = finish(&mut second, first);
    assert_eq!(outcome, Outcome::Success, "{messages:?}");
    let events = events(&mut second, "ann");
    assert!(
        events.contains(&("login_success".to_owned(), "kpanel".to_owned())),
        "{events:?}"
    );
    // Single use: the same token again is refused, and so is the same
    // code in a new login (the replay guard of any login).
    assert_not_found(&resume(
        &mut second,
        &token,
        &oathtool_at_step(SECRET, step),
    ));
    let again = park(&daemon, "ann", PASSWORD);
    let replayed = resume(&mut second, &again, &oathtool_at_step(SECRET, step));
    let (messages, outcome) = finish(&mut second, replayed);
    assert_eq!(outcome, Outcome::Denied);
    assert!(
        messages.iter().any(|m| m.contains("already used")),
        "{messages:?}"
    );
}

#[test]
fn a_wrong_password_still_parks_at_the_code_and_is_denied() {
    let daemon = daemon_with_ann("");
    let step = step_with_margin(5);
    let token = park(&daemon, "ann", "not the password at all");
    let mut second = connect(&daemon.socket);
    let first = resume(&mut second, &token, &oathtool_at_step(SECRET, step));
    assert_eq!(finish(&mut second, first).1, Outcome::Denied);
    // An unknown name looks the same.
    let token = park(&daemon, "nosuchuser", PASSWORD);
    let first = resume(&mut second, &token, "123456");
    assert_eq!(finish(&mut second, first).1, Outcome::Denied);
}

#[test]
fn wrong_codes_through_resume_count_toward_the_lock() {
    let daemon = daemon_with_ann("[ratelimit]\nmax_failures = 3\nwindow_seconds = 300\n");
    let step = step_with_margin(8);
    let wrong = kauth_tests::login::wrong_code_near(SECRET, step, 3);
    let mut second = connect(&daemon.socket);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let token = park(&daemon, "ann", PASSWORD);
        let first = resume(&mut second, &token, &wrong);
        outcomes.push(finish(&mut second, first));
    }
    assert!(outcomes[..2].iter().all(|(_, o)| *o == Outcome::Denied));
    assert!(
        outcomes[2].0.iter().any(|m| m.contains("locked until")),
        "the third failure sets the lock: {outcomes:?}"
    );
    // Locked now: even the right code is not looked at.
    let mut client = connect(&daemon.socket);
    let first = client.call(&begin("ann", PASSWORD)).unwrap();
    assert_eq!(finish(&mut client, first).1, Outcome::Locked);
}

#[test]
fn an_unknown_or_expired_token_is_not_found_and_logged() {
    let daemon = daemon_with_ann("idle_timeout = 2");
    let mut client = connect(&daemon.socket);
    assert_not_found(&resume(
        &mut client,
        &Secret::from("00112233445566778899aabbccddeeff0011223344556677"),
        "123456",
    ));
    let token = park(&daemon, "ann", PASSWORD);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let step = step_with_margin(5);
    let mut late = connect(&daemon.socket);
    assert_not_found(&resume(&mut late, &token, &oathtool_at_step(SECRET, step)));
    assert!(daemon.syslog_receives("refused to resume a login"));
    assert!(daemon.syslog_receives("expired"));
    assert!(!daemon.syslog().contains(token.expose()));
}

#[test]
fn a_flood_of_made_up_tokens_is_refused_without_flooding_the_log() {
    let daemon = daemon_with_ann("");
    let mut client = connect(&daemon.socket);
    for i in 0..300u32 {
        let token = Secret::from(format!("{i:048x}").as_str());
        assert_not_found(&resume(&mut client, &token, "123456"));
    }
    // A real login still parks and resumes after the flood.
    let token = park(&daemon, "ann", PASSWORD);
    let code = oathtool_at_step(SECRET, step_with_margin(5));
    let mut again = connect(&daemon.socket);
    assert!(
        !matches!(resume(&mut again, &token, &code), Response::Error { .. }),
        "the real token was refused after the flood"
    );
    assert!(daemon.syslog_receives("refused to resume a login"));
    let lines = daemon
        .syslog()
        .lines()
        .filter(|l| l.contains("refused to resume a login"))
        .count();
    assert!(
        (1..=20).contains(&lines),
        "300 refused tokens gave {lines} log lines"
    );
}

/// Runs `kauth-frame-client` as `uid` with `requests` (JSON); returns the
/// answers, one per line.
fn frame_client_as(daemon: &TestDaemon, uid: u32, requests: &[String]) -> Vec<serde_json::Value> {
    let program = world_executable_copy(&binary("kauth-frame-client"), daemon.dir.path());
    let out = Command::new(program)
        .arg(&daemon.socket)
        .args(requests)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run kauth-frame-client");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON answer"))
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_token_presented_by_another_uid_is_not_found_and_spent() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = daemon_with_ann(&format!("[access]\npam_callers = [{NOBODY}]\n"));
    let step = step_with_margin(5);
    let token = park(&daemon, "ann", PASSWORD);
    let code = oathtool_at_step(SECRET, step);
    let request = serde_json::to_string(&Request::Resume {
        continuation: token.clone(),
        text: Secret::from(code.as_str()),
    })
    .unwrap();
    let answers = frame_client_as(&daemon, NOBODY, &[request]);
    assert_eq!(answers[0]["type"], "error", "{answers:?}");
    assert_eq!(answers[0]["code"], "not_found");
    assert_eq!(answers[0]["message"], NOT_FOUND);
    // Shown to the wrong uid, it is spent: the panel's uid signs in again.
    let mut own = connect(&daemon.socket);
    assert_not_found(&resume(&mut own, &token, &code));
    assert!(daemon.syslog_receives("another uid"));
}

#[test]
#[ignore = "needs root"]
fn only_root_and_pam_callers_may_begin_a_resumable_login() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = daemon_with_ann("");
    let request = serde_json::to_string(&begin("ann", PASSWORD)).unwrap();
    let answers = frame_client_as(&daemon, NOBODY, &[request]);
    assert_eq!(answers[0]["type"], "error", "{answers:?}");
    assert_eq!(answers[0]["code"], "forbidden");
}

#[test]
fn a_recovery_code_through_resume_says_how_many_are_left() {
    let daemon = daemon_with_ann("");
    let codes = daemon.regenerate_recovery_codes("ann");
    let token = park(&daemon, "ann", PASSWORD);
    let mut second = connect(&daemon.socket);
    let first = resume(&mut second, &token, &codes[0]);
    let (messages, outcome) = finish(&mut second, first);
    assert_eq!(outcome, Outcome::Success, "{messages:?}");
    let left = codes.len() - 1;
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("You have {left} left"))),
        "{messages:?}"
    );
}

fn open_session(client: &mut Client, client_text: Option<&str>) -> String {
    let request = Request::SessionOpen {
        user: "ann".to_owned(),
        service: "kpanel".to_owned(),
        rhost: Some("203.0.113.9".to_owned()),
        tty: None,
        client: client_text.map(str::to_owned),
    };
    match client.call(&request).unwrap() {
        Response::SessionOpened { id } => id,
        other => panic!("{other:?}"),
    }
}

fn session(client: &mut Client, id: &str) -> SessionInfo {
    let request = Request::Sessions {
        user: Some("ann".to_owned()),
        after: None,
        limit: None,
    };
    match client.call(&request).unwrap() {
        Response::SessionList { sessions, .. } => sessions
            .into_iter()
            .find(|s| s.id == id)
            .expect("the session is listed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sessions_show_the_client_and_when_the_panel_last_checked_them() {
    let daemon = daemon_with_ann("");
    let mut client = connect(&daemon.socket);
    let agent = format!(
        "Mozilla/5.0 (X11; Linux x86_64)\u{1b}[2J\u{202e} Firefox/128.0 {}",
        "é".repeat(150)
    );
    let id = open_session(&mut client, Some(&agent));
    let listed = session(&mut client, &id);
    let shown = listed.client.expect("the client is shown");
    assert!(
        shown.starts_with("Mozilla/5.0 (X11; Linux x86_64)[2J Firefox/128.0 é"),
        "{shown}"
    );
    assert!(shown.len() <= 200 && shown.len() > 190, "{}", shown.len());
    assert_eq!(listed.last_active, None);

    assert!(session_valid(&mut client, &id));
    let first = session(&mut client, &id).last_active.expect("noted");
    let now = kauth_tests::login::now() as i64;
    assert!((now - first).abs() <= 5, "{first} vs {now}");
    // Within ten seconds, another check writes nothing.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert!(session_valid(&mut client, &id));
    assert_eq!(session(&mut client, &id).last_active, Some(first));

    let text = kauth_tests::daemon::stdout(&daemon.ctl(&["sessions", "--user", "ann"]));
    assert!(text.contains("Mozilla/5.0"), "{text}");
    assert!(text.to_lowercase().contains("active"), "{text}");
}

#[test]
fn signing_out_a_panel_session_revokes_it_without_signalling_the_panel() {
    // The panel here is this test process: the connection's peer, so the
    // session's process. A SIGTERM would end the test run.
    let daemon = daemon_with_ann("[sessions]\nkill_services = [\"sshd\"]\n");
    let mut client = connect(&daemon.socket);
    let one = open_session(&mut client, Some("first browser"));
    let two = open_session(&mut client, Some("second browser"));
    let request = Request::SignOut {
        id: Some(one.clone()),
        user: None,
        all: false,
        dry_run: false,
    };
    assert!(matches!(
        client.call(&request).unwrap(),
        Response::SignedOut { .. }
    ));
    assert!(!session_valid(&mut client, &one));
    assert!(session_valid(&mut client, &two));
    let everywhere = Request::SignOut {
        id: None,
        user: Some("ann".to_owned()),
        all: true,
        dry_run: false,
    };
    assert!(matches!(
        client.call(&everywhere).unwrap(),
        Response::SignedOut { .. }
    ));
    assert!(!session_valid(&mut client, &two));
    // Still here, and so is the connection.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(matches!(
        client.call(&Request::Status).unwrap(),
        Response::Status { .. }
    ));
}

#[test]
fn an_enrollment_at_login_parks_at_its_code_prompt_too() {
    // The default policy requires 2FA of everyone and sets it up at login.
    let daemon = TestDaemon::start("");
    daemon.add_account("bob", PASSWORD);
    let mut client = connect(&daemon.socket);
    let mut response = client.call(&begin("bob", PASSWORD)).unwrap();
    let mut setup_key = None;
    let token = loop {
        response = match response {
            Response::Message { text, .. } => {
                if let Some(key) = text.lines().find_map(|l| l.strip_prefix("Setup key: ")) {
                    setup_key = Some(key.replace(' ', ""));
                }
                client.call(&Request::Continue).unwrap()
            }
            Response::Prompt {
                echo: false,
                continuation: Some(token),
                ..
            } => break token,
            other => panic!("unexpected step {other:?}"),
        };
    };
    let secret = setup_key.expect("the setup key is shown");
    let mut second = connect(&daemon.socket);
    let mut response = resume(
        &mut second,
        &token,
        &oathtool_at_step(&secret, step_with_margin(5)),
    );
    let mut saw_codes = false;
    let outcome = loop {
        response = match response {
            Response::Message { text, .. } => {
                saw_codes |= text.contains("Your recovery codes are below");
                second.call(&Request::Continue).unwrap()
            }
            // "Press Enter once you have saved them": echo on, not parked.
            Response::Prompt {
                echo: true,
                continuation: None,
                ..
            } => second
                .call(&Request::Answer {
                    text: Secret::from(""),
                })
                .unwrap(),
            Response::Finished { outcome } => break outcome,
            other => panic!("unexpected step {other:?}"),
        };
    };
    assert!(saw_codes, "the recovery codes are shown");
    assert_eq!(outcome, Outcome::Success);
}
