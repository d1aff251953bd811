//! Storage upkeep (issue 13): on a 4 MiB state filesystem, steady logins
//! and thousands of wrong codes do not fill it up. The WAL stays small,
//! logins keep working, and failure counts older than the rate-limit
//! window are deleted. A write that finds the filesystem full is refused
//! clearly (a code is never accepted unspent), logged once, and kauthd
//! recovers without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kauth_tests::daemon::{running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{login_code_from, now, oathtool_at_step, step_with_margin};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// How long the wrong codes keep coming.
const FLOOD: Duration = Duration::from_secs(20);

/// Wrong codes per second: a steady flood, the same on a fast machine as on
/// a slow one (unpaced, a fast machine fills 4 MiB with their activity rows,
/// which are kept for `[activity] retention_days`).
const WRONG_PER_SECOND: u32 = 200;

/// The WAL may not grow past this (the state filesystem is 4 MiB).
const MAX_WAL_BYTES: u64 = 2 * 1024 * 1024;

/// A short window, so failure rows are old by the next housekeeping; no
/// lock, so the account keeps logging in under the flood.
const CONFIG: &str = "[ratelimit]\nmax_failures = 1000000\nwindow_seconds = 2\nlock_seconds = 2\n";

/// A tmpfs mounted on a directory; unmounted on drop, also when the test
/// fails (lazily, in case kauthd still has it open).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount tmpfs: {}", stderr(&out));
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wal_size(daemon: &TestDaemon) -> u64 {
    fs::metadata(daemon.state_dir.join("kauthd.sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Failure rows in the database (kauthd must be stopped: it holds the
/// database exclusively).
fn failure_rows(daemon: &TestDaemon) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM failures').fetchone()[0])",
        ])
        .arg(daemon.state_dir.join("kauthd.sqlite"))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().parse().unwrap()
}

/// A kauthd whose state directory is a 4 MiB tmpfs, with ann enrolled.
/// The tmpfs is unmounted when the guard drops.
fn daemon_on_a_4_mib_tmpfs() -> (TestDaemon, Tmpfs) {
    assert!(
        running_as_root(),
        "this test mounts a tmpfs: run it as root"
    );
    let mut daemon = TestDaemon::start(CONFIG);
    daemon.stop();
    let tmpfs = Tmpfs::mount(&daemon.state_dir, "4m");
    daemon.restart();
    daemon.import_secret("ann", SECRET);
    (daemon, tmpfs)
}

#[test]
#[ignore = "needs root"]
fn a_small_state_filesystem_does_not_jam_under_steady_logins() {
    let (mut daemon, _tmpfs) = daemon_on_a_4_mib_tmpfs();

    let mut last_step = 0;
    let mut valid = 0;
    let mut wrong = 0u32;
    let started = Instant::now();
    while started.elapsed() < FLOOD {
        let step = now() / 30;
        if step > last_step {
            let code = oathtool_at_step(SECRET, step);
            let login = login_code_from(&daemon.socket, "ann", &code, "192.0.2.1");
            assert!(
                login.succeeded(),
                "a valid code was refused after {wrong} wrong ones: {login:?}\n{}",
                daemon.syslog()
            );
            last_step = step;
            valid += 1;
        }
        let rhost = format!("2001:db8::{:x}", wrong + 1);
        let login = login_code_from(&daemon.socket, "ann", "000000", &rhost);
        assert!(
            login.outcome.is_some() && !login.succeeded(),
            "wrong code {wrong} got no clear refusal: {login:?}\n{}",
            daemon.syslog()
        );
        wrong += 1;
        let due = started + Duration::from_secs(1) * wrong / WRONG_PER_SECOND;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let wal = wal_size(&daemon);
        assert!(
            wal <= MAX_WAL_BYTES,
            "the WAL grew to {wal} bytes after {wrong} wrong codes"
        );
    }
    assert!(valid >= 1 && wrong >= 1000, "{valid} valid, {wrong} wrong");

    // A clean stop truncates the WAL; the failure rows are still there.
    assert!(daemon.stop().success());
    assert_eq!(wal_size(&daemon), 0, "the WAL was not truncated at stop");
    let before = failure_rows(&daemon);
    assert!(before >= 1000, "only {before} failure rows were stored");

    // Housekeeping at start deletes those older than the window.
    std::thread::sleep(Duration::from_secs(3));
    daemon.restart();
    assert!(
        daemon.syslog_receives("expired failure counts and locks"),
        "{}",
        daemon.syslog()
    );
    let step = now() / 30 + 1;
    while now() / 30 < step {
        std::thread::sleep(Duration::from_millis(200));
    }
    let login = login_code_from(
        &daemon.socket,
        "ann",
        &oathtool_at_step(SECRET, step),
        "192.0.2.1",
    );
    assert!(login.succeeded(), "{login:?}");
    assert!(daemon.stop().success());
    assert_eq!(failure_rows(&daemon), 0);
}

/// Fills the filesystem of `dir` with the file `name`; returns its path.
fn fill_as(dir: &Path, name: &str) -> PathBuf {
    let filler = dir.join(name);
    // dd stops with "No space left on device", as intended.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .output()
        .expect("run dd");
    filler
}

#[test]
#[ignore = "needs root"]
fn a_full_state_filesystem_refuses_codes_clearly_and_recovers_without_restart() {
    let (daemon, _tmpfs) = daemon_on_a_4_mib_tmpfs();

    let step = step_with_margin(10);
    let code = oathtool_at_step(SECRET, step);
    let filler = fill_as(&daemon.state_dir, "filler");
    // Space SQLite already holds may take a few more writes; wrong codes
    // (each a failure row) use it up.
    let full = (0..500).any(|i| {
        let rhost = format!("2001:db8::{:x}", i + 1);
        let login = login_code_from(&daemon.socket, "ann", "000000", &rhost);
        login
            .messages
            .iter()
            .any(|m| m.contains("state filesystem is full"))
    });
    assert!(
        full,
        "no write failed on a full filesystem: {}",
        daemon.syslog()
    );
    // That started upkeep, whose checkpoint freed the WAL's space; fill
    // that too. A code whose spend cannot be written is refused.
    std::thread::sleep(Duration::from_secs(1));
    let filler2 = fill_as(&daemon.state_dir, "filler2");
    let login = login_code_from(&daemon.socket, "ann", &code, "192.0.2.1");
    assert!(
        !login.succeeded(),
        "a code was accepted that could not be spent durably"
    );
    assert!(
        login
            .messages
            .iter()
            .any(|m| m.contains("state filesystem is full")),
        "{login:?}"
    );
    assert!(daemon.syslog_receives("the state filesystem is full"));
    assert_eq!(
        daemon
            .syslog()
            .matches("the state filesystem is full")
            .count(),
        1,
        "not rate-limited: {}",
        daemon.syslog()
    );

    // Space comes back: the same code (never spent) logs in, no restart.
    fs::remove_file(filler).unwrap();
    fs::remove_file(filler2).unwrap();
    let login = login_code_from(&daemon.socket, "ann", &code, "192.0.2.1");
    assert!(login.succeeded(), "{login:?}\n{}", daemon.syslog());
    let again = login_code_from(&daemon.socket, "ann", &code, "192.0.2.1");
    assert!(!again.succeeded(), "the code was accepted twice");
}
