//! Files root's kauthctl writes or reads on a user's behalf: a symbolic
//! link, a FIFO, a device or a huge file planted at the path must not make
//! it overwrite, create, hang or exhaust memory; and kauthd refuses
//! oversized imported secrets and scratch-code lists itself.
//!
//! Real files and links in a temporary directory, the real kauthctl
//! against a real kauthd. Root only: importing and acting for another
//! user are root's commands.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kauth_tests::daemon::{binary, stderr, stdout, TestDaemon};

const SECRET_A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const ROOT_ONLY_TEXT: &str = "root's own file\n";

/// Runs kauthctl against `daemon`, killing it if it has not finished
/// within `limit` (a hang is a failure, not a stuck test run).
fn ctl_within(daemon: &TestDaemon, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(binary("kauthctl"))
        .args(args)
        .env("KAUTHD_SOCKET", &daemon.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kauthctl");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait for kauthctl").is_some() {
            return child.wait_with_output().expect("kauthctl output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kauthctl {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ctl(daemon: &TestDaemon, args: &[&str]) -> Output {
    ctl_within(daemon, args, Duration::from_secs(60))
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Asserts kauthctl failed with a message containing `expected`.
fn assert_refused(out: &Output, expected: &str) {
    let message = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kauthctl should have failed: {}{message}",
        stdout(out)
    );
    assert!(
        message.contains(expected),
        "the message should say {expected:?}: {message}"
    );
}

/// A root-only file (0400) the attacker would like overwritten.
fn root_only_file(dir: &Path) -> PathBuf {
    let path = dir.join("root-only");
    fs::write(&path, ROOT_ONLY_TEXT).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    path
}

fn assert_untouched(path: &Path) {
    assert_eq!(fs::read_to_string(path).unwrap(), ROOT_ONLY_TEXT);
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o400, "mode of {} changed", path.display());
}

fn import_secret(daemon: &TestDaemon, user: &str) {
    let out = ctl(
        daemon,
        &["2fa", "import", "--user", user, "--secret", SECRET_A],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The three ways kauthctl writes a private file, each as the arguments
/// that write to `path`.
fn writers(path: &str) -> Vec<Vec<String>> {
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        args(&[
            "2fa",
            "recovery-codes",
            "--regenerate",
            "--user",
            "ann",
            "--save-codes",
            path,
        ]),
        args(&[
            "2fa", "enroll", "--begin", "--user", "bob", "--qr-png", path,
        ]),
        args(&[
            "2fa", "enroll", "--begin", "--user", "bob", "--qr-svg", path,
        ]),
    ]
}

fn run_writer(daemon: &TestDaemon, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctl(daemon, &args)
}

#[test]
#[ignore = "needs root"]
fn a_symlink_to_a_root_only_file_is_not_written_through() {
    let daemon = TestDaemon::start("");
    import_secret(&daemon, "ann");
    let dir = tempfile::tempdir().unwrap();
    let target = root_only_file(dir.path());
    let link = dir.path().join("codes.txt");
    symlink(&target, &link).unwrap();
    for args in writers(path_arg(&link)) {
        let out = run_writer(&daemon, &args);
        assert_refused(&out, "is a symbolic link; refusing to write through it");
        assert_untouched(&target);
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

#[test]
#[ignore = "needs root"]
fn a_dangling_symlink_creates_nothing_at_its_target() {
    let daemon = TestDaemon::start("");
    import_secret(&daemon, "ann");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("planted");
    let link = dir.path().join("codes.txt");
    symlink(&target, &link).unwrap();
    for args in writers(path_arg(&link)) {
        let out = run_writer(&daemon, &args);
        assert_refused(&out, "is a symbolic link; refusing to write through it");
        assert!(
            fs::symlink_metadata(&target).is_err(),
            "{} was created through the link by {args:?}",
            target.display()
        );
    }
    // Nothing else (no leftover temporary file) either.
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
#[ignore = "needs root"]
fn private_files_are_written_new_or_over_a_regular_file_with_mode_0600() {
    let daemon = TestDaemon::start("");
    import_secret(&daemon, "ann");
    let dir = tempfile::tempdir().unwrap();
    for (i, args) in writers("PLACEHOLDER").into_iter().enumerate() {
        let path = dir.path().join(format!("out-{i}"));
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if a == "PLACEHOLDER" {
                    path_arg(&path).to_owned()
                } else {
                    a
                }
            })
            .collect();
        // Once new, once over the file the first run wrote.
        for _ in 0..2 {
            let out = run_writer(&daemon, &args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            let meta = fs::symlink_metadata(&path).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
            assert!(meta.len() > 0);
        }
    }
    let codes = fs::read_to_string(dir.path().join("out-0")).unwrap();
    assert_eq!(codes.lines().count(), 10, "{codes}");
    let png = fs::read(dir.path().join("out-1")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let svg = fs::read_to_string(dir.path().join("out-2")).unwrap();
    assert!(svg.contains("<svg"));
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 3, "leftover files: {names:?}");
}

/// A google-authenticator file with `scratch` 8-digit codes.
fn google_authenticator_text(secret: &str, scratch: usize) -> String {
    let mut text = format!("{secret}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" TOTP_AUTH\n");
    for i in 0..scratch {
        text.push_str(&format!("{}\n", 10_000_000 + i));
    }
    text
}

fn import_file(daemon: &TestDaemon, path: &Path) -> Output {
    ctl_within(
        daemon,
        &[
            "import",
            "google-authenticator",
            "--user",
            "ann",
            path_arg(path),
        ],
        // Generous: 100 scratch codes are 100 argon2 hashes on a busy
        // machine. A FIFO must end promptly, which its test checks itself.
        Duration::from_secs(120),
    )
}

fn assert_two_factor_off(daemon: &TestDaemon, user: &str) {
    let out = ctl(daemon, &["--json", "2fa", "status", "--user", user]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["enabled"], false, "{status}");
}

#[test]
#[ignore = "needs root"]
fn import_does_not_read_through_a_symlink() {
    let daemon = TestDaemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::write(&real, google_authenticator_text(SECRET_A, 2)).unwrap();
    let link = dir.path().join(".google_authenticator");
    symlink(&real, &link).unwrap();
    let out = import_file(&daemon, &link);
    assert_refused(&out, "is a symbolic link; refusing to read through it");
    assert_two_factor_off(&daemon, "ann");
    // The file itself imports.
    let out = import_file(&daemon, &real);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn import_refuses_a_device() {
    let daemon = TestDaemon::start("");
    let out = import_file(&daemon, Path::new("/dev/zero"));
    assert_refused(&out, "is not a regular file (it is a character device)");
    assert_two_factor_off(&daemon, "ann");
}

#[test]
#[ignore = "needs root"]
fn import_refuses_a_fifo_promptly() {
    let daemon = TestDaemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let started = Instant::now();
    let out = import_file(&daemon, &fifo);
    assert_refused(&out, "is not a regular file (it is a FIFO)");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_two_factor_off(&daemon, "ann");
}

#[test]
#[ignore = "needs root"]
fn import_refuses_a_file_over_64_kib() {
    let daemon = TestDaemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let mut text = google_authenticator_text(SECRET_A, 2);
    // Blank lines are allowed in the format: only the size is wrong.
    text.push_str(&"\n".repeat(65 * 1024 - text.len()));
    fs::write(&file, text).unwrap();
    let out = import_file(&daemon, &file);
    assert_refused(&out, "is larger than 64 KiB");
    assert_two_factor_off(&daemon, "ann");
}

#[test]
#[ignore = "needs root"]
fn kauthd_refuses_a_secret_over_64_bytes() {
    let daemon = TestDaemon::start("");
    // 104 base32 characters: 520 bits, 65 bytes.
    let long = "JBSWY3DP".repeat(13);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ga");
    fs::write(&file, google_authenticator_text(&long, 2)).unwrap();
    let out = import_file(&daemon, &file);
    assert_refused(&out, "the TOTP secret is too long (520 bits; at most 512");
    assert!(!stderr(&out).contains(&long));

    let out = ctl(
        &daemon,
        &["2fa", "import", "--user", "ann", "--secret", &long],
    );
    assert_refused(&out, "the TOTP secret is too long (520 bits; at most 512");
    assert_two_factor_off(&daemon, "ann");

    // 103 characters decode to 64 bytes: accepted.
    let out = ctl(
        &daemon,
        &["2fa", "import", "--user", "ann", "--secret", &long[..103]],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn kauthd_refuses_more_than_100_scratch_codes() {
    let daemon = TestDaemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ga");
    fs::write(&file, google_authenticator_text(SECRET_A, 101)).unwrap();
    let out = import_file(&daemon, &file);
    assert_refused(&out, "more than 100 scratch codes");
    assert_two_factor_off(&daemon, "ann");

    fs::write(&file, google_authenticator_text(SECRET_A, 100)).unwrap();
    let out = import_file(&daemon, &file);
    assert!(out.status.success(), "{}", stderr(&out));
}
