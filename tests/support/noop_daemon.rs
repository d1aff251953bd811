//! kauth-noop-daemon (`harness/noop_daemon.rs`) as a process: the login
//! benchmark's floor, and its test.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::daemon::binary;

/// A kauth-noop-daemon process, killed on drop.
pub struct NoopDaemon {
    pub socket: PathBuf,
    child: Child,
}

impl NoopDaemon {
    /// Listens on `socket`; accepts every code after a commit to
    /// `commits`, or denies every code without writing when `commits` is
    /// `None`. Returns once it accepts connections.
    pub fn start(socket: &Path, commits: Option<&Path>) -> NoopDaemon {
        let mut command = Command::new(binary("kauth-noop-daemon"));
        command.arg(socket);
        match commits {
            Some(file) => command.arg("accept").arg(file),
            None => command.arg("deny"),
        };
        let child = command.spawn().expect("start kauth-noop-daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "kauth-noop-daemon did not start listening"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        NoopDaemon {
            socket: socket.to_owned(),
            child,
        }
    }
}

impl Drop for NoopDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
