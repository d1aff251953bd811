//! `kauthctl 2fa enroll` tried as a new user would, in a real terminal:
//! tmux with an 80×24 window runs it as `nobody` against the real kauthd.
//! The pane is captured as text (`tmux capture-pane -p`); the QR code must
//! fit the screen together with the prompt, and the captured characters,
//! turned back into pixels (a PBM image written here), must decode with
//! `zbarimg` to the enrollment's exact URI. A typo gets a second try.
//!
//! Needs root (to run kauthctl as `nobody`), tmux and zbar-tools
//! (tests/debian-packages).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kauth_tests::daemon::{binary, json, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::qr_screen::{qr_rows, to_pbm, zbarimg};
use kauth_tests::sshd::random_hex;

const COLUMNS: usize = 80;
const LINES: usize = 24;
const NOBODY: &str = "nobody";
/// nobody's uid and gid (Debian's `nogroup`).
const NOBODY_ID: u32 = 65534;
/// kauthctl's code prompt, as captured (tmux drops trailing spaces).
const CODE_PROMPT: &str = "Type the 6-digit code your app shows:";
/// Printed after kauthctl exits, with its exit status.
const EXIT_MARK: &str = "kauthctl-exit=";
/// How long to wait for the pane to show something.
const WAIT: Duration = Duration::from_secs(20);

/// A tmux server of the test's own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 80×24 session.
    fn start(command: &str) -> Tmux {
        for tool in ["tmux", "zbarimg"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is missing: install tmux and zbar-tools (tests/debian-packages)"
            );
        }
        let tmux = Tmux {
            socket: format!("kauth-enroll-{}", random_hex(4)),
        };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-s", "enroll", "-x"])
            .arg(COLUMNS.to_string())
            .arg("-y")
            .arg(LINES.to_string())
            .arg(command)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-u", "-L", &self.socket, "-f", "/dev/null"])
            .env("LC_ALL", "C.UTF-8")
            .env_remove("TMUX");
        cmd
    }

    /// The visible screen, one string per line.
    fn screen(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "enroll"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux capture-pane failed");
        String::from_utf8(out.stdout)
            .expect("the pane is UTF-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the screen contains `text`; the screen then.
    fn wait_for(&self, text: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.iter().any(|l| l.contains(text)) {
                return screen;
            }
            let ended = text != EXIT_MARK && screen.iter().any(|l| l.contains(EXIT_MARK));
            assert!(
                start.elapsed() < WAIT && !ended,
                "the terminal never showed {text:?}:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` and Enter.
    fn type_line(&self, text: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "enroll", "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self
            .command()
            .args(["send-keys", "-t", "enroll", "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// kauthctl copied where `nobody` may run it (the build tree may sit under
/// a directory only root can enter).
fn kauthctl_for_anyone(daemon: &TestDaemon) -> PathBuf {
    let dir = daemon.socket.parent().unwrap();
    let copy = dir.join("kauthctl-anyone");
    fs::copy(binary("kauthctl"), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// `kauthctl 2fa enroll` as nobody in a new 80×24 tmux window.
fn enroll_in_tmux(daemon: &TestDaemon) -> Tmux {
    let kauthctl = kauthctl_for_anyone(daemon);
    let command = format!(
        "env KAUTHD_SOCKET={} LC_ALL=C.UTF-8 setpriv --reuid={NOBODY_ID} --regid={NOBODY_ID} --clear-groups {} 2fa enroll; echo {EXIT_MARK}$?; sleep 60",
        daemon.socket.display(),
        kauthctl.display()
    );
    Tmux::start(&command)
}

#[test]
#[ignore = "needs root"]
fn an_account_with_a_kauthd_password_is_asked_for_it_by_name_and_for_nothing_else() {
    let daemon = TestDaemon::start("");
    let password = "Quokka-lantern-8812-tundra";
    let out = daemon.ctl_with(
        &[
            "user",
            "add",
            NOBODY,
            "--uid",
            &NOBODY_ID.to_string(),
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmux = enroll_in_tmux(&daemon);
    let screen = tmux.wait_for("not your system login password");
    let shown = screen.join("\n");
    // 2FA is off: no code is asked as proof.
    assert!(!shown.contains("Verification code"), "{shown}");
    assert!(!shown.contains("press Enter if"), "{shown}");
    tmux.type_line(password);
    let screen = tmux.wait_for(CODE_PROMPT);
    let shown = screen.join("\n");
    assert!(shown.contains("Setup key: "), "{shown}");
}

#[test]
#[ignore = "needs root"]
fn the_qr_code_fits_80_by_24_decodes_to_the_uri_and_a_typo_gets_a_second_try() {
    let daemon = TestDaemon::start("");
    let tmux = enroll_in_tmux(&daemon);
    let screen = tmux.wait_for(CODE_PROMPT);
    let shown = screen.join("\n");

    // Nothing asked before the code: nobody has no kauthd password and no
    // 2FA to prove.
    assert!(!shown.contains("assword"), "{shown}");

    // The whole code and the prompt are on the one 80×24 screen.
    assert!(screen.len() <= LINES, "{shown}");
    assert!(
        screen.iter().all(|l| l.chars().count() <= COLUMNS),
        "{shown}"
    );
    let (top, rows) = qr_rows(&screen);
    let width = rows[0].len();
    assert!(width <= 45, "the QR code is {width} columns wide:\n{shown}");
    assert!(
        rows.len() <= 23,
        "the QR code is {} lines:\n{shown}",
        rows.len()
    );
    // A whole drawing: from a light top line to a last line of upper half
    // blocks (its last row of margin over the terminal's background).
    assert!(rows.last().unwrap().iter().all(|&c| c == '▀'), "{shown}");
    let prompt_line = screen.iter().position(|l| l.contains(CODE_PROMPT)).unwrap();
    assert!(prompt_line > top + rows.len() - 1, "{shown}");
    let key_line = screen
        .iter()
        .find_map(|l| l.strip_prefix("Setup key: "))
        .unwrap_or_else(|| panic!("no setup key:\n{shown}"));
    let secret = key_line.replace(' ', "");

    // The captured characters decode to the enrollment's URI.
    let image = daemon.socket.parent().unwrap().join("screen-qr.pbm");
    fs::write(&image, to_pbm(&rows, 4, 4)).unwrap();
    let decoded = zbarimg(&image);
    let begun = json(&daemon.ctl(&["--json", "2fa", "enroll", "--begin", "--user", NOBODY]));
    assert_eq!(begun["resumed"], true, "{begun}");
    assert_eq!(decoded, begun["uri"].as_str().unwrap(), "{shown}");
    assert!(decoded.contains(&format!("secret={secret}")), "{decoded}");
    assert!(
        !decoded.contains("algorithm=") && !decoded.contains("digits="),
        "{decoded}"
    );

    // A typo: told so, with the tries left, and asked again.
    let step = step_with_margin(8);
    tmux.type_line(&wrong_code_near(&secret, step, 2));
    let screen = tmux.wait_for("2 tries left");
    let asked = screen.iter().filter(|l| l.contains(CODE_PROMPT)).count();
    assert_eq!(asked, 2, "{}", screen.join("\n"));

    // The right code: 2FA is on and the recovery codes are shown.
    tmux.type_line(&oathtool_at_step(&secret, step));
    let screen = tmux.wait_for(EXIT_MARK);
    let shown = screen.join("\n");
    assert!(shown.contains("kauthctl-exit=0"), "{shown}");
    assert!(shown.contains("Your recovery codes"), "{shown}");
    let state = json(&daemon.ctl(&["--json", "2fa", "status", "--user", NOBODY]));
    assert_eq!(state["enabled"], true, "{state}");
}
