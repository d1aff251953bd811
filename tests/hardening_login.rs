//! Logins while kauthd is busy or absent, and the account step's memory of
//! a code, through the real libpam, the built pam_kpanel.so and a real
//! kauthd.
//!
//! - `failmode=safe` lets a login through on the first factor alone only
//!   when nothing listens on the socket; a kauthd that is there but turns
//!   the connection away (`busy`) fails closed.
//! - A turned-away client reads a clear `busy` answer (kauthd reads its
//!   hello first), and silent turned-away clients do not hold kauthd up.
//! - The account step counts a code only for a few seconds after it was
//!   given, in the process that gave it or its parent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kauth_proto::{
    read_frame, write_frame, Client, ClientError, ErrorCode, Request, Response, PROTOCOL_VERSION,
};
use kauth_tests::daemon::{stderr, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin};
use kauth_tests::pam::{Harness, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-test";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Connection slots of the busy daemon, all held by idle clients.
const SLOTS: usize = 2;
/// Logins tried against the busy daemon, by this many parallel workers.
const LOGINS: usize = 200;
const WORKERS: usize = 4;

fn trusted_uids() -> [u32; 2] {
    // SAFETY: geteuid has no preconditions and cannot fail.
    [0, unsafe { libc::geteuid() }]
}

fn hello() -> Request {
    Request::Hello {
        version: PROTOCOL_VERSION,
        client: "hardening test".into(),
    }
}

/// Takes one connection slot (hello done) and keeps it while the client lives.
fn hold_a_slot(socket: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(
            socket,
            Duration::from_secs(5),
            &trusted_uids(),
            "slot holder",
        ) {
            Ok(client) => return client,
            // kauthctl status, run while the daemon started, may still hold one.
            Err(ClientError::Busy(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot take a connection slot: {e}"),
        }
    }
}

/// A kauthd whose every connection slot is held by an idle client.
fn busy_daemon() -> (TestDaemon, Vec<Client>) {
    let daemon = TestDaemon::start(&format!("max_connections = {SLOTS}\nidle_timeout = 600\n"));
    let holders: Vec<Client> = (0..SLOTS).map(|_| hold_a_slot(&daemon.socket)).collect();
    let extra = Client::connect(&daemon.socket, Duration::from_secs(5), &trusted_uids(), "t");
    assert!(
        matches!(extra, Err(ClientError::Busy(_))),
        "the daemon is not busy: {extra:?}"
    );
    (daemon, holders)
}

fn kpanel_service(socket: &Path, options: &str) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, socket, options);
    conf
}

/// How often each PAM code came back.
type Tally = BTreeMap<String, usize>;

fn count(tally: &Mutex<Tally>, code: Option<&str>) {
    let code = code.unwrap_or("(step did not run)").to_owned();
    *tally.lock().unwrap().entry(code).or_default() += 1;
}

#[test]
fn failmode_safe_lets_no_wrong_code_through_while_kauthd_is_busy() {
    let (daemon, _holders) = busy_daemon();
    let conf = kpanel_service(&daemon.socket, "otp_only failmode=safe");
    let auth = Harness::new(HARNESS, &conf, SERVICE)
        .user("ann")
        .answer("000000")
        .op("auth");
    let account = Harness::new(HARNESS, &conf, SERVICE)
        .user("ann")
        .op("account");
    let auth_codes = Mutex::new(Tally::new());
    let account_codes = Mutex::new(Tally::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                for _ in 0..LOGINS / WORKERS {
                    let run = auth.run();
                    run.assert_completed();
                    count(&auth_codes, run.code("auth"));
                    let run = account.run();
                    run.assert_completed();
                    count(&account_codes, run.code("account"));
                }
            });
        }
    });
    let expected = Tally::from([("PAM_AUTHINFO_UNAVAIL".to_owned(), LOGINS)]);
    assert_eq!(
        auth_codes.into_inner().unwrap(),
        expected,
        "auth with a wrong code while kauthd was busy"
    );
    assert_eq!(
        account_codes.into_inner().unwrap(),
        expected,
        "account while kauthd was busy"
    );
    assert!(
        daemon
            .stderr()
            .contains(&format!("away: all {SLOTS} connection slots are in use")),
        "kauthd never turned a login away: {}",
        daemon.stderr()
    );
}

#[test]
fn failmode_safe_still_lets_the_login_through_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let refused = dir.path().join("nobody-accepts.sock");
    drop(UnixListener::bind(&refused).unwrap());
    for socket in [&missing, &refused] {
        let conf = kpanel_service(socket, "otp_only failmode=safe");
        let run = Harness::new(HARNESS, &conf, SERVICE)
            .user("ann")
            .op("auth")
            .op("account")
            .run();
        run.assert_completed();
        for step in ["auth", "account"] {
            assert_eq!(
                run.code(step),
                Some("PAM_SUCCESS"),
                "{step} with {}: {}",
                socket.display(),
                run.stdout
            );
        }
    }
}

#[test]
fn a_turned_away_client_whose_hello_comes_late_still_reads_busy() {
    let (daemon, _holders) = busy_daemon();
    let mut late = UnixStream::connect(&daemon.socket).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Long enough for a kauthd that answers before the hello to have
    // answered and closed.
    std::thread::sleep(Duration::from_millis(300));
    write_frame(&mut late, &hello())
        .unwrap_or_else(|e| panic!("kauthd closed before reading the hello: {e}"));
    match read_frame::<_, Response>(&mut late) {
        Ok(Response::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Busy);
            assert!(message.contains("maximum of 2 connections"), "{message}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
}

#[test]
fn silent_turned_away_clients_do_not_hold_kauthd_up() {
    let (daemon, holders) = busy_daemon();
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    let start = Instant::now();
    let r = Client::connect(&daemon.socket, Duration::from_secs(5), &trusted_uids(), "t");
    assert!(r.is_err(), "a connection over the limit was served");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "turned away only after {:?}",
        start.elapsed()
    );
    // Once the silent ones have had their time, answers are clear again.
    std::thread::sleep(Duration::from_secs(1));
    let r = Client::connect(&daemon.socket, Duration::from_secs(5), &trusted_uids(), "t");
    assert!(matches!(r, Err(ClientError::Busy(_))), "{r:?}");
    drop(silent);
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = daemon.ctl(&["status"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kauthd does not serve again: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the harness as sshd runs PAM: `auth` in a child process, then,
/// after `pause`, `account` in the parent (the shell execs the harness,
/// which keeps the shell's pid and start time). Returns both JSON reports.
fn auth_in_child_then_account(
    conf: &PamConfDir,
    user: &str,
    code: &str,
    pause: Duration,
) -> (serde_json::Value, serde_json::Value) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" --op auth; sleep "$PAUSE"; exec "$0" "$@" --op account"#)
        .arg(HARNESS)
        .arg("--confdir")
        .arg(conf.path())
        .args(["--service", SERVICE, "--user", user, "--answer", code])
        .env("PAUSE", pause.as_secs().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}")))
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (reports[0].clone(), reports[1].clone())
}

fn enrolled_daemon(user: &str) -> (TestDaemon, PamConfDir) {
    let daemon = TestDaemon::start("");
    let out = daemon.ctl(&["2fa", "import", "--user", user, "--secret", SECRET]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = kpanel_service(&daemon.socket, "otp_only");
    (daemon, conf)
}

#[test]
#[ignore = "needs root"]
fn the_account_step_right_after_the_code_passes() {
    let (_daemon, conf) = enrolled_daemon("ann");
    let code = oathtool_at_step(SECRET, step_with_margin(3));
    let (auth, account) = auth_in_child_then_account(&conf, "ann", &code, Duration::ZERO);
    assert_eq!(auth["auth"], "PAM_SUCCESS", "{auth}");
    assert_eq!(account["account"], "PAM_SUCCESS", "{account}");
}

#[test]
#[ignore = "needs root"]
fn the_account_step_is_refused_once_the_code_is_older_than_the_expiry() {
    let (daemon, conf) = enrolled_daemon("ann");
    let code = oathtool_at_step(SECRET, step_with_margin(3));
    // kauthd remembers a given code for 10 seconds.
    let pause = Duration::from_secs(12);
    let (auth, account) = auth_in_child_then_account(&conf, "ann", &code, pause);
    assert_eq!(auth["auth"], "PAM_SUCCESS", "{auth}");
    assert_eq!(account["account"], "PAM_PERM_DENIED", "{account}");
    assert!(
        daemon
            .stderr()
            .contains("the login gave no verification code"),
        "{}",
        daemon.stderr()
    );
}

/// A listener that welcomes the module, then stops reading: the module's
/// next write fails with EPIPE.
fn daemon_that_hangs_up_after_the_hello(socket: &Path) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _: Request = read_frame(&mut conn).unwrap();
        conn.shutdown(std::net::Shutdown::Read).unwrap();
        let welcome = Response::Welcome {
            version: PROTOCOL_VERSION,
            server: "kauthd test".into(),
        };
        write_frame(&mut conn, &welcome).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    })
}

#[test]
fn a_daemon_that_hangs_up_fails_the_login_without_killing_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hangs-up.sock");
    let fake = daemon_that_hangs_up_after_the_hello(&socket);
    let conf = kpanel_service(&socket, "otp_only failmode=safe");
    let run = Harness::new(HARNESS, &conf, SERVICE)
        .user("ann")
        .op("auth")
        .run();
    assert!(
        run.status.is_some(),
        "the PAM application was killed by a signal: {}",
        run.stderr
    );
    assert_eq!(
        run.code("auth"),
        Some("PAM_AUTHINFO_UNAVAIL"),
        "{}",
        run.stdout
    );
    fake.join().unwrap();
}
