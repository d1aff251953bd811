//! Durable commits (issue 13): a login is acknowledged only once its code
//! is durably spent, with its activity row; concurrent logins share
//! fsyncs; a wrong code costs no fsync of its own; a locked attempt writes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use kauth_proto::{Client, LoginMode, Outcome, Request, Response, Secret};
use kauth_tests::daemon::{json, running_as_root, stderr, TestDaemon};
use kauth_tests::login::{begin, login_code, login_code_from, now, oathtool_at_step};

/// Secrets of the form oathtool takes; one per user, so that no two users
/// share codes.
fn secret_of(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from("JBSWY3DPEHPK3PXP");
    let mut x = n;
    for _ in 0..16 {
        s.push(char::from(ALPHABET[x % 32]));
        x /= 32;
    }
    s
}

/// A wide window (codes of steps s-1..s+1 stay valid for a while) and no
/// rate-limit lock in the way.
const CONFIG: &str = "[totp]\nskew_steps = 2\n[ratelimit]\nmax_failures = 100000\n";

/// A code-only login that tells a refusal from a daemon that went away:
/// `Some(outcome)` when the daemon answered, `None` when it did not.
fn try_login(socket: &Path, user: &str, code: &str) -> Option<Outcome> {
    let mut client = Client::connect(socket, Duration::from_secs(20), &[0], "test").ok()?;
    match client.call(&begin(user, LoginMode::OtpOnly, None)).ok()? {
        Response::Prompt { .. } => {}
        Response::Finished { outcome } => return Some(outcome),
        _ => return None,
    }
    let mut response = client
        .call(&Request::Answer {
            text: Secret::from(code),
        })
        .ok()?;
    // Texts before the end (a hint after repeated wrong codes) are shown
    // and passed over.
    while let Response::Message { .. } = response {
        response = client.call(&Request::Continue).ok()?;
    }
    match response {
        Response::Finished { outcome } => Some(outcome),
        _ => None,
    }
}

/// Runs a Python sqlite3 snippet on `db` (kauthd must not hold it) and
/// returns what it printed.
fn python_sqlite(db: &Path, code: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n{code}"),
        ])
        .arg(db)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python3: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A copy of the database and its WAL as they are now (after a kill -9),
/// so that checking it does not change what kauthd recovers from.
fn copy_state(state_dir: &Path, into: &Path) -> PathBuf {
    fs::create_dir_all(into).unwrap();
    for name in ["kauthd.sqlite", "kauthd.sqlite-wal"] {
        let from = state_dir.join(name);
        if from.exists() {
            fs::copy(&from, into.join(name)).unwrap();
        }
    }
    into.join("kauthd.sqlite")
}

const CLIENTS: usize = 32;
const ROUNDS: usize = 5;

/// One client's part of a burst: logins with `codes` in order, back to
/// back; returns the codes whose login was acknowledged.
fn burst_client(socket: &Path, user: &str, codes: Vec<String>, acked: &AtomicUsize) -> Vec<String> {
    let mut accepted = Vec::new();
    for code in codes {
        match try_login(socket, user, &code) {
            Some(Outcome::Success) => {
                accepted.push(code);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Some(_) => {}
            None => break, // the daemon was killed
        }
    }
    accepted
}

#[test]
fn kill_9_during_a_burst_of_32_logins_loses_no_acknowledged_login() {
    let mut daemon = TestDaemon::start(CONFIG);
    let users: Vec<Vec<(String, String)>> = (0..ROUNDS)
        .map(|round| {
            (0..CLIENTS)
                .map(|i| {
                    let user = format!("r{round}u{i}");
                    let secret = secret_of(round * CLIENTS + i);
                    daemon.import_secret(&user, &secret);
                    (user, secret)
                })
                .collect()
        })
        .collect();
    let mut acked_per_user: HashMap<String, usize> = HashMap::new();
    let mut killed_mid_burst = 0;
    for (round, round_users) in users.iter().enumerate() {
        let step = now() / 30;
        let acked = AtomicUsize::new(0);
        let start = Barrier::new(CLIENTS + 1);
        let socket = daemon.socket.clone();
        // Kill after 16, 32, … 80 of the 96 logins were acknowledged.
        let kill_at = 16 * (round + 1);
        let accepted: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = round_users
                .iter()
                .map(|(user, secret)| {
                    let (socket, acked, start) = (&socket, &acked, &start);
                    scope.spawn(move || {
                        // Three consecutive steps' codes, all in the window.
                        let codes = [step - 1, step, step + 1]
                            .map(|s| oathtool_at_step(secret, s))
                            .to_vec();
                        start.wait();
                        (user.clone(), burst_client(socket, user, codes, acked))
                    })
                })
                .collect();
            start.wait();
            let deadline = Instant::now() + Duration::from_secs(60);
            while acked.load(Ordering::SeqCst) < kill_at && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            daemon.signal(libc::SIGKILL);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: usize = accepted.iter().map(|(_, codes)| codes.len()).sum();
        assert!(
            total >= kill_at,
            "round {round}: only {total} logins acknowledged before the kill"
        );
        eprintln!(
            "round {round}: {total} of {} logins acknowledged before kill -9",
            CLIENTS * 3
        );
        if total < CLIENTS * 3 {
            killed_mid_burst += 1;
        }

        // The files as kill -9 left them are a sound database.
        let copy = copy_state(
            &daemon.state_dir,
            &daemon.dir.path().join(format!("copy{round}")),
        );
        assert_eq!(
            python_sqlite(
                &copy,
                "print(c.execute('PRAGMA integrity_check').fetchone()[0])"
            ),
            "ok"
        );

        daemon.restart();
        for (user, codes) in &accepted {
            for code in codes {
                assert_ne!(
                    try_login(&daemon.socket, user, code),
                    Some(Outcome::Success),
                    "round {round}: {user}'s acknowledged code {code} worked again after kill -9"
                );
            }
            *acked_per_user.entry(user.clone()).or_default() += codes.len();
        }
        // The window is still open: a new code of a user works, so the
        // refusals above were the replay guard's.
        let (user, secret) = &round_users[0];
        assert_eq!(
            try_login(&daemon.socket, user, &oathtool_at_step(secret, step + 2)),
            Some(Outcome::Success),
            "round {round}: a fresh code after the restart"
        );
        *acked_per_user.entry(user.clone()).or_default() += 1;
    }
    assert!(
        killed_mid_burst >= 1,
        "no round was killed while logins were in flight"
    );

    daemon.stop();
    let db = daemon.state_dir.join("kauthd.sqlite");
    assert_eq!(
        python_sqlite(
            &db,
            "print(c.execute('PRAGMA integrity_check').fetchone()[0])"
        ),
        "ok"
    );
    let rows = python_sqlite(
        &db,
        "for user, n in c.execute(\"SELECT user, COUNT(*) FROM activity WHERE event = 'login_success' GROUP BY user\"):\n    print(user, n)",
    );
    let stored: HashMap<&str, usize> = rows
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, n)| (u, n.parse().unwrap()))
        .collect();
    for (user, acked) in &acked_per_user {
        let found = stored.get(user.as_str()).copied().unwrap_or(0);
        assert!(
            found >= *acked,
            "{user}: {acked} logins acknowledged, {found} login_success rows stored"
        );
    }
}

#[test]
fn one_code_on_sixteen_connections_at_once_is_spent_exactly_once() {
    const N: usize = 16;
    let daemon = TestDaemon::start(CONFIG);
    for round in 0..3 {
        let user = format!("racer{round}");
        let secret = secret_of(1000 + round);
        daemon.import_secret(&user, &secret);
        let code = oathtool_at_step(&secret, now() / 30);
        let ready = Arc::new(Barrier::new(N));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..N)
            .map(|_| {
                let (ready, outcomes) = (Arc::clone(&ready), Arc::clone(&outcomes));
                let (socket, user, code) = (daemon.socket.clone(), user.clone(), code.clone());
                std::thread::spawn(move || {
                    let mut client =
                        Client::connect(&socket, Duration::from_secs(20), &[0], "test").unwrap();
                    let first = client
                        .call(&begin(&user, LoginMode::OtpOnly, None))
                        .unwrap();
                    assert!(matches!(first, Response::Prompt { .. }), "{first:?}");
                    // Every connection is at the code prompt: answer together.
                    ready.wait();
                    let answer = client
                        .call(&Request::Answer {
                            text: Secret::from(code.as_str()),
                        })
                        .unwrap();
                    outcomes.lock().unwrap().push(answer);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let outcomes = outcomes.lock().unwrap();
        let successes = outcomes
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Response::Finished {
                        outcome: Outcome::Success
                    }
                )
            })
            .count();
        assert_eq!(successes, 1, "round {round}: {outcomes:?}");
    }
}

/// strace attached to every thread of `pid`, counting fsync calls.
struct SyncCounter {
    child: Child,
    out: PathBuf,
}

impl SyncCounter {
    fn attach(pid: u32, out: PathBuf) -> SyncCounter {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(out.with_extension("stderr")).unwrap())
            .spawn()
            .expect("strace is missing: install Debian's strace (tests/debian-packages)");
        // Attached once the main thread has a tracer.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let traced = status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .is_some_and(|v| v.trim() != "0");
            if traced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "strace could not attach to kauthd (it needs root with CAP_SYS_PTRACE): {}",
                fs::read_to_string(out.with_extension("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The other threads are attached right after the first.
        std::thread::sleep(Duration::from_millis(300));
        SyncCounter { child, out }
    }

    /// Detaches; returns the number of fsync and fdatasync calls seen, and
    /// strace's lines.
    fn finish(mut self) -> (usize, String) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().unwrap();
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let calls = text
            .lines()
            .filter(|l| l.contains("sync(") && !l.contains("resumed>"))
            .count();
        (calls, text)
    }
}

#[test]
#[ignore = "needs root"]
fn a_wrong_code_costs_no_fsync_of_its_own_and_a_login_waits_for_one() {
    assert!(running_as_root(), "run as root (tests/run does)");
    const WRONG: usize = 100;
    const LOGINS: usize = 20;
    let daemon = TestDaemon::start(CONFIG);
    daemon.import_secret("ann", &secret_of(0));
    for i in 0..LOGINS {
        daemon.import_secret(&format!("user{i}"), &secret_of(100 + i));
    }
    // Codes first: oathtool runs are slow and would stretch the window.
    let step = now() / 30;
    let codes: Vec<String> = (0..LOGINS)
        .map(|i| oathtool_at_step(&secret_of(100 + i), step))
        .collect();
    std::thread::sleep(Duration::from_millis(1500)); // the enrollments' syncs are over

    let counter = SyncCounter::attach(daemon.pid(), daemon.dir.path().join("wrong.strace"));
    let started = Instant::now();
    for _ in 0..WRONG {
        assert_eq!(
            try_login(&daemon.socket, "ann", "000000"),
            Some(Outcome::Denied)
        );
    }
    let seconds = started.elapsed().as_secs() as usize;
    let (wrong_syncs, trace) = counter.finish();
    // The flusher syncs the failure counts at most once a second, and
    // SQLite's WAL checkpoints (every 256 pages written) sync three times
    // each; one fsync per wrong code would be 100 at least.
    assert!(
        wrong_syncs <= WRONG / 5 + seconds + 2 && wrong_syncs < WRONG / 2,
        "{WRONG} wrong codes in {seconds} s made {wrong_syncs} fsync calls:\n{trace}"
    );

    let counter = SyncCounter::attach(daemon.pid(), daemon.dir.path().join("right.strace"));
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(
            try_login(&daemon.socket, &format!("user{i}"), code),
            Some(Outcome::Success)
        );
    }
    let (login_syncs, trace) = counter.finish();
    assert!(
        login_syncs >= LOGINS,
        "{LOGINS} sequential logins made only {login_syncs} fsync calls: an acknowledged login was not synced:\n{trace}"
    );
}

fn activity_count(daemon: &TestDaemon) -> usize {
    json(&daemon.ctl(&["--json", "activity", "--limit", "10000"]))["events"]
        .as_array()
        .map_or_else(|| panic!("activity is not a list"), Vec::len)
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_locked_account_or_host_is_refused_without_any_write() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 3\nlock_seconds = 600\n");
    let secret = secret_of(7);
    daemon.import_secret("ann", &secret);
    daemon.import_secret("bob", &secret_of(8));
    for _ in 0..3 {
        assert_eq!(
            login_code(&daemon.socket, "ann", "000000").outcome,
            Some(Outcome::Denied)
        );
    }
    for (i, user) in ["c1", "c2", "c3"].into_iter().enumerate() {
        daemon.import_secret(user, &secret_of(20 + i));
        let outcome = login_code_from(&daemon.socket, user, "000000", "203.0.113.7").outcome;
        assert_eq!(outcome, Some(Outcome::Denied));
    }
    let before = activity_count(&daemon);
    let db = daemon.state_dir.join("kauthd.sqlite");
    let wal = daemon.state_dir.join("kauthd.sqlite-wal");
    let sizes = (file_size(&db), file_size(&wal));

    let code = oathtool_at_step(&secret, now() / 30);
    for _ in 0..20 {
        // The right code too: nothing is checked while locked.
        assert_eq!(
            login_code(&daemon.socket, "ann", &code).outcome,
            Some(Outcome::Locked)
        );
        assert_eq!(
            login_code_from(&daemon.socket, "bob", "000000", "203.0.113.7").outcome,
            Some(Outcome::Locked)
        );
    }
    assert_eq!(
        activity_count(&daemon),
        before,
        "a locked attempt stored an activity row"
    );
    assert_eq!(
        (file_size(&db), file_size(&wal)),
        sizes,
        "a locked attempt wrote to the database"
    );
    assert!(
        daemon.syslog_receives("refused unchecked: locked after repeated failures"),
        "locked attempts are logged"
    );
}
