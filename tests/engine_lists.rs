//! No size cliffs (issue 13): lists are paged in frames under the 64 KiB
//! limit and kauthctl fetches every page. With 100,000 enrolled accounts
//! and 100,000 events, `kauthctl user list`, `2fa list` and `activity`
//! print every row and exit 0, in text and `--json`; a list that ends
//! exactly on a page boundary has no empty page and no lost row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kauth_proto::{Request, Response};
use kauth_tests::daemon::{json, stderr, stdout, TestDaemon};
use kauth_tests::login::{connect, login_code, oathtool_at_step, step_with_margin};

/// The base32 secret of every bulk account (its raw bytes are inserted;
/// kauthd seals them at its next start, as it does a database's plaintext
/// secrets from before encryption at rest).
const SECRET: &str = "JBSWY3DPEHPK3PXP";
const SECRET_HEX: &str = "48656C6C6F21DEADBEEF";

const ACCOUNTS: u32 = 100_000;
const EVENTS: u32 = 100_000;
const SESSIONS: u32 = 2_000;

/// Inserts into the stopped daemon's database `accounts` accounts named
/// `user000001`… with TOTP on (unsealed secret, sealed at the next start),
/// `events` activity events ("bulk event 000001" newest, one second apart,
/// all older than anything kauthd recorded) and `sessions` open panel
/// sessions.
fn bulk_insert(daemon: &TestDaemon, accounts: u32, events: u32, sessions: u32) {
    const SCRIPT: &str = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
accounts, events, sessions = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
secret = bytes.fromhex(sys.argv[5])
now = int(time.time())
numbers = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
with db:
    db.execute(numbers + "INSERT INTO accounts (name, created) SELECT printf('user%06d', i), ? - i FROM k",
               (accounts, now))
    db.execute("INSERT INTO totp (account_id, secret, algorithm, digits, period, enabled_at) "
               "SELECT id, ?, 'SHA1', 6, 30, created FROM accounts WHERE name LIKE 'user%'", (secret,))
    db.execute(numbers + "INSERT INTO activity (at, user, event, service, rhost, detail) "
               "SELECT ? - 3600 - i, printf('user%06d', i), 'login_success', 'sshd', '192.0.2.1', "
               "printf('bulk event %06d', i) FROM k", (events, now))
    db.execute(numbers + "INSERT INTO sessions (id, user, service, rhost, tty, pid, started) "
               "SELECT printf('%032x', i), printf('user%06d', i), 'kpanel', '192.0.2.1', NULL, 1, ? - i FROM k",
               (sessions, now))
"#;
    let db = daemon.state_dir.join("kauthd.sqlite");
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&db)
        .args([accounts, events, sessions].map(|n| n.to_string()))
        .arg(SECRET_HEX)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "bulk insert: {}", stderr(&out));
}

/// A daemon with ann (enrolled through kauthctl) and the bulk rows.
fn daemon_with(accounts: u32, events: u32, sessions: u32) -> TestDaemon {
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", SECRET);
    daemon.stop();
    bulk_insert(&daemon, accounts, events, sessions);
    daemon.restart();
    daemon
}

fn bulk_name(i: u32) -> String {
    format!("user{i:06}")
}

/// Runs kauthctl, checks that it succeeded, and says how long it took.
fn ctl_ok(daemon: &TestDaemon, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = daemon.ctl(args);
    eprintln!("kauthctl {}: {:?}", args.join(" "), started.elapsed());
    assert!(
        out.status.success(),
        "kauthctl {args:?} exited {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    out
}

/// The first column of a text table, header left out.
fn first_column(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

fn all_names(accounts: u32) -> Vec<String> {
    let mut names: Vec<String> = (1..=accounts).map(bulk_name).collect();
    names.push("ann".to_owned());
    names.sort();
    names
}

fn json_names(doc: &serde_json::Value, list: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} array in {doc}"))
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn lists_of_100000_accounts_and_events_print_every_row() {
    let daemon = daemon_with(ACCOUNTS, EVENTS, SESSIONS);
    let expected = all_names(ACCOUNTS);

    // Accounts: every one, in name order, and they look enrolled.
    let out = ctl_ok(&daemon, &["user", "list"]);
    assert_eq!(first_column(&out), expected, "user list");
    let last = stdout(&out).lines().last().unwrap().to_owned();
    assert!(last.starts_with(&bulk_name(ACCOUNTS)), "{last}");
    assert!(
        last.split_whitespace().nth(2) == Some("no") && last.contains(" on "),
        "a bulk account shows no password and 2FA on: {last}"
    );
    let doc = json(&ctl_ok(&daemon, &["--json", "user", "list"]));
    assert_eq!(json_names(&doc, "users"), expected, "user list --json");
    assert!(doc.get("next").is_none(), "no cursor in kauthctl's output");
    assert!(doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["two_factor"] == true));

    // Who has 2FA: the same accounts.
    let out = ctl_ok(&daemon, &["2fa", "list"]);
    assert_eq!(first_column(&out), expected, "2fa list");
    let doc = json(&ctl_ok(&daemon, &["--json", "2fa", "list"]));
    assert_eq!(json_names(&doc, "users"), expected, "2fa list --json");

    // Activity: the newest first, exactly as many as asked, every bulk
    // event once and in order when asked for all.
    let out = ctl_ok(&daemon, &["activity", "--limit", "100000"]);
    assert_eq!(stdout(&out).lines().count(), 1 + 100_000);
    let out = ctl_ok(&daemon, &["activity", "--limit", "1000000"]);
    let bulk: Vec<u32> = stdout(&out)
        .lines()
        .filter_map(|line| line.split("bulk event ").nth(1))
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(bulk, (1..=EVENTS).collect::<Vec<_>>(), "activity");
    let doc = json(&ctl_ok(
        &daemon,
        &["--json", "activity", "--limit", "100000"],
    ));
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 100_000);
    assert!(events
        .windows(2)
        .all(|w| w[0]["at"].as_i64() >= w[1]["at"].as_i64()));

    // Sessions: every open one.
    let out = ctl_ok(&daemon, &["sessions"]);
    let ids: BTreeSet<String> = first_column(&out).into_iter().collect();
    assert_eq!(ids.len(), SESSIONS as usize);
    assert!(ids.contains(&format!("{:032x}", SESSIONS)));
    let doc = json(&ctl_ok(&daemon, &["--json", "sessions"]));
    assert_eq!(doc["sessions"].as_array().unwrap().len(), SESSIONS as usize);

    // A page deep in the list costs what the first one does (a keyset
    // cursor: an offset would walk the 99,400 rows before it). Small
    // pages, so that the walk would show; interleaved, so that load hits
    // both alike.
    let mut client = connect(&daemon.socket);
    let deep = Some(bulk_name(ACCOUNTS - 600));
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        for (after, times) in [(None, &mut first), (deep.clone(), &mut last)] {
            let started = Instant::now();
            let (names, _) = user_page(&mut client, after, Some(10));
            times.push(started.elapsed());
            assert!(!names.is_empty());
        }
    }
    first.sort();
    last.sort();
    let (first, last) = (first[first.len() / 2], last[last.len() / 2]);
    eprintln!("user_list page of 10, median of 15: first {first:?}, at row 99,400 {last:?}");
    assert!(
        last < first * 4 + Duration::from_millis(5),
        "a deep page took {last:?}, the first {first:?}"
    );

    // A bulk account is a real enrolled one: its sealed secret logs in.
    let step = step_with_margin(5);
    let code = oathtool_at_step(SECRET, step);
    let login = login_code(&daemon.socket, &bulk_name(54_321), &code);
    assert!(login.succeeded(), "{login:?}\n{}", daemon.syslog());
}

/// The accounts one `user_list` page after `after` holds, and its `next`.
fn user_page(
    client: &mut kauth_proto::Client,
    after: Option<String>,
    limit: Option<u32>,
) -> (Vec<String>, Option<String>) {
    match client.call(&Request::UserList { after, limit }).unwrap() {
        Response::Users { users, next } => (users.into_iter().map(|u| u.name).collect(), next),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn a_list_ending_on_a_page_boundary_has_no_empty_page_and_loses_no_row() {
    // 999 bulk accounts and ann: 1,000, four pages of 250 exactly.
    let daemon = daemon_with(999, 0, 0);
    let expected = all_names(999);
    let mut client = connect(&daemon.socket);

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let (names, next) = user_page(&mut client, after, Some(250));
        pages.push(names);
        match next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    pages.last().unwrap().last(),
                    "next is the last row"
                );
                after = Some(next);
            }
            None => break,
        }
        assert!(pages.len() <= 4, "a fifth page after 1,000 rows");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [250; 4]);
    assert_eq!(pages.concat(), expected);

    // With the pages kauthd picks: the same rows, no empty last page.
    let (mut all, mut after) = user_page(&mut client, None, None);
    let first = all.len();
    assert!(
        first > 1 && first < 1000,
        "the first page is bounded: {first}"
    );
    while let Some(cursor) = after {
        let (names, next) = user_page(&mut client, Some(cursor), None);
        assert!(!names.is_empty(), "an empty page with a next cursor");
        all.extend(names);
        after = next;
    }
    assert_eq!(all, expected);

    // Exactly one page of kauthd's own size left: it has no next; one
    // row more, and it has.
    let one_page_left = expected[expected.len() - first - 1].clone();
    let (names, next) = user_page(&mut client, Some(one_page_left), None);
    assert_eq!((names.len(), next), (first, None));
    let one_more_left = expected[expected.len() - first - 2].clone();
    let (names, next) = user_page(&mut client, Some(one_more_left), None);
    assert_eq!(names.len(), first);
    assert!(next.is_some(), "one row more than a page has a next page");

    // kauthctl shows the same 1,000.
    assert_eq!(first_column(&ctl_ok(&daemon, &["user", "list"])), expected);
}

#[test]
fn a_list_request_without_paging_fields_gets_a_first_page_not_a_closed_connection() {
    let daemon = daemon_with(5_000, 5_000, 0);
    let mut client = connect(&daemon.socket);
    // As an older client sends them: no `after`, no `limit`.
    for request in [
        r#"{"type":"user_list"}"#,
        r#"{"type":"two_factor_list"}"#,
        r#"{"type":"activity","limit":100000}"#,
    ] {
        let request: Request = serde_json::from_str(request).unwrap();
        let (rows, next) = match client.call(&request).unwrap() {
            Response::Users { users, next } => (users.len(), next),
            Response::TwoFactorUsers { users, next } => (users.len(), next),
            Response::ActivityList { events, next } => (events.len(), next),
            other => panic!("unexpected answer {other:?}"),
        };
        assert!(
            rows > 0 && next.is_some(),
            "{request:?}: {rows} rows, next {next:?}"
        );
    }
    // A cursor kauthd never gave is refused, not misread.
    let bad = Request::Activity {
        user: None,
        since: None,
        limit: None,
        after: Some("yesterday".to_owned()),
    };
    match client.call(&bad).unwrap() {
        Response::Error { message, .. } => assert!(message.contains("after"), "{message}"),
        other => panic!("unexpected answer {other:?}"),
    }
    // The connection is still good.
    assert!(matches!(
        client.call(&Request::Status).unwrap(),
        Response::Status { .. }
    ));
}
