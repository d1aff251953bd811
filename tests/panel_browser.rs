//! The reference panel (`examples/panel`) on a real kauthd, driven by
//! headless Chromium through Selenium (Debian's `chromium`,
//! `chromium-driver`, `python3-selenium`): the whole journey, with a
//! screenshot of each page; "sign out everywhere" pressed in the panel
//! ending a live SSH session through a real sshd; and the panel's guards
//! over plain HTTP (cookie attributes, CSRF, escaping, the session check,
//! kauthd down).
//!
//! The panel starts as root and drops to `nobody` (listed in `[access]
//! pam_callers`), as a deployment should run it, so these tests need root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kauth_tests::daemon::{bin_dir, running_as_root, TestDaemon};
use kauth_tests::sshd::{
    example_lines, example_pam_stack, SshLogin, SshdSetup, SystemUser, TestSshd,
};

const PASSWORD: &str = "Puffin-granite-meadow-2719";
const UNIX_PASSWORD: &str = "Heron-basalt-ochre-7302";
/// The uid the panel drops to: `nobody`, a PAM caller of the test daemon.
const PANEL_USER: &str = "nobody";
const PANEL_UID: u32 = 65534;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn require_root_and_browser() {
    assert!(
        running_as_root(),
        "the panel tests start the panel as root and drop it to nobody: run them as root, as CI does"
    );
    for path in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install chromium, chromium-driver and python3-selenium \
             (tests/debian-packages)"
        );
    }
}

fn daemon() -> TestDaemon {
    daemon_requiring("none")
}

/// A daemon whose `[policy] require` is `require`, the panel a PAM caller.
fn daemon_requiring(require: &str) -> TestDaemon {
    TestDaemon::start(&format!(
        "[policy]\nrequire = \"{require}\"\n[access]\npam_callers = [{PANEL_UID}]\n"
    ))
}

fn add_account(daemon: &TestDaemon, name: &str) {
    daemon.add_account(name, PASSWORD);
}

/// The reference panel, running on a port of its own; stopped on drop.
struct Panel {
    child: Child,
    url: String,
    console: PathBuf,
}

impl Panel {
    fn start(daemon: &TestDaemon) -> Panel {
        let console = daemon.dir.path().join("panel.out");
        let mut child = Command::new(python3())
            .arg("-B")
            .arg(repo().join("examples/panel/panel.py"))
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["--listen", "127.0.0.1:0", "--run-as", PANEL_USER])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(daemon.dir.path().join("panel.err")).expect("panel stderr"))
            .spawn()
            .expect("start the panel with python3");
        // The first line names the URL; the rest (reset links) goes to a
        // file the browser script reads.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).expect("read the panel's output");
        let url = first
            .trim()
            .strip_prefix("kpanel listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the panel did not start: {first:?}\n{}",
                    fs::read_to_string(daemon.dir.path().join("panel.err")).unwrap_or_default()
                )
            })
            .to_owned();
        let sink = console.clone();
        fs::write(&sink, "").unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = fs::OpenOptions::new().append(true).open(sink).unwrap();
            for line in out.lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        });
        Panel {
            child,
            url,
            console,
        }
    }

    /// Runs a Python script from `tests/panel/` against this panel.
    fn run_script(&self, daemon: &TestDaemon, script: &str, env: &[(&str, &str)]) -> String {
        let out = Command::new(python3())
            .arg("-B")
            .arg(repo().join("tests/panel").join(script))
            .env("PANEL_URL", &self.url)
            .env("PANEL_CONSOLE", &self.console)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{stdout}");
        assert!(
            out.status.success(),
            "{script} failed:\n{stdout}\n{}\n--- panel ---\n{}\n--- kauthd ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(daemon.dir.path().join("panel.err")).unwrap_or_default(),
            daemon.stderr()
        );
        stdout
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid with a valid signal.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the report's screenshots are kept: `target/panel-screenshots/`.
fn stable_screenshot_dir() -> PathBuf {
    let dir = bin_dir().parent().unwrap().join("panel-screenshots");
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
#[ignore = "needs root"]
fn browser_journey_enroll_code_recovery_code_and_sign_out_everywhere() {
    require_root_and_browser();
    let daemon = daemon();
    add_account(&daemon, "demo");
    let panel = Panel::start(&daemon);
    let shots = daemon.dir.path().join("screenshots");
    fs::create_dir(&shots).unwrap();
    fs::set_permissions(&shots, fs::Permissions::from_mode(0o755)).unwrap();

    let start = Instant::now();
    let out = panel.run_script(
        &daemon,
        "journey.py",
        &[
            ("PANEL_USER", "demo"),
            ("PANEL_PASSWORD", PASSWORD),
            ("SCREENSHOTS", shots.to_str().unwrap()),
        ],
    );
    eprintln!("the journey took {:?}", start.elapsed());
    assert!(out.contains("journey: done"), "{out}");

    // The temporary directory goes with the test: keep the pictures.
    let stable = stable_screenshot_dir();
    let all = stable.join("journey");
    fs::create_dir_all(&all).unwrap();
    let mut taken: Vec<PathBuf> = fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    taken.sort();
    for path in &taken {
        let copy = all.join(path.file_name().unwrap());
        fs::copy(path, &copy).unwrap();
        eprintln!(
            "screenshot: {} (kept as {})",
            path.display(),
            copy.display()
        );
    }
    for (suffix, name) in [
        ("-a-enroll.png", "enroll.png"),
        ("-b-sessions.png", "sessions.png"),
    ] {
        let path = taken
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no screenshot *{suffix} in {taken:?}"));
        fs::copy(path, stable.join(name)).unwrap();
        eprintln!("{name}: {}", stable.join(name).display());
    }
}

#[test]
#[ignore = "needs root"]
fn sign_out_everywhere_in_the_panel_ends_a_live_ssh_session() {
    require_root_and_browser();
    let daemon = daemon();
    let user = SystemUser::create("pw");
    user.set_unix_password(UNIX_PASSWORD);
    add_account(&daemon, &user.name);
    let args = format!("socket={} service=sshd", daemon.socket.display());
    let sshd = TestSshd::start(&SshdSetup {
        pam_stack: example_pam_stack("pam.d/sshd-unix-then-code", &args, &[]),
        config: example_lines("sshd_config.d/kauthd-unix-then-code.conf"),
    });
    let mut ssh = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .command("sleep 60")
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kauth_tests::daemon::stdout(&daemon.ctl(&["sessions", "--user", &user.name]))
        .contains("sshd")
    {
        assert!(ssh.running(), "the ssh login ended early:\n{}", sshd.log());
        assert!(Instant::now() < deadline, "no sshd session listed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let panel = Panel::start(&daemon);
    panel.run_script(
        &daemon,
        "sign_out_everywhere.py",
        &[("PANEL_USER", &user.name), ("PANEL_PASSWORD", PASSWORD)],
    );
    let start = Instant::now();
    assert!(
        ssh.wait_exit(Duration::from_secs(5)).is_some(),
        "the SSH session is still up 5 s after sign out everywhere"
    );
    eprintln!(
        "the SSH session ended {:?} after the panel answered",
        start.elapsed()
    );
    let left = kauth_tests::daemon::stdout(&daemon.ctl(&["sessions", "--user", &user.name]));
    assert!(!left.contains("sshd") && !left.contains("kpanel"), "{left}");
}

#[test]
#[ignore = "needs root"]
fn panel_cookies_csrf_escaping_session_check_and_kauthd_down() {
    require_root_and_browser();
    let daemon = daemon();
    add_account(&daemon, "hana");
    let panel = Panel::start(&daemon);
    let pid = daemon.pid().to_string();
    let out = panel.run_script(
        &daemon,
        "http_checks.py",
        &[
            ("PANEL_USER", "hana"),
            ("PANEL_PASSWORD", PASSWORD),
            ("KAUTHD_PID", &pid),
        ],
    );
    assert!(out.contains("http checks: done"), "{out}");
}

#[test]
#[ignore = "needs root"]
fn a_required_user_sets_up_2fa_at_the_panel_sign_in_from_the_qr_drawing() {
    require_root_and_browser();
    let daemon = daemon_requiring("all");
    add_account(&daemon, "ines");
    let panel = Panel::start(&daemon);
    let shots = daemon.dir.path().join("screenshots");
    fs::create_dir(&shots).unwrap();
    let out = panel.run_script(
        &daemon,
        "enroll_at_login.py",
        &[
            ("PANEL_USER", "ines"),
            ("PANEL_PASSWORD", PASSWORD),
            ("SCREENSHOTS", shots.to_str().unwrap()),
        ],
    );
    assert!(out.contains("enroll at login: done"), "{out}");
    let all = stable_screenshot_dir().join("enroll-at-login");
    fs::create_dir_all(&all).unwrap();
    for entry in fs::read_dir(&shots).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, all.join(path.file_name().unwrap())).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}
