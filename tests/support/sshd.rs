//! A real OpenSSH `sshd` on a loopback port, with a PAM service of its
//! own, and the real `ssh` client driven through `SSH_ASKPASS`.
//!
//! - [`TestSshd`] runs `/usr/sbin/sshd -D` (foreground) as root with an
//!   `sshd_config`, host key, pid file, authorized-keys directory and log
//!   (`LogLevel DEBUG3`, `-E`) in a temporary directory. sshd names its PAM
//!   service after its program name, so it is started through a symlink
//!   `<tmp>/kauth-sshd-test-<random>` → `/usr/sbin/sshd`, and the PAM stack is
//!   written to `/etc/pam.d/kauth-sshd-test-<random>` ([`PamService`]),
//!   removed again on drop. The machine's own sshd, `/etc/pam.d/sshd` and
//!   `/etc/ssh/sshd_config` are never touched.
//! - [`SystemUser`] is a throwaway local account (`useradd -m`), removed
//!   with `userdel -r` on drop, also when the test panics.
//! - [`SshLogin`] runs `ssh -F /dev/null … user@127.0.0.1 'echo ok-$USER'`
//!   with an askpass script that answers `Password:` and `Verification
//!   code:` prompts from its environment and logs every prompt it was shown.
//! - [`Totp`] computes codes with Debian's `oathtool` and hands out each
//!   time step once, using the skew window (±1 step) instead of sleeping.
//!
//! Nothing here skips: without root or without sshd, [`require_root_and_openssh`]
//! fails the test with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::running_as_root;
use crate::pam::module_path;

/// The OpenSSH server the tests run.
pub const SSHD: &str = "/usr/sbin/sshd";
/// How long one `ssh` run may take before it is killed and the test fails.
pub const SSH_LIMIT: Duration = Duration::from_secs(30);
/// The remote command every login runs; its output proves the login.
pub const REMOTE_COMMAND: &str = "echo ok-$USER";

/// Fails the test (never skips) unless it runs as root with OpenSSH,
/// `ssh-keygen` and `oathtool` installed.
pub fn require_root_and_openssh() {
    assert!(
        running_as_root(),
        "the sshd end-to-end tests must run as root (they start sshd, write \
         /etc/pam.d/kauth-sshd-test-* and create throwaway users); run them as \
         root, as CI does (.ci/run)"
    );
    for tool in [
        SSHD,
        "ssh",
        "ssh-keygen",
        "oathtool",
        "useradd",
        "userdel",
        "chpasswd",
    ] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            which(tool).is_some()
        };
        assert!(
            found,
            "{tool} is missing: install the packages in tests/debian-packages \
             (openssh-server, openssh-client, oathtool)"
        );
    }
    sweep_leftovers();
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| p.exists())
}

/// The GECOS field of test users, followed by the creating process's pid.
const USER_MARK: &str = "kauthd ssh test, pid ";
/// PAM service names: `<prefix><pid>-<unique>`.
const SERVICE_PREFIX: &str = "kauth-sshd-test-";

/// Removes what an earlier run of these tests left behind when it was
/// killed before it could clean up: test users and PAM service files whose
/// creating process is gone. Anything of a live process is left alone.
fn sweep_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let gone = |pid: &str| {
            pid.parse::<u32>()
                .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        };
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(name), Some(gecos)) = (fields.first(), fields.get(4)) else {
                continue;
            };
            let stale =
                name.starts_with("kauth-t") && gecos.strip_prefix(USER_MARK).is_some_and(gone);
            if stale {
                eprintln!("removing user {name} left behind by a killed test run");
                account_tool(Command::new("userdel").args(["-f", "-r", name]), None);
            }
        }
        for entry in fs::read_dir("/etc/pam.d").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix(SERVICE_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .is_some_and(gone);
            if stale {
                eprintln!("removing /etc/pam.d/{name} left behind by a killed test run");
                let _ = fs::remove_file(entry.path());
            }
        }
    });
}

/// A short random hex string (from /dev/urandom), for unique names.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A unique name `<prefix><counter><random>`, different across tests and
/// across concurrent runs of the test binary.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n}{}", random_hex(3))
}

/// A new ed25519 key pair without a passphrase at `path` (and `path.pub`).
fn ssh_keygen(path: &Path, comment: &str) {
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
    assert!(out.status.success(), "ssh-keygen: {}", text(&out.stderr));
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// System users

/// `useradd`, `userdel` and `chpasswd` lock /etc/passwd and /etc/shadow;
/// tests in this binary take turns so none of them gives up on the lock.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// Runs an account tool, retrying while another process holds the
/// password-file lock.
fn account_tool(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let _turn = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut last = None;
    for _ in 0..10 {
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let busy = text(&out.stderr).contains("lock");
        if out.status.success() || !busy {
            return out;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(300));
    }
    last.unwrap()
}

/// A throwaway local user (`useradd -m -s /bin/sh`), deleted with
/// `userdel -r` when dropped. Its unix password is locked unless
/// [`SystemUser::set_unix_password`] sets one.
pub struct SystemUser {
    pub name: String,
}

impl SystemUser {
    /// Creates `kauth-t<tag><unique>`; `tag` is a few letters naming the test.
    pub fn create(tag: &str) -> SystemUser {
        require_root_and_openssh();
        let name = unique(&format!("kauth-t{tag}"));
        assert!(name.len() <= 32, "user name {name} is too long");
        let out = account_tool(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", "-c"])
                .arg(format!("{USER_MARK}{}", std::process::id()))
                .arg(&name),
            None,
        );
        assert!(
            out.status.success(),
            "useradd {name} failed: {}",
            text(&out.stderr)
        );
        SystemUser { name }
    }

    /// Sets the unix password (`chpasswd`), for pam_unix scenarios.
    pub fn set_unix_password(&self, password: &str) {
        let out = account_tool(
            &mut Command::new("chpasswd"),
            Some(&format!("{}:{password}\n", self.name)),
        );
        assert!(
            out.status.success(),
            "chpasswd for {} failed: {}",
            self.name,
            text(&out.stderr)
        );
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        // -f: an sshd child of the login may still be winding down.
        let out = account_tool(
            Command::new("userdel").args(["-f", "-r"]).arg(&self.name),
            None,
        );
        if !out.status.success() {
            eprintln!(
                "warning: userdel -r {} failed: {}",
                self.name,
                text(&out.stderr)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// PAM

/// `/etc/pam.d/<name>`, removed when dropped.
pub struct PamService {
    pub name: String,
    pub path: PathBuf,
}

impl PamService {
    pub fn install(name: &str, stack: &str) -> PamService {
        let path = Path::new("/etc/pam.d").join(name);
        assert!(!path.exists(), "{} exists already", path.display());
        fs::write(&path, stack).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        PamService {
            name: name.to_owned(),
            path,
        }
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The repository's `config/` directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("config")
}

/// A documented example from `config/` (e.g. `pam.d/sshd-unix-then-code`),
/// made runnable: every `pam_kpanel.so` becomes the absolute path of the
/// built module followed by `extra_args` (the test daemon's `socket=`).
/// pam_kpanel lines of the kinds in `leave_out` (e.g. `"session"`) are
/// commented out; comments, blank lines and every other line are kept
/// verbatim.
pub fn example_pam_stack(example: &str, extra_args: &str, leave_out: &[&str]) -> String {
    let path = config_dir().join(example);
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let module = module_path();
    let mut stack = String::new();
    for line in doc.lines() {
        let is_kpanel_rule = !line.trim_start().starts_with('#') && line.contains("pam_kpanel.so");
        if !is_kpanel_rule {
            stack.push_str(line);
        } else {
            let kind = line.split_whitespace().next().unwrap_or("");
            if leave_out.contains(&kind) {
                stack.push_str(&format!("# left out by the test: {line}"));
            } else {
                stack.push_str(&line.replacen(
                    "pam_kpanel.so",
                    &format!("{} {extra_args}", module.display()),
                    1,
                ));
            }
        }
        stack.push('\n');
    }
    stack
}

/// The active (non-comment, non-blank) lines of a config example, with
/// trailing comments and surrounding blanks removed.
pub fn example_lines(example: &str) -> Vec<String> {
    let path = config_dir().join(example);
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    doc.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// sshd

/// What the sshd of a scenario allows.
#[derive(Debug, Clone)]
pub struct SshdSetup {
    /// The PAM stack, verbatim (see [`example_pam_stack`]).
    pub pam_stack: String,
    /// Extra `sshd_config` lines (e.g. from `config/sshd_config.d/`). They
    /// come first: for most keywords sshd keeps the first value it reads.
    pub config: Vec<String>,
}

/// A running sshd, stopped (and its files removed) when dropped.
pub struct TestSshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    /// The PAM service sshd uses (its program name).
    pub service: PamService,
    /// The symlink to sshd that gives it the PAM service name.
    program: PathBuf,
    host_key: PathBuf,
    keys_dir: PathBuf,
    child: Option<Child>,
}

impl TestSshd {
    pub fn start(setup: &SshdSetup) -> TestSshd {
        require_root_and_openssh();
        // Privilege separation chroots into /run/sshd; Debian creates it at
        // service start, which never happened on a machine without sshd running.
        if !Path::new("/run/sshd").exists() {
            fs::create_dir_all("/run/sshd").expect("create /run/sshd");
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = tempfile::Builder::new()
            .prefix("kauth-sshd-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let service_name = unique(&format!("{SERVICE_PREFIX}{}-", std::process::id()));
        let program = dir.path().join(&service_name);
        symlink(SSHD, &program).expect("symlink to sshd");
        let service = PamService::install(&service_name, &setup.pam_stack);

        let host_key = dir.path().join("ssh_host_ed25519_key");
        ssh_keygen(&host_key, "kauth-test-host");
        let keys_dir = dir.path().join("authorized_keys");
        fs::create_dir(&keys_dir).unwrap();
        fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o755)).unwrap();

        let mut sshd = TestSshd {
            port: 0,
            log_path: dir.path().join("sshd.log"),
            config_path: dir.path().join("sshd_config"),
            program,
            host_key,
            keys_dir,
            dir,
            service,
            child: None,
        };
        let mut last_failure = String::new();
        // The free port is found by binding port 0 and letting it go; another
        // process may take it in between, so try a few ports.
        for _ in 0..5 {
            sshd.port = free_port();
            let config = sshd_config(
                setup,
                sshd.port,
                sshd.dir.path(),
                &sshd.host_key,
                &sshd.keys_dir,
            );
            fs::write(&sshd.config_path, config).unwrap();
            let out = run(Command::new(&sshd.program)
                .arg("-t")
                .arg("-f")
                .arg(&sshd.config_path));
            assert!(
                out.status.success(),
                "sshd -t refused the test configuration:\n{}\n{}",
                text(&out.stderr),
                fs::read_to_string(&sshd.config_path).unwrap()
            );
            let mut command = Command::new(&sshd.program);
            command
                .args(["-D", "-f"])
                .arg(&sshd.config_path)
                .arg("-E")
                .arg(&sshd.log_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
            // SAFETY: prctl is async-signal-safe and touches no Rust state.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    // If this test thread dies without dropping us, so does sshd.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let child = command.spawn().expect("start sshd");
            sshd.child = Some(child);
            match sshd.wait_listening() {
                Ok(()) => return sshd,
                Err(why) => {
                    last_failure = why;
                    sshd.stop();
                }
            }
        }
        panic!("sshd did not start: {last_failure}");
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("sshd exited ({status}):\n{}", self.log()));
                }
            }
            // Logged once the socket listens (no probe connection needed).
            if self.log().contains("Server listening on 127.0.0.1 port") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Err(format!("sshd did not listen within 10 s:\n{}", self.log()))
    }

    /// Everything sshd logged so far (DEBUG3, including PAM's conversation).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Lets `user` log in with the public key in `pubkey_path`.
    pub fn authorize_key(&self, user: &SystemUser, pubkey_path: &Path) {
        let key = fs::read_to_string(pubkey_path).unwrap();
        let path = self.dir.path().join("authorized_keys").join(&user.name);
        fs::write(&path, key).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

fn sshd_config(setup: &SshdSetup, port: u16, dir: &Path, host_key: &Path, keys: &Path) -> String {
    let mut lines: Vec<String> = setup.config.clone();
    lines.extend([
        format!("Port {port}"),
        "ListenAddress 127.0.0.1".to_owned(),
        format!("HostKey {}", host_key.display()),
        format!("PidFile {}", dir.join("sshd.pid").display()),
        format!("AuthorizedKeysFile {}/%u", keys.display()),
        "AuthorizedKeysCommand none".to_owned(),
        // Temp-dir and home permissions are not what this test is about.
        "StrictModes no".to_owned(),
        // UsePAM and the authentication methods come from the scenario
        // (sshd's defaults: UsePAM no, password and keys allowed), so a
        // snippet in config/sshd_config.d that forgets one fails its test.
        "HostbasedAuthentication no".to_owned(),
        "GSSAPIAuthentication no".to_owned(),
        "PermitRootLogin no".to_owned(),
        "AllowUsers kauth-t*".to_owned(),
        "PermitEmptyPasswords no".to_owned(),
        "MaxAuthTries 6".to_owned(),
        "LoginGraceTime 60".to_owned(),
        "UseDNS no".to_owned(),
        "PrintMotd no".to_owned(),
        "PrintLastLog no".to_owned(),
        "X11Forwarding no".to_owned(),
        "AllowTcpForwarding no".to_owned(),
        "Subsystem sftp internal-sftp".to_owned(),
        "LogLevel DEBUG3".to_owned(),
        "SyslogFacility AUTHPRIV".to_owned(),
    ]);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

// ---------------------------------------------------------------------------
// The ssh client

/// A client key pair made with `ssh-keygen` in a temporary directory.
pub struct ClientKey {
    _dir: tempfile::TempDir,
    pub private: PathBuf,
    pub public: PathBuf,
}

impl ClientKey {
    pub fn generate() -> ClientKey {
        let dir = tempfile::Builder::new()
            .prefix("kauth-ssh-key-")
            .tempdir()
            .unwrap();
        let private = dir.path().join("id_ed25519");
        ssh_keygen(&private, "kauth-test-client");
        let public = dir.path().join("id_ed25519.pub");
        ClientKey {
            _dir: dir,
            private,
            public,
        }
    }
}

/// Answers ssh's prompts from its environment and logs every prompt it is
/// shown, one per line (newlines inside a prompt become spaces).
const ASKPASS: &str = r#"#!/bin/sh
printf '%s' "$1" | tr '\n' ' ' >> "$KAUTH_TEST_PROMPT_LOG"
printf '\n' >> "$KAUTH_TEST_PROMPT_LOG"
case "$1" in
*"Verification code:"*) printf '%s\n' "$KAUTH_TEST_CODE" ;;
*"Password:"*) printf '%s\n' "$KAUTH_TEST_PASSWORD" ;;
*) printf '\n' ;;
esac
"#;

/// One `ssh` login attempt against a [`TestSshd`].
#[derive(Debug, Clone)]
pub struct SshLogin {
    port: u16,
    user: String,
    password: String,
    code: String,
    key: Option<PathBuf>,
    methods: String,
    tty: bool,
    remote_command: String,
    /// An askpass script of the test's own instead of [`ASKPASS`].
    askpass: Option<String>,
    /// Extra environment of the client (e.g. its locale).
    env: Vec<(String, String)>,
}

impl SshLogin {
    /// A keyboard-interactive login as `user`; answers are empty until set.
    pub fn new(sshd: &TestSshd, user: &SystemUser) -> SshLogin {
        SshLogin {
            port: sshd.port,
            user: user.name.clone(),
            password: String::new(),
            code: String::new(),
            key: None,
            methods: "keyboard-interactive".to_owned(),
            tty: false,
            remote_command: REMOTE_COMMAND.to_owned(),
            askpass: None,
            env: Vec::new(),
        }
    }

    /// Sets `name=value` in the client's environment (which starts empty).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers prompts with `script` (a `/bin/sh` script like [`ASKPASS`],
    /// with the same environment) instead of the default askpass.
    pub fn askpass(mut self, script: &str) -> Self {
        self.askpass = Some(script.to_owned());
        self
    }

    /// The answer to a `Password: ` prompt.
    pub fn password(mut self, password: &str) -> Self {
        self.password = password.to_owned();
        self
    }

    /// The answer to a `Verification code: ` prompt.
    pub fn code(mut self, code: &str) -> Self {
        self.code = code.to_owned();
        self
    }

    /// Offer this private key (and no other).
    pub fn key(mut self, key: &ClientKey) -> Self {
        self.key = Some(key.private.clone());
        self
    }

    /// The client's `PreferredAuthentications`: the only methods it tries.
    pub fn methods(mut self, methods: &str) -> Self {
        self.methods = methods.to_owned();
        self
    }

    /// An interactive login: a terminal (`-tt`), no remote command, and
    /// `echo ok-$USER; exit` typed into the shell. Only such a login shows
    /// what PAM said after the last prompt (sshd keeps it for after the
    /// login and stays quiet when a command is given).
    pub fn interactive(mut self) -> Self {
        self.tty = true;
        self
    }

    /// The remote command (default `echo ok-$USER`).
    pub fn command(mut self, command: &str) -> Self {
        self.remote_command = command.to_owned();
        self
    }

    /// Starts the ssh client and leaves it running (a session that lasts).
    pub fn spawn(&self) -> RunningSsh {
        let dir = client_dir();
        let mut cmd = self.build(dir.path());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start ssh");
        RunningSsh { child, _dir: dir }
    }

    /// Runs `ssh … 'echo ok-$USER'`, killing it after [`SSH_LIMIT`].
    pub fn run(&self) -> SshRun {
        let dir = client_dir();
        let prompt_log = dir.path().join("prompts");
        let mut cmd = self.build(dir.path());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start ssh");
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            // Buffered by the remote terminal until the shell reads it.
            input
                .write_all(format!("{REMOTE_COMMAND}\nexit\n").as_bytes())
                .expect("type into ssh");
        }
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > SSH_LIMIT {
                timed_out = true;
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let prompts = fs::read_to_string(&prompt_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        SshRun {
            user: self.user.clone(),
            status,
            timed_out,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
            prompts,
            elapsed: start.elapsed(),
        }
    }

    /// The ssh command line, with its askpass script and prompt log in `dir`.
    fn build(&self, dir: &Path) -> Command {
        let askpass = dir.join("askpass");
        fs::write(&askpass, self.askpass.as_deref().unwrap_or(ASKPASS)).unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
        let prompt_log = dir.join("prompts");
        fs::write(&prompt_log, "").unwrap();

        let mut cmd = Command::new("ssh");
        if self.tty {
            cmd.args(["-F", "/dev/null", "-tt"]);
        } else {
            cmd.args(["-F", "/dev/null", "-n", "-T"]);
        }
        for option in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "BatchMode=no",
            "NumberOfPasswordPrompts=1",
            "ConnectTimeout=10",
            "ControlMaster=no",
            "ControlPath=none",
            "ForwardAgent=no",
            "IdentitiesOnly=yes",
            "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=yes",
            "HostbasedAuthentication=no",
            "GSSAPIAuthentication=no",
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd.arg("-o")
            .arg(format!("PreferredAuthentications={}", self.methods));
        match &self.key {
            Some(key) => {
                cmd.arg("-o")
                    .arg("PubkeyAuthentication=yes")
                    .arg("-i")
                    .arg(key);
            }
            None => {
                cmd.arg("-o").arg("PubkeyAuthentication=no");
            }
        }
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user));
        if !self.tty {
            cmd.arg(&self.remote_command);
        }
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", dir)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env("KAUTH_TEST_PROMPT_LOG", &prompt_log)
            .env("KAUTH_TEST_PASSWORD", &self.password)
            .env("KAUTH_TEST_CODE", &self.code)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.tty {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // No controlling terminal: every answer goes through the askpass.
        // SAFETY: setsid is async-signal-safe and touches no Rust state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd
    }
}

fn client_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kauth-ssh-client-")
        .tempdir()
        .unwrap()
}

/// An ssh client left running (see [`SshLogin::spawn`]); killed on drop.
pub struct RunningSsh {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RunningSsh {
    /// Waits up to `limit` for the client to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the client is still connected.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for RunningSsh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        text(&buf)
    })
}

/// What one `ssh` run did.
#[derive(Debug)]
pub struct SshRun {
    pub user: String,
    pub status: ExitStatus,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Every prompt the askpass was shown, in order, as ssh showed it
    /// (`(user@127.0.0.1) Password: `).
    pub prompts: Vec<String>,
    pub elapsed: Duration,
}

impl SshRun {
    /// The prompts without ssh's `(user@host) ` prefix.
    pub fn prompt_texts(&self) -> Vec<String> {
        let prefix = format!("({}@127.0.0.1) ", self.user);
        self.prompts
            .iter()
            .map(|p| p.strip_prefix(&prefix).unwrap_or(p).to_owned())
            .collect()
    }

    /// The remote command ran as the user: the login succeeded.
    /// (On a terminal the typed command is echoed too, but unexpanded, and
    /// the output may follow the shell's `$ ` prompt.)
    pub fn logged_in(&self) -> bool {
        let expected = format!("ok-{}", self.user);
        let after_prompt = format!("$ {expected}");
        self.status.success()
            && self
                .stdout
                .lines()
                .map(str::trim)
                .any(|l| l == expected || l.ends_with(&after_prompt))
    }

    fn describe(&self, sshd: &TestSshd) -> String {
        format!(
            "ssh exit {:?}{} after {:?}\nstdout: {:?}\nstderr: {:?}\nprompts: {:?}\n--- sshd log (last 80 lines) ---\n{}",
            self.status.code(),
            if self.timed_out { " (killed: time limit)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr,
            self.prompts,
            tail(&sshd.log(), 80),
        )
    }

    /// Asserts the login succeeded and the remote command's output came back.
    pub fn assert_logged_in(&self, sshd: &TestSshd) {
        assert!(
            self.logged_in(),
            "expected a successful login; {}",
            self.describe(sshd)
        );
    }

    /// Asserts the login was refused: ssh exit status 255, no remote output.
    pub fn assert_denied(&self, sshd: &TestSshd) {
        assert!(
            !self.timed_out && self.status.code() == Some(255) && self.stdout.is_empty(),
            "expected a refused login; {}",
            self.describe(sshd)
        );
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// TOTP codes

/// Codes for one secret, computed by `oathtool` (SHA1, 6 digits, 30 s).
/// kauthd accepts each time step once and allows one step of skew either
/// way, so [`Totp::fresh`] hands out the current step, then the next one,
/// and only sleeps when both are spent.
#[derive(Debug)]
pub struct Totp {
    pub secret: String,
    last_step: Option<u64>,
}

pub const PERIOD: u64 = 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Totp {
    pub fn new(secret: &str) -> Totp {
        Totp {
            secret: secret.to_owned(),
            last_step: None,
        }
    }

    pub fn current_step() -> u64 {
        unix_now() / PERIOD
    }

    /// The code of time step `step`.
    pub fn code_at(&self, step: u64) -> String {
        let out = run(Command::new("oathtool")
            .args(["--totp", "-b", "-N"])
            .arg(format!("@{}", step * PERIOD))
            .arg(&self.secret));
        assert!(out.status.success(), "oathtool: {}", text(&out.stderr));
        let code = text(&out.stdout).trim().to_owned();
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "oathtool said {code:?}"
        );
        code
    }

    /// A code kauthd has not seen accepted and will accept now: the
    /// current step or the next (within the skew window). Sleeps only
    /// when the next step is spent too.
    pub fn fresh(&mut self) -> String {
        let now = Self::current_step();
        let step = match self.last_step {
            None => now,
            Some(last) => (last + 1).max(now),
        };
        // `step` must not be more than one step ahead of the clock.
        while Self::current_step() + 1 < step {
            let wait = ((step - 1) * PERIOD).saturating_sub(unix_now());
            std::thread::sleep(Duration::from_secs(wait.max(1)));
        }
        self.last_step = Some(step);
        self.code_at(step)
    }

    /// Six digits that are no code of any step near now.
    pub fn wrong_code(&self) -> String {
        let now = Self::current_step();
        let near: Vec<String> = (now.saturating_sub(3)..=now + 3)
            .map(|s| self.code_at(s))
            .collect();
        let base: u32 = near[3].parse().unwrap();
        (1..)
            .map(|i| format!("{:06}", (base + i * 7919) % 1_000_000))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}
