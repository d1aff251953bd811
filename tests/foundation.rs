//! The foundation: the real kauthd on a temporary socket and state dir,
//! driven by the real kauthctl and by hand-made frames.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kauth_proto::{read_frame, write_frame, ErrorCode, FrameError, Request, Response};
use kauth_tests::daemon::{binary, running_as_root, stderr, stdout, TestDaemon};

const NOBODY: u32 = 65534;

fn hello() -> Request {
    Request::Hello {
        version: kauth_proto::PROTOCOL_VERSION,
        client: "test".into(),
    }
}

/// A raw connection that has said hello.
fn raw_client(daemon: &TestDaemon) -> UnixStream {
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(&mut s, &hello()).unwrap();
    let welcome: Response = read_frame(&mut s).unwrap();
    assert!(matches!(welcome, Response::Welcome { .. }), "{welcome:?}");
    s
}

/// A raw connection that has said hello, retried while kauthd still
/// counts an earlier, closed connection against the limit.
fn raw_client_once_free(daemon: &TestDaemon) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write_frame(&mut s, &hello()).unwrap();
        match read_frame::<_, Response>(&mut s).unwrap() {
            Response::Welcome { .. } => return s,
            Response::Error {
                code: ErrorCode::Busy,
                ..
            } if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

fn user_names(daemon: &TestDaemon) -> Vec<String> {
    let out = daemon.ctl(&["--json", "user", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The daemon still answers a normal request on a new connection.
fn assert_still_serving(daemon: &TestDaemon) {
    let out = daemon.ctl(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "daemon stopped serving: {}",
        daemon.stderr()
    );
}

#[test]
fn user_add_then_list_round_trips_as_text_and_json() {
    let daemon = TestDaemon::start("");
    let out = daemon.ctl(&["user", "add", "ann", "--uid", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("account ann added"));
    let out = daemon.ctl_with(
        &["--json", "user", "add", "bob", "--password-stdin"],
        Some("a long enough password\n"),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);

    let text = stdout(&daemon.ctl(&["user", "list"]));
    let ann = text.lines().find(|l| l.starts_with("ann ")).expect(&text);
    assert!(ann.contains("1000") && ann.contains(" no "), "{ann}");
    let bob = text.lines().find(|l| l.starts_with("bob ")).expect(&text);
    assert!(bob.contains(" yes "), "bob has a password: {bob}");

    let out = daemon.ctl(&["--json", "user", "list"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = doc["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["name"], "ann");
    assert_eq!(users[0]["uid"], 1000);
    assert_eq!(users[1]["name"], "bob");
    assert_eq!(users[1]["has_password"], true);
}

#[test]
fn lock_unlock_and_delete_change_the_listing() {
    let daemon = TestDaemon::start("");
    assert!(daemon.ctl(&["user", "add", "ann"]).status.success());
    assert!(daemon.ctl(&["user", "lock", "ann"]).status.success());
    let doc: serde_json::Value =
        serde_json::from_slice(&daemon.ctl(&["--json", "user", "list"]).stdout).unwrap();
    assert_eq!(doc["users"][0]["locked"], true);
    assert!(daemon.ctl(&["user", "unlock", "ann"]).status.success());
    let doc: serde_json::Value =
        serde_json::from_slice(&daemon.ctl(&["--json", "user", "list"]).stdout).unwrap();
    assert_eq!(doc["users"][0]["locked"], false);
    assert!(daemon.ctl(&["user", "del", "ann"]).status.success());
    assert!(user_names(&daemon).is_empty());
    let out = daemon.ctl(&["user", "del", "ann"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no account named ann"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn duplicate_and_bad_names_are_refused_with_exit_1() {
    let daemon = TestDaemon::start("");
    assert!(daemon.ctl(&["user", "add", "ann"]).status.success());
    let out = daemon.ctl(&["user", "add", "ann"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
    let out = daemon.ctl(&["user", "add", "bad name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("may contain only"),
        "{}",
        stderr(&out)
    );
    let out = daemon.ctl_with(
        &["user", "add", "cat", "--password-stdin"],
        Some("short\n"),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn unprivileged_user_add_is_refused_and_nothing_is_written() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    let out = daemon.ctl_with(&["user", "add", "eve"], None, Some(NOBODY));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only root may add accounts"),
        "{}",
        stderr(&out)
    );
    let out = daemon.ctl_with(&["--json", "user", "add", "eve"], None, Some(NOBODY));
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"], "forbidden");
    // Status is for everyone.
    let out = daemon.ctl_with(&["status"], None, Some(NOBODY));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        user_names(&daemon).is_empty(),
        "a refused add wrote an account"
    );
}

#[test]
fn unreachable_daemon_exits_3_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary("kauthctl"))
        .args([
            "--socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("kauthd is not running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_error_exits_2() {
    let out = Command::new(binary("kauthctl"))
        .args(["user", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn one_mebibyte_frame_is_refused_and_the_daemon_keeps_serving() {
    let daemon = TestDaemon::start("");
    let mut bystander = raw_client(&daemon);
    let mut s = raw_client(&daemon);
    let len: u32 = 1024 * 1024;
    s.write_all(&len.to_be_bytes()).unwrap();
    // The daemon refuses on the length alone; the body may not even be read.
    let _ = s.write_all(&vec![b'x'; 4096]);
    match read_frame::<_, Response>(&mut s) {
        Ok(Response::Error { code, .. }) => assert_eq!(code, ErrorCode::TooLarge),
        Ok(other) => panic!("unexpected answer {other:?}"),
        Err(_) => {} // closed is fine too
    }
    // The connection is closed afterwards.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    write_frame(&mut bystander, &Request::Status).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut bystander).unwrap(),
        Response::Status { .. }
    ));
    assert_still_serving(&daemon);
}

#[test]
fn random_bytes_get_an_error_or_a_close_and_the_daemon_keeps_serving() {
    let daemon = TestDaemon::start("");
    // Deterministic pseudo-random bytes (xorshift), different lengths.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..20 {
        let mut bytes = Vec::new();
        for _ in 0..(16 + round * 97) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if round % 2 == 1 {
            write_frame(&mut s, &hello()).unwrap();
            let _: Response = read_frame(&mut s).unwrap();
        }
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // an error frame or nothing; must end
    }
    assert_still_serving(&daemon);
}

#[test]
fn truncated_frame_is_dropped_and_the_daemon_keeps_serving() {
    let daemon = TestDaemon::start("");
    let mut s = raw_client(&daemon);
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"type\":\"user_").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to half a frame");
    assert_still_serving(&daemon);
}

#[test]
fn unknown_request_kind_gets_an_error_and_the_connection_goes_on() {
    let daemon = TestDaemon::start("");
    let mut s = raw_client(&daemon);
    let body = br#"{"type":"format_disk","now":true}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    match read_frame::<_, Response>(&mut s).unwrap() {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(message.contains("unknown"), "{message}");
        }
        other => panic!("unexpected answer {other:?}"),
    }
    write_frame(&mut s, &Request::Status).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut s).unwrap(),
        Response::Status { .. }
    ));
}

#[test]
fn a_request_before_hello_or_a_wrong_version_is_refused() {
    let daemon = TestDaemon::start("");
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    let list = Request::UserList {
        after: None,
        limit: None,
    };
    write_frame(&mut s, &list).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut s).unwrap(),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    write_frame(
        &mut s,
        &Request::Hello {
            version: 99,
            client: "future".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut s).unwrap(),
        Response::Error {
            code: ErrorCode::UnsupportedVersion,
            ..
        }
    ));
    assert_still_serving(&daemon);
}

#[test]
fn acknowledged_adds_survive_kill_9() {
    let mut daemon = TestDaemon::start("");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let socket = daemon.socket.clone();
    let writer = {
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write_frame(&mut s, &hello()).unwrap();
            let _: Response = read_frame(&mut s).unwrap();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("burst{i}");
                if write_frame(
                    &mut s,
                    &Request::UserAdd {
                        name: name.clone(),
                        password: None,
                        uid: None,
                    },
                )
                .is_err()
                {
                    break;
                }
                match read_frame::<_, Response>(&mut s) {
                    Ok(Response::Done) => acknowledged.lock().unwrap().push(name),
                    Ok(other) => panic!("unexpected answer {other:?}"),
                    Err(FrameError::Closed | FrameError::Io(_)) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    daemon.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() >= 30,
        "too few adds before the kill: {}",
        acked.len()
    );

    daemon.restart();
    let names = user_names(&daemon);
    for name in &acked {
        assert!(
            names.contains(name),
            "acknowledged account {name} lost after kill -9"
        );
    }
}

#[test]
fn check_config_names_an_unknown_key_and_a_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("k.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(binary("kauthd"))
            .args(["--check-config", "--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = check("[ratelimit]\nmax_failurez = 3\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("max_failurez"), "{}", stderr(&out));

    let out = check("[policy]\nenabled = \"yes\"\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("enabled"), "{}", stderr(&out));

    let out = check("[totp]\nperiod = 45\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("totp.period"), "{}", stderr(&out));

    let out = check("[totp]\nissuer = \"Kapsule Cloud\"\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn documented_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/kauthd.toml");
    let out = Command::new(binary("kauthd"))
        .args(["--check-config", "--config", example])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn second_daemon_on_a_live_socket_refuses_to_start() {
    let daemon = TestDaemon::start("");
    let out = Command::new(binary("kauthd"))
        .args(["--config", daemon.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already listening"),
        "{}",
        stderr(&out)
    );
    assert_still_serving(&daemon);
}

#[test]
fn stale_socket_is_replaced_and_sigterm_stops_cleanly() {
    let mut daemon = TestDaemon::start("");
    daemon.kill9();
    assert!(daemon.socket.exists(), "kill -9 leaves the socket behind");
    daemon.restart();
    assert_still_serving(&daemon);
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    assert!(!daemon.socket.exists(), "SIGTERM removes the socket");
}

#[test]
fn state_is_owner_only_and_socket_is_connectable() {
    let daemon = TestDaemon::start("");
    let db = std::fs::metadata(daemon.state_dir.join("kauthd.sqlite")).unwrap();
    assert_eq!(db.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(&daemon.state_dir).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let sock = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(sock.permissions().mode() & 0o777, 0o666);
}

#[test]
fn sighup_reloads_a_good_config_and_keeps_the_old_on_a_bad_one() {
    let daemon = TestDaemon::start("");
    daemon.write_config("[totp]\ndigitz = 6\n");
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.stderr().contains("configuration not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.stderr().contains("digitz"));
    assert_still_serving(&daemon);
    daemon.write_config("[totp]\ndigits = 8\n");
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.stderr().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload logged: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_still_serving(&daemon);
}

#[test]
fn idle_connections_are_closed() {
    let daemon = TestDaemon::start("idle_timeout = 1\n");
    let mut s = raw_client(&daemon);
    let start = Instant::now();
    let mut buf = [0u8; 1];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the daemon closes an idle connection");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn connections_over_the_limit_are_turned_away() {
    let daemon = TestDaemon::start("max_connections = 2\n");
    // The readiness check's connection may still hold a slot for a moment.
    let _a = raw_client_once_free(&daemon);
    let _b = raw_client_once_free(&daemon);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = UnixStream::connect(&daemon.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write_frame(&mut c, &hello());
    match read_frame::<_, Response>(&mut c) {
        Ok(Response::Error { code, .. }) => assert_eq!(code, ErrorCode::Busy),
        other => panic!("expected busy, got {other:?}"),
    }
    drop(_a);
    drop(_b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.ctl(&["status"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "slots not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
