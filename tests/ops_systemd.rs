//! kauthd under systemd, with the real protocols and no systemd needed:
//! readiness and stopping over a `NOTIFY_SOCKET` the test binds, the
//! watchdog's pings, and socket activation with a listening socket the
//! test makes and passes as fd 3 with `LISTEN_FDS`/`LISTEN_PID` (as
//! `kauthd.socket` would), including the refusal of a socket that is
//! elsewhere or not a stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kauth_tests::daemon::{binary, TestDaemon};
use kauth_tests::standalone::{
    ctl_status, temp_dir, terminate, wait_answering, wait_exit, write_config,
};

/// The datagrams kauthd sent to `socket` within `wait`, until one
/// holding `until` arrives.
fn receive_until(socket: &UnixDatagram, until: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = text.lines().any(|l| l == until);
                got.push(text);
                if done {
                    return got;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no {until} from kauthd within {wait:?}; received {got:?}");
}

#[test]
#[ignore = "needs root"]
fn kauthd_tells_systemd_it_is_ready_pings_the_watchdog_and_says_it_stops() {
    let mut daemon = TestDaemon::start("");
    let notify_path = daemon.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let path = notify_path.to_str().unwrap().to_owned();
    daemon.restart_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")]);
    let ready = receive_until(&notify, "READY=1", Duration::from_secs(20));
    assert_eq!(ready, ["READY=1"], "READY=1 comes once, first");
    // Ready means it answers.
    assert!(daemon.ctl(&["status"]).status.success());
    // Pings at half of WATCHDOG_USEC while the main loop turns.
    receive_until(&notify, "WATCHDOG=1", Duration::from_secs(5));
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    let stopping = receive_until(&notify, "STOPPING=1", Duration::from_secs(5));
    assert!(!stopping.iter().any(|m| m == "READY=1"), "{stopping:?}");
}

/// Starts kauthd with `fd` passed as fd 3, as systemd does:
/// `LISTEN_FDS=1` and `LISTEN_PID` set to kauthd's own pid (the shell
/// execs kauthd, so its pid is kauthd's).
fn spawn_activated(config: &Path, fd: RawFd, stderr: &Path) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(binary("kauthd"))
        .arg("--config")
        .arg(config)
        .env(
            "KAUTHD_SYSLOG_SOCKET",
            config.with_file_name("no-syslog.sock"),
        )
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(stderr).unwrap());
    // SAFETY: dup2, fcntl and prctl are async-signal-safe and touch no
    // Rust state; fd 3 becomes the passed socket, kept across exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("start kauthd")
}

#[test]
#[ignore = "needs root"]
fn a_socket_passed_by_systemd_is_served_and_left_in_place() {
    let dir = temp_dir();
    let socket = dir.path().join("kauthd.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let inode = fs::metadata(&socket).unwrap().ino();
    let config = write_config(dir.path(), &socket);
    let stderr = dir.path().join("kauthd.stderr");
    let mut child = spawn_activated(&config, listener.as_raw_fd(), &stderr);
    // The test's copy is not kauthd's concern.
    drop(listener);

    wait_answering(&mut child, &socket, &stderr);
    // kauthd serves the socket it was given: the same inode, mode 0666.
    let meta = fs::metadata(&socket).unwrap();
    assert_eq!(meta.ino(), inode);
    assert_eq!(meta.mode() & 0o777, 0o666);
    let log = fs::read_to_string(&stderr).unwrap();
    assert!(!log.contains("stale socket"), "{log}");

    let status = terminate(&mut child);
    assert!(
        status.success(),
        "{status}: {}",
        fs::read_to_string(&stderr).unwrap()
    );
    // The socket is systemd's: kauthd leaves it for the next start.
    assert_eq!(fs::metadata(&socket).unwrap().ino(), inode);
}

/// Starts kauthd with `fd` passed and returns what it said when it
/// refused to start.
fn refused_with(fd: RawFd, config: &Path, dir: &Path) -> String {
    let stderr = dir.join("refused.stderr");
    let mut child = spawn_activated(config, fd, &stderr);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let said = fs::read_to_string(&stderr).unwrap();
    assert!(
        !status.success(),
        "kauthd started on a wrong socket: {said}"
    );
    said
}

#[test]
#[ignore = "needs root"]
fn a_passed_socket_elsewhere_or_not_a_stream_is_refused_clearly() {
    let dir = temp_dir();
    let socket = dir.path().join("kauthd.sock");
    let config = write_config(dir.path(), &socket);

    let elsewhere = dir.path().join("other.sock");
    let listener = UnixListener::bind(&elsewhere).unwrap();
    let said = refused_with(listener.as_raw_fd(), &config, dir.path());
    assert!(
        said.contains(&format!("is bound to {}", elsewhere.display()))
            && said.contains(&socket.display().to_string())
            && said.contains("ListenStream="),
        "{said}"
    );
    assert!(!socket.exists(), "kauthd made a socket of its own");

    let datagram = UnixDatagram::bind(dir.path().join("dgram.sock")).unwrap();
    let said = refused_with(datagram.as_raw_fd(), &config, dir.path());
    assert!(said.contains("not a stream"), "{said}");
    assert!(!ctl_status(&socket));
}
