//! Self-service from an ordinary local uid: only its own account, and
//! sensitive changes need proof. Run as `nobody` (the tests need root to
//! switch uid).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;

use kauth_tests::daemon::{running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin};

const NOBODY: u32 = 65534;

fn as_nobody(daemon: &TestDaemon, args: &[&str]) -> std::process::Output {
    daemon.ctl_with(args, None, Some(NOBODY))
}

#[test]
#[ignore = "needs root"]
fn a_local_user_enrolls_from_their_shell_without_an_account() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    let out = as_nobody(&daemon, &["--json", "2fa", "enroll", "--begin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let begun: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(begun["user"], "nobody");
    let secret = begun["secret"].as_str().unwrap().to_owned();
    let step = step_with_margin(4);
    let out = as_nobody(
        &daemon,
        &[
            "--json",
            "2fa",
            "enroll",
            "--confirm",
            &oathtool_at_step(&secret, step),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_nobody(&daemon, &["2fa", "status"]);
    assert!(stdout(&out).contains("nobody: on"), "{}", stdout(&out));

    // Turning it off needs a current code; without one it is refused.
    let out = as_nobody(&daemon, &["2fa", "disable", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("verification code"),
        "{}",
        stderr(&out)
    );
    let code = oathtool_at_step(&secret, step + 1);
    let out = as_nobody(&daemon, &["2fa", "disable", "--force", "--code", &code]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_nobody(&daemon, &["2fa", "status"]);
    assert!(stdout(&out).contains("nobody: off"), "{}", stdout(&out));
}

#[test]
#[ignore = "needs root"]
fn a_local_user_cannot_touch_another_account() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    assert!(daemon
        .ctl(&[
            "2fa",
            "import",
            "--user",
            "ann",
            "--secret",
            "JBSWY3DPEHPK3PXP"
        ])
        .status
        .success());
    for args in [
        &["2fa", "status", "--user", "ann"][..],
        &["2fa", "enroll", "--begin", "--user", "ann"][..],
        &["2fa", "disable", "--user", "ann"][..],
        &["2fa", "recovery-codes", "--regenerate", "--user", "ann"][..],
    ] {
        let out = as_nobody(&daemon, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("only manage your own account"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for args in [
        &["2fa", "list"][..],
        &[
            "2fa",
            "import",
            "--user",
            "x",
            "--secret",
            "JBSWY3DPEHPK3PXP",
        ][..],
    ] {
        let out = as_nobody(&daemon, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("only root"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let list: serde_json::Value =
        serde_json::from_slice(&daemon.ctl(&["--json", "2fa", "list"]).stdout).unwrap();
    assert_eq!(
        list["users"].as_array().unwrap().len(),
        1,
        "nothing changed"
    );
}

#[test]
#[ignore = "needs root"]
fn an_unlisted_uid_cannot_run_a_login_conversation() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    // kauthctl has no login command; use the protocol as nobody through a
    // small Python client (what a panel would do).
    let script = format!(
        r#"
import json, socket, struct
def call(s, m):
    b = json.dumps(m).encode(); s.sendall(struct.pack(">I", len(b)) + b)
    n = struct.unpack(">I", s.recv(4))[0]; return json.loads(s.recv(n))
s = socket.socket(socket.AF_UNIX); s.connect("{}")
call(s, {{"type": "hello", "version": 1, "client": "t"}})
print(json.dumps(call(s, {{"type": "begin", "user": "ann", "service": "x", "mode": "otp_only"}})))
"#,
        daemon.socket.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("\"forbidden\""),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        daemon
            .stderr()
            .contains("refused a login conversation from uid 65534"),
        "{}",
        daemon.stderr()
    );
}
