//! A kauthd the test starts itself (not through `TestDaemon`), for runs
//! that need a special environment: a socket passed by "systemd", a
//! journal of the test's own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::binary;

/// A temporary directory others can enter (kauthctl may run as another uid).
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kauthd-standalone-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A config in `dir` with the socket at `socket` and the state in `dir`.
pub fn write_config(dir: &Path, socket: &Path) -> PathBuf {
    let config = dir.join("kauthd.toml");
    fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsecret_key_file = \"{}\"\n",
            socket.display(),
            dir.join("state").display(),
            dir.join("secret.key").display()
        ),
    )
    .expect("write config");
    config
}

/// Waits for `child` to exit; kills it and fails after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kauthd did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `kauthctl status` succeeds on `socket`.
pub fn ctl_status(socket: &Path) -> bool {
    Command::new(binary("kauthctl"))
        .arg("status")
        .env("KAUTHD_SOCKET", socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kauthctl")
        .success()
}

/// Waits until kauthd answers on `socket`; fails with its stderr if it
/// exits first or does not answer within 20 s.
pub fn wait_answering(child: &mut Child, socket: &Path, stderr: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl_status(socket) {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "kauthd exited ({status}): {}",
                fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "kauthd never answered on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then the exit status.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child with SIGTERM.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_exit(child, Duration::from_secs(10))
}
