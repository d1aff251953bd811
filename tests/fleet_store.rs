//! Issue 15, the store backend: kauthd on a real PostgreSQL (Debian's
//! server binaries, run as an unprivileged user in a temporary directory).
//! One kauthd enrolls and logs in over the protocol and through the real
//! libpam; two on one database share the replay guard; an unreachable
//! database refuses logins with one log line and they work again once it
//! is back, without restarting kauthd; kauthd starting at once on a fresh
//! database migrate it once.
//!
//! Needs root (the database runs as another user; tests/run runs these
//! as root, as CI does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kauth_tests::daemon::{json, running_as_root, TestDaemon};
use kauth_tests::login::{login_code, oathtool_at_step, step_with_margin, LoginResult};
use kauth_tests::pam::{Harness, PamConfDir};
use kauth_tests::postgres::PgCluster;

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-fleet-store";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// The module's `timeout=`, in seconds.
const MODULE_TIMEOUT: u64 = 5;
/// `[store] connect_timeout`, in seconds.
const CONNECT_TIMEOUT: u64 = 2;
/// The end of the line the store logs when the database cannot be reached.
const UNREACHABLE: &str = "need the database are refused until it is back";

/// A kauthd named `host` on `pg`'s database; with `key`, a copy of that
/// secret key (servers of a fleet share one).
fn daemon_on(pg: &PgCluster, host: &str, key: Option<&std::path::Path>) -> TestDaemon {
    assert!(running_as_root(), "run as root (tests/run does)");
    let config = format!(
        "host_name = \"{host}\"\n{}connect_timeout = {CONNECT_TIMEOUT}\n",
        pg.store_config()
    );
    match key {
        Some(key) => TestDaemon::start_with_key(&config, key),
        None => TestDaemon::start(&config),
    }
}

fn code(step: u64) -> String {
    oathtool_at_step(SECRET, step)
}

fn assert_refused(result: &LoginResult, what: &str) {
    assert!(!result.succeeded(), "{what}: {result:?}");
}

#[test]
#[ignore = "needs root"]
fn one_kauthd_on_postgresql_enrolls_and_logs_in_by_protocol_and_through_libpam() {
    let pg = PgCluster::start();
    let daemon = daemon_on(&pg, "solo", None);
    assert_eq!(pg.sql("SELECT version FROM kauthd_schema"), "9");

    let step = step_with_margin(10);
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", "ann"]));
    let secret = begun["secret"].as_str().unwrap().to_owned();
    json(&daemon.ctl(&[
        "--json",
        "2fa",
        "enroll",
        "--confirm",
        &oathtool_at_step(&secret, step),
        "--user",
        "ann",
    ]));
    // The secret is stored sealed, never as its base32 text or bytes.
    let stored = pg.sql("SELECT encode(secret, 'hex') FROM totp");
    assert!(
        !stored.is_empty() && !stored.contains(&hex(&secret)),
        "{stored}"
    );

    let by_protocol = login_code(&daemon.socket, "ann", &oathtool_at_step(&secret, step + 1));
    assert!(by_protocol.succeeded(), "{by_protocol:?}");
    let again = login_code(&daemon.socket, "ann", &oathtool_at_step(&secret, step + 1));
    assert_refused(&again, "the same code twice");

    daemon.import_secret("bob", SECRET);
    let conf = PamConfDir::new();
    conf.kpanel_service(
        SERVICE,
        &daemon.socket,
        &format!("otp_only timeout={MODULE_TIMEOUT}"),
    );
    let run = Harness::new(HARNESS, &conf, SERVICE)
        .user("bob")
        .answer(&code(step))
        .run();
    run.assert_completed();
    assert_eq!(run.code("auth"), Some("PAM_SUCCESS"), "{}", run.stdout);

    // The activity is in the database, under this server's name.
    let hosts = pg.sql("SELECT DISTINCT host FROM activity WHERE \"user\" IN ('ann', 'bob')");
    assert_eq!(hosts, "solo");
}

/// The bytes of a base32 secret as hex, to look for in the database.
fn hex(base32: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$0\" | base32 -d | od -An -tx1 | tr -d ' \\n'")
        .arg(base32)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs root"]
fn a_code_spent_on_one_kauthd_is_refused_by_another_on_the_same_database() {
    let pg = PgCluster::start();
    let a = daemon_on(&pg, "host-a", None);
    let b = daemon_on(&pg, "host-b", Some(&a.key_file()));
    a.import_secret("ann", SECRET);
    let step = step_with_margin(10);

    let first = login_code(&a.socket, "ann", &code(step));
    assert!(first.succeeded(), "on host-a: {first:?}");
    assert_refused(
        &login_code(&b.socket, "ann", &code(step)),
        "the code host-a accepted, on host-b",
    );
    // An older code (still in the window) is refused too: the guard only
    // moves forward, whichever server moved it.
    assert_refused(
        &login_code(&b.socket, "ann", &code(step - 1)),
        "an older code on host-b",
    );
    let next = login_code(&b.socket, "ann", &code(step + 1));
    assert!(next.succeeded(), "the next code on host-b: {next:?}");
    assert_refused(
        &login_code(&a.socket, "ann", &code(step + 1)),
        "the code host-b accepted, on host-a",
    );
}

/// How many times `text` occurs in what `daemon` logged.
fn logged_count(daemon: &TestDaemon, text: &str) -> usize {
    daemon.stderr().matches(text).count()
}

#[test]
#[ignore = "needs root"]
fn an_unreachable_database_refuses_logins_with_one_log_line_until_it_is_back() {
    let mut pg = PgCluster::start();
    let daemon = daemon_on(&pg, "solo", None);
    daemon.import_secret("ann", SECRET);
    daemon.import_secret("bob", SECRET);
    let step = step_with_margin(25);

    pg.stop();
    for user in ["ann", "bob", "ann"] {
        let started = Instant::now();
        let result = login_code(&daemon.socket, user, &code(step));
        let took = started.elapsed();
        assert_refused(&result, "a login while the database is stopped");
        assert!(
            took < Duration::from_secs(CONNECT_TIMEOUT + 2),
            "the refusal took {took:?}"
        );
        assert!(
            result
                .messages
                .iter()
                .any(|m| m.contains("cannot reach its database")),
            "the person was not told why: {result:?}"
        );
    }
    assert_eq!(
        logged_count(&daemon, UNREACHABLE),
        1,
        "one log line for the outage: {}",
        daemon.stderr()
    );

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = login_code(&daemon.socket, "ann", &code(step));
        if result.succeeded() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no login worked after PostgreSQL came back: {result:?}\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        daemon.stderr().contains("can be reached again"),
        "{}",
        daemon.stderr()
    );
    // The code that worked is spent; nothing let it work twice.
    assert_refused(
        &login_code(&daemon.socket, "ann", &code(step)),
        "the code again",
    );
}

#[test]
#[ignore = "needs root"]
fn kauthd_starting_at_once_on_a_fresh_database_migrate_it_once() {
    let pg = PgCluster::start();
    let first = daemon_on(&pg, "host-a", None);
    let key = first.key_file();
    let config = |host: &str| {
        format!(
            "host_name = \"{host}\"\n{}connect_timeout = {CONNECT_TIMEOUT}\n",
            pg.store_config()
        )
    };
    // `first` migrated; two more on a second, fresh database start at once.
    pg.sql("CREATE DATABASE second OWNER kauthd");
    let second = pg.store_config().replace("/kauthd?", "/second?");
    assert_ne!(second, pg.store_config(), "the url names the database");
    // Each daemon lives on the thread that started it (it gets SIGKILL
    // when that thread ends), so each checks itself there.
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<(usize, Option<i32>, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["host-b", "host-c"]
            .map(|host| {
                let text = config(host).replace(&pg.store_config(), &second);
                let key = key.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let daemon = TestDaemon::start_with_key(&text, &key);
                    let status = daemon.ctl(&["status"]).status.code();
                    let log = daemon.stderr();
                    let migrated = log.matches("schema migrated to version 9").count();
                    (migrated, status, log)
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let migrated: usize = results.iter().map(|r| r.0).sum();
    assert_eq!(migrated, 1, "the last migration ran once: {results:?}");
    for (_, status, log) in &results {
        assert_eq!(*status, Some(0), "{log}");
    }
}

#[test]
#[ignore = "needs root"]
fn doctor_checks_the_connection_the_schema_version_and_the_database_clock() {
    let mut pg = PgCluster::start();
    let daemon = daemon_on(&pg, "solo", None);
    let doctor = || {
        let config = daemon.config_path.to_str().unwrap().to_owned();
        let out = daemon.ctl(&[
            "--json", "doctor", "--config", &config, "--skip", "pam", "--skip", "sshd", "--skip",
            "clock",
        ]);
        // A problem makes doctor exit 1; the report is printed either way.
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("doctor printed JSON")
    };
    let texts = |doc: &serde_json::Value, key: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "store")
            .map(|f| f["what"].as_str().unwrap().to_owned())
            .collect()
    };
    let doc = doctor();
    let passed = texts(&doc, "passed");
    assert!(
        passed.iter().any(|t| t.starts_with("connected to")),
        "{doc}"
    );
    assert!(passed.contains(&"schema version 9".to_owned()), "{doc}");
    assert!(
        passed.iter().any(|t| t.contains("clock differs")),
        "the clocks of one machine agree: {doc}"
    );
    assert!(texts(&doc, "findings").is_empty(), "{doc}");

    pg.stop();
    let doc = doctor();
    let problems = texts(&doc, "findings");
    assert!(
        problems.iter().any(|t| t.contains("cannot be used")),
        "{doc}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_panel_session_signed_out_on_another_server_is_invalid_at_once_and_revoked_by_its_own() {
    use kauth_proto::{Request, Response};
    let pg = PgCluster::start();
    let a = daemon_on(&pg, "host-a", None);
    let b = daemon_on(&pg, "host-b", Some(&a.key_file()));
    a.import_secret("ann", SECRET);

    let mut on_b = kauth_tests::login::connect(&b.socket);
    let opened = on_b
        .call(&Request::SessionOpen {
            user: "ann".to_owned(),
            service: "kpanel".to_owned(),
            rhost: None,
            tty: None,
            client: None,
        })
        .unwrap();
    let Response::SessionOpened { id } = opened else {
        panic!("{opened:?}")
    };

    let mut on_a = kauth_tests::login::connect(&a.socket);
    let listed = on_a
        .call(&Request::Sessions {
            user: None,
            after: None,
            limit: None,
        })
        .unwrap();
    let Response::SessionList { sessions, .. } = listed else {
        panic!("{listed:?}")
    };
    let session = sessions.iter().find(|s| s.id == id).expect("listed on A");
    assert_eq!(session.host, "host-b");

    let signed = on_a
        .call(&Request::SignOut {
            id: Some(id.clone()),
            user: None,
            all: false,
            dry_run: false,
        })
        .unwrap();
    assert!(
        matches!(&signed, Response::SignedOut { ids, .. } if ids.as_slice() == std::slice::from_ref(&id)),
        "{signed:?}"
    );
    let checked = on_a
        .call(&Request::SessionCheck { id: id.clone() })
        .unwrap();
    assert!(
        matches!(checked, Response::SessionValidity { valid: false, .. }),
        "still valid on A right after the sign-out: {checked:?}"
    );

    // B, which owns it, ends it within 2 s.
    let started = Instant::now();
    let query = format!("SELECT state FROM sessions WHERE id = '{id}'");
    while pg.sql(&query) != "revoked" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "host-b did not end the session: {}\n{}",
            pg.sql(&query),
            b.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
