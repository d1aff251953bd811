//! The Python client (`clients/python/kauth`) against the real daemon: its
//! unittest scripts (`clients/python/tests/test_client.py`) run by
//! Debian's python3 on a `TestDaemon`'s socket, codes from oathtool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kauth_tests::daemon::{running_as_root, TestDaemon};

/// A uid that is no user's and not root: the foreign caller.
const NOBODY: u32 = 65534;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Debian's python3 (the one the tests' Debian packages install for).
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Copies `from` into `to` (files 0644, directories 0755), so that any uid
/// can read it even when the build tree is under a private directory.
fn copy_readable(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_readable(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Runs `python3 -m unittest -v test_client.<selector>` against `daemon`.
fn run_python_tests(daemon: &TestDaemon, selector: &str, env: &[(&str, String)]) {
    let dir = daemon.dir.path().join("python");
    copy_readable(&repo().join("clients/python/kauth"), &dir.join("kauth"));
    copy_readable(&repo().join("clients/python/tests"), &dir.join("tests"));
    let out = Command::new(python3())
        .args(["-B", "-m", "unittest", "-v"])
        .arg(format!("test_client.{selector}"))
        .current_dir(dir.join("tests"))
        .env("PYTHONPATH", &dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("KAUTH_SOCKET", &daemon.socket)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("python3 is missing: install Debian's python3 (tests/debian-packages)");
    let report = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "the Python client's tests {selector} failed:\n{report}\n{}\n--- kauthd ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        daemon.stderr()
    );
    assert!(report.contains("\nOK"), "no tests ran: {report}");
}

fn daemon() -> TestDaemon {
    TestDaemon::start(&format!(
        "[policy]\nrequire = \"none\"\n[access]\npam_callers = [{NOBODY}]\n"
    ))
}

#[test]
fn python_client_logs_in_with_the_code_in_a_second_connection() {
    run_python_tests(&daemon(), "LoginWithContinuation", &[]);
}

#[test]
fn python_client_runs_an_enrollment_at_login_through_the_continuation() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"all\"\nenroll_at_login = true\n");
    run_python_tests(&daemon, "EnrollAtLogin", &[]);
}

#[test]
fn python_client_refuses_a_replayed_or_unknown_token() {
    run_python_tests(&daemon(), "Replay", &[]);
}

#[test]
#[ignore = "needs root"]
fn python_client_refuses_a_token_presented_by_another_uid() {
    assert!(running_as_root(), "this test switches uid: run it as root");
    run_python_tests(
        &daemon(),
        "ForeignUid",
        &[("KAUTH_FOREIGN_UID", NOBODY.to_string())],
    );
}

#[test]
fn python_client_enrolls_manages_sessions_and_resets_a_password() {
    run_python_tests(&daemon(), "SelfService", &[]);
}

#[test]
fn python_client_raises_a_class_per_error_and_checks_the_listener() {
    run_python_tests(&daemon(), "Errors", &[]);
}
