//! A real kauthd process on a temporary socket and state dir, and a way
//! to run the real kauthctl against it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory cargo puts the workspace's binaries in (`target/debug`),
/// found from the running test executable (`target/debug/deps/…`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("target profile dir").to_path_buf()
}

/// Path of a workspace binary; fails loudly if it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// A kauthd running on its own temporary directory. Killed on drop.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<Child>,
    syslog: Option<SyslogCapture>,
    /// kauthd logs to the machine's syslog (`/dev/log`), not to a capture
    /// in this process.
    system_syslog: bool,
}

impl TestDaemon {
    /// Starts kauthd with `extra` appended to a config that points the socket
    /// and state dir into a fresh temp dir (readable by others, so that an
    /// unprivileged client can reach the socket).
    pub fn start(extra: &str) -> TestDaemon {
        Self::start_prepared(extra, |_| {})
    }

    /// Starts kauthd like [`TestDaemon::start`], logging to the machine's
    /// syslog as an installed kauthd does, instead of to a capture thread
    /// in this process: for the benchmark, where that thread would take
    /// CPU time from the logins it measures, and where
    /// google-authenticator logs to the machine's syslog too.
    pub fn start_with_system_syslog(extra: &str) -> TestDaemon {
        Self::start_prepared(extra, |daemon| daemon.system_syslog = true)
    }

    /// Starts kauthd like [`TestDaemon::start`] with a copy of `key_file` as
    /// its secret key (the hosts of a fleet share one key).
    pub fn start_with_key(extra: &str, key_file: &Path) -> TestDaemon {
        Self::start_prepared(extra, |daemon| {
            fs::copy(key_file, daemon.key_file()).expect("copy the secret key");
        })
    }

    /// Creates the directory and config, runs `prepare`, then starts kauthd.
    fn start_prepared(extra: &str, prepare: impl FnOnce(&mut TestDaemon)) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("kauthd-test-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let socket = dir.path().join("kauthd.sock");
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("kauthd.toml");
        let stderr_path = dir.path().join("kauthd.stderr");
        let mut daemon = TestDaemon {
            socket,
            state_dir,
            config_path,
            stderr_path,
            dir,
            child: None,
            syslog: None,
            system_syslog: false,
        };
        daemon.write_config(extra);
        prepare(&mut daemon);
        daemon.spawn();
        daemon
    }

    /// Rewrites the config file (the daemon reads it again on SIGHUP or restart).
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsecret_key_file = \"{}\"\n{}\n",
            self.socket.display(),
            self.state_dir.display(),
            self.key_file().display(),
            extra
        );
        fs::write(&self.config_path, text).expect("write config");
    }

    fn spawn(&mut self) {
        self.spawn_with_env(&[]);
    }

    fn spawn_with_env(&mut self, env: &[(&str, &str)]) {
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr file");
        let mut cmd = Command::new(binary("kauthd"));
        if !self.system_syslog {
            let path = self.dir.path().join("syslog.sock");
            if self.syslog.is_none() {
                self.syslog = Some(SyslogCapture::start(&path));
            }
            cmd.env("KAUTHD_SYSLOG_SOCKET", path);
        }
        cmd.arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .envs(env.iter().copied());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
        // Rust state; it makes a test run that is killed take kauthd with it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start kauthd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until `kauthctl status` answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("kauthd exited early ({status}): {}", self.stderr());
                }
            }
            if self.socket.exists() && self.ctl(&["status"]).status.code() == Some(0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kauthd did not become ready: {}", self.stderr());
    }

    /// The key file that encrypts this daemon's TOTP secrets (created by
    /// kauthd at its first start).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("daemon running")
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything kauthd sent to syslog so far, one message per line.
    pub fn syslog(&self) -> String {
        self.syslog
            .as_ref()
            .map(SyslogCapture::text)
            .unwrap_or_default()
    }

    /// Adds the kauthd account `name` with `password` (as root).
    pub fn add_account(&self, name: &str, password: &str) {
        let out = self.ctl_with(
            &["user", "add", name, "--password-stdin"],
            Some(&format!("{password}\n")),
            None,
        );
        assert!(out.status.success(), "user add {name}: {}", stderr(&out));
    }

    /// Begins an enrollment of `user` (as root); returns the secret.
    pub fn enroll_begin(&self, user: &str) -> String {
        let begun = json(&self.ctl(&["--json", "2fa", "enroll", "--begin", "--user", user]));
        begun["secret"].as_str().expect("a secret").to_owned()
    }

    /// Confirms `user`'s pending enrollment with `code` (as root); returns
    /// the answer (with the recovery codes).
    pub fn enroll_confirm(&self, user: &str, code: &str) -> serde_json::Value {
        json(&self.ctl(&["--json", "2fa", "enroll", "--confirm", code, "--user", user]))
    }

    /// Regenerates `user`'s recovery codes (as root); returns the new codes.
    pub fn regenerate_recovery_codes(&self, user: &str) -> Vec<String> {
        crate::login::recovery_codes(&json(&self.ctl(&[
            "--json",
            "2fa",
            "recovery-codes",
            "--regenerate",
            "--user",
            user,
        ])))
    }

    /// Imports the base32 `secret` for `user`: 2FA is on at once.
    pub fn import_secret(&self, user: &str, secret: &str) {
        let out = self.ctl(&["2fa", "import", "--user", user, "--secret", secret]);
        assert!(out.status.success(), "2fa import: {}", stderr(&out));
    }

    /// Whether `text` reaches the syslog capture within a few seconds (it
    /// receives on a thread of its own, so a line may lag the request).
    pub fn syslog_receives(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.syslog().contains(text) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "kauthd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again on the same config, socket and state.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts the daemon again on the same state with extra environment
    /// variables (e.g. libfaketime's `LD_PRELOAD` and `FAKETIME`).
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        self.spawn_with_env(env);
    }

    /// Runs kauthctl against this daemon as the current user.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with(args, None, None)
    }

    /// Runs kauthctl with optional standard input and uid.
    pub fn ctl_with(&self, args: &[&str], stdin: Option<&str>, uid: Option<u32>) -> Output {
        let program = match uid {
            Some(_) => world_executable_copy(&binary("kauthctl"), self.dir.path()),
            None => binary("kauthctl"),
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("KAUTHD_SOCKET", &self.socket)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(uid) = uid {
            // std drops supplementary groups when a root parent sets a uid.
            cmd.uid(uid).gid(uid);
        }
        let mut child = spawn_retrying(&mut cmd);
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("kauthctl output")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A copy of `binary` that any uid can execute (the build tree may sit
/// under a directory only root can enter).
pub fn world_executable_copy(binary: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join(binary.file_name().expect("binary has a file name"));
    if !copy.exists() {
        fs::copy(binary, &copy).expect("copy binary");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    }
    copy
}

/// Whether the tests run as root (CI does; some tests need it).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON document a successful `kauthctl --json …` printed.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "kauthctl failed: {}{}",
        stdout(output),
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).expect("kauthctl --json printed no JSON")
}

/// A syslog socket of the test's own (kauthd is pointed at it with
/// `KAUTHD_SYSLOG_SOCKET`) and everything received on it.
struct SyslogCapture {
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SyslogCapture {
    fn start(path: &Path) -> SyslogCapture {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind a syslog socket");
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod syslog socket");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(line);
            }
        });
        SyslogCapture { received }
    }

    fn text(&self) -> String {
        self.received.lock().unwrap().join("\n")
    }
}

/// Spawns `cmd`, retrying while the binary is "busy": a copy just written
/// can still be open for writing in a child another test thread forked
/// before it exec'd (ETXTBSY).
fn spawn_retrying(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run kauthctl: {e}"),
        }
    }
}
