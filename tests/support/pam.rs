//! Driving the built `libpam_kpanel.so` through the real libpam: a PAM
//! configuration directory of the test's own and the `kauth-pam-harness`
//! application, run with a time limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::bin_dir;

/// How long one harness run may take before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The built module; fails (never skips) when it is not there.
pub fn module_path() -> PathBuf {
    let path = bin_dir().join("libpam_kpanel.so");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// A temporary PAM configuration directory (for `pam_start_confdir`).
pub struct PamConfDir {
    dir: tempfile::TempDir,
}

impl Default for PamConfDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PamConfDir {
    /// A fresh directory holding only an `other` service that denies
    /// everything (libpam falls back to it, and complains when it is absent).
    pub fn new() -> Self {
        let conf = PamConfDir {
            dir: tempfile::Builder::new().prefix("pam.d-").tempdir().unwrap(),
        };
        conf.write_service(
            "other",
            "auth required pam_deny.so\naccount required pam_deny.so\n\
             session required pam_deny.so\npassword required pam_deny.so\n",
        );
        conf
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the service file `name` with the given lines verbatim.
    pub fn write_service(&self, name: &str, lines: &str) {
        fs::write(self.dir.path().join(name), lines).unwrap();
    }

    /// Writes a service that runs pam_kpanel alone in all four stacks,
    /// with `socket=` and the extra `options` on every line.
    pub fn kpanel_service(&self, name: &str, socket: &Path, options: &str) {
        let module = module_path();
        let args = format!("socket={} {options}", socket.display());
        let lines: String = ["auth", "account", "session", "password"]
            .iter()
            .map(|kind| format!("{kind} required {} {args}\n", module.display()))
            .collect();
        self.write_service(name, &lines);
    }
}

/// One invocation of `kauth-pam-harness`.
#[derive(Debug, Clone)]
pub struct Harness {
    exe: PathBuf,
    args: Vec<OsString>,
}

/// What a harness run printed and returned.
#[derive(Debug)]
pub struct HarnessRun {
    /// The exit status; `None` when killed (by a signal or the time limit).
    pub status: Option<i32>,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Harness {
    /// `exe` is `env!("CARGO_BIN_EXE_kauth-pam-harness")` in the test.
    pub fn new(exe: impl Into<PathBuf>, confdir: &PamConfDir, service: &str) -> Self {
        let mut h = Harness {
            exe: exe.into(),
            args: Vec::new(),
        };
        h = h
            .arg("--confdir")
            .arg(confdir.path())
            .arg("--service")
            .arg(service);
        h
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn user(self, name: &str) -> Self {
        self.arg("--user").arg(name)
    }

    /// A user name of arbitrary bytes (no NUL).
    pub fn user_bytes(self, name: &[u8]) -> Self {
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        self.arg("--user-hex").arg(hex)
    }

    pub fn answer(self, text: &str) -> Self {
        self.arg("--answer").arg(text)
    }

    /// `auth`, `account`, `open`, `close`, `chauthtok` or `login`.
    pub fn op(self, op: &str) -> Self {
        self.arg("--op").arg(op)
    }

    pub fn conv_null(self) -> Self {
        self.arg("--conv-null")
    }

    pub fn conv_fail(self) -> Self {
        self.arg("--conv-fail")
    }

    pub fn rhost(self, host: &str) -> Self {
        self.arg("--rhost").arg(host)
    }

    /// Runs the harness, killing it after [`RUN_LIMIT`].
    pub fn run(&self) -> HarnessRun {
        let start = Instant::now();
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = start.elapsed();
        let stdout = out.join().unwrap();
        let stderr = err.join().unwrap();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        HarnessRun {
            status: status.code(),
            json,
            stdout,
            stderr,
            elapsed,
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl HarnessRun {
    /// The PAM code a step returned (`auth`, `account`, `open_session`,
    /// `close_session`, `chauthtok`), or `None` if it did not run.
    pub fn code(&self, step: &str) -> Option<&str> {
        self.json.get(step).and_then(Value::as_str)
    }

    pub fn prompts(&self) -> Vec<String> {
        self.strings("prompts")
    }

    pub fn infos(&self) -> Vec<String> {
        self.strings("infos")
    }

    pub fn errors(&self) -> Vec<String> {
        self.strings("errors")
    }

    /// What the person at the terminal sees of the run: every prompt and
    /// message with its style, and the PAM result of `auth`, nothing else.
    pub fn seen(&self) -> Value {
        serde_json::json!({
            "auth": self.code("auth"),
            "prompts": self.prompts(),
            "infos": self.infos(),
            "errors": self.errors(),
        })
    }

    pub fn session_id(&self) -> Option<&str> {
        self.json.get("session_id").and_then(Value::as_str)
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.json
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the harness ran to its end (no crash, no time limit) and
    /// printed its JSON.
    pub fn assert_completed(&self) {
        assert!(
            matches!(self.status, Some(0) | Some(1)) && self.json.is_object(),
            "harness did not complete normally: status {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}
