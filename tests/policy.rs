//! One two-factor policy for every service, through the real libpam: each
//! rule of `[policy]` and the per-user overrides, the module's `service=`
//! option, PAM callers, and a reload on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kauth_proto::{Client, Request, Response};
use kauth_tests::daemon::{running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin};
use kauth_tests::pam::{module_path, Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const CODE_PROMPT: &str = "Verification code: ";

/// A PAM service `svc` running pam_kpanel (otp_only) against `daemon`.
fn service(daemon: &TestDaemon, options: &str) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service("svc", &daemon.socket, &format!("otp_only {options}"));
    conf
}

/// auth + account for `user`, answering `answers` in order.
fn login(conf: &PamConfDir, user: &str, answers: &[&str]) -> HarnessRun {
    let mut h = Harness::new(HARNESS, conf, "svc")
        .user(user)
        .op("auth")
        .op("account");
    for a in answers {
        h = h.answer(a);
    }
    let run = h.run();
    run.assert_completed();
    run
}

fn succeeded(run: &HarnessRun) -> bool {
    run.code("auth") == Some("PAM_SUCCESS") && run.code("account") == Some("PAM_SUCCESS")
}

fn enroll(daemon: &TestDaemon, user: &str) {
    let out = daemon.ctl(&["2fa", "import", "--user", user, "--secret", SECRET]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A kauthd account without password or code: per-user overrides are
/// refused for names that are neither an account nor a system user.
fn add_account(daemon: &TestDaemon, user: &str) {
    let out = daemon.ctl(&["user", "add", user]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn fresh_code() -> String {
    oathtool_at_step(SECRET, step_with_margin(3))
}

#[test]
fn an_enrolled_user_is_asked_for_a_code_even_when_not_required() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    enroll(&daemon, "ann");
    let conf = service(&daemon, "");
    let run = login(&conf, "ann", &[&fresh_code()]);
    assert!(succeeded(&run), "{run:?}");
    assert_eq!(run.prompts(), [CODE_PROMPT]);
    let wrong = login(&conf, "ann", &["000000"]);
    assert_eq!(wrong.code("auth"), Some("PAM_AUTH_ERR"));
}

#[test]
fn an_exempt_service_never_asks_for_a_code() {
    let daemon = TestDaemon::start("[policy]\nexempt_services = [\"kpanel-api\"]\n");
    enroll(&daemon, "ann");
    // The panel's API uses the same stack, named by the module's service= option.
    let conf = service(&daemon, "service=kpanel-api");
    let run = login(&conf, "ann", &[]);
    assert!(succeeded(&run), "{run:?}");
    assert!(run.prompts().is_empty(), "no code asked: {run:?}");
    // The same user on another service is asked.
    let other = service(&daemon, "service=kpanel");
    let run = login(&other, "ann", &["000000"]);
    assert_eq!(run.prompts(), [CODE_PROMPT]);
}

#[test]
fn before_the_deadline_an_unenrolled_user_logs_in_and_is_told_the_date() {
    let daemon = TestDaemon::start("[policy]\ndeadline = \"2099-12-31\"\n");
    let conf = service(&daemon, "");
    let run = login(&conf, "bob", &[]);
    assert!(succeeded(&run), "{run:?}");
    assert!(run.prompts().is_empty());
    assert!(
        run.infos()
            .iter()
            .any(|i| i.contains("2099-12-31") && i.contains("kauthctl 2fa enroll")),
        "{:?}",
        run.infos()
    );
}

#[test]
fn after_the_deadline_an_unenrolled_user_is_denied_and_told_how_to_enroll() {
    // Without enrollment at login (which needs a system user: a name that
    // is none answers like a user with a wrong code).
    let daemon =
        TestDaemon::start("[policy]\ndeadline = \"2020-01-01\"\nenroll_at_login = false\n");
    let conf = service(&daemon, "");
    let run = login(&conf, "bob", &[]);
    assert_ne!(run.code("auth"), Some("PAM_SUCCESS"), "{run:?}");
    assert!(
        run.errors()
            .iter()
            .any(|e| e.contains("kauthctl 2fa enroll")),
        "{:?}",
        run.errors()
    );
    // The account step alone (a key login that skipped auth) is held to it too.
    let run = Harness::new(HARNESS, &conf, "svc")
        .user("bob")
        .op("account")
        .run();
    assert_eq!(run.code("account"), Some("PAM_PERM_DENIED"), "{run:?}");
}

#[test]
fn without_a_deadline_a_required_unenrolled_user_is_denied() {
    let daemon = TestDaemon::start("");
    let run = login(&service(&daemon, ""), "bob", &[]);
    assert_ne!(run.code("auth"), Some("PAM_SUCCESS"));
}

#[test]
fn per_user_exempt_beats_require_all_and_default_restores_it() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"all\"\n");
    let conf = service(&daemon, "");
    add_account(&daemon, "bob");
    assert!(daemon
        .ctl(&["policy", "exempt", "--user", "bob"])
        .status
        .success());
    let run = login(&conf, "bob", &[]);
    assert!(succeeded(&run), "{run:?}");
    assert!(daemon
        .ctl(&["policy", "default", "--user", "bob"])
        .status
        .success());
    assert!(!succeeded(&login(&conf, "bob", &[])));
}

#[test]
fn per_user_require_beats_require_none() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    let conf = service(&daemon, "");
    assert!(succeeded(&login(&conf, "bob", &[])));
    add_account(&daemon, "bob");
    assert!(daemon
        .ctl(&["policy", "require", "--user", "bob"])
        .status
        .success());
    assert!(!succeeded(&login(&conf, "bob", &[])));
}

#[test]
fn require_listed_covers_listed_users_and_group_members_only() {
    // nobody's primary group is nogroup in /etc/passwd (read without NSS).
    let daemon = TestDaemon::start(
        "[policy]\nrequire = \"listed\"\nrequire_users = [\"carol\"]\nrequire_groups = [\"nogroup\"]\n",
    );
    let conf = service(&daemon, "");
    assert!(!succeeded(&login(&conf, "carol", &[])), "listed user");
    assert!(
        !succeeded(&login(&conf, "nobody", &[])),
        "member of a listed group"
    );
    assert!(succeeded(&login(&conf, "dave", &[])), "not listed");
}

#[test]
fn policy_disabled_asks_nobody() {
    let daemon = TestDaemon::start("[policy]\nenabled = false\n");
    enroll(&daemon, "ann");
    let conf = service(&daemon, "");
    for user in ["ann", "bob"] {
        let run = login(&conf, user, &[]);
        assert!(succeeded(&run), "{user}: {run:?}");
        assert!(run.prompts().is_empty());
    }
}

#[test]
fn policy_show_names_the_rule_that_decided_for_each_service() {
    let daemon = TestDaemon::start(
        "[policy]\nexempt_services = [\"kpanel-api\"]\ndeadline = \"2099-01-01\"\n",
    );
    add_account(&daemon, "bob");
    assert!(daemon
        .ctl(&["policy", "exempt", "--user", "bob"])
        .status
        .success());
    let out = daemon.ctl(&["policy", "show", "--user", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("per-user override: exempt"), "{text}");
    assert!(text.contains("kpanel-api"), "{text}");
    let out = daemon.ctl(&["--json", "policy", "show", "--user", "ann"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["user"]["required"], true);
    let services = doc["user"]["services"].as_array().unwrap();
    let api = services
        .iter()
        .find(|s| s["service"] == "kpanel-api")
        .unwrap();
    assert_eq!(api["decision"], "skip");
    assert!(api["rule"].as_str().unwrap().contains("exempt_services"));
    let sshd = services.iter().find(|s| s["service"] == "sshd").unwrap();
    assert_eq!(sshd["decision"], "skip");
    assert!(
        sshd["rule"].as_str().unwrap().contains("deadline"),
        "{sshd}"
    );
}

/// A copy of the harness and the module that `nobody` can run, and a PAM
/// configuration naming that module copy.
fn unprivileged_setup(daemon: &TestDaemon) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        fs::copy(from, &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let harness = copy(Path::new(HARNESS), "harness");
    let module = copy(&module_path(), "pam_kpanel.so");
    let confdir = dir.path().join("pam.d");
    fs::create_dir(&confdir).unwrap();
    fs::set_permissions(&confdir, fs::Permissions::from_mode(0o755)).unwrap();
    let line = |kind: &str| {
        format!(
            "{kind} required {} socket={} otp_only\n",
            module.display(),
            daemon.socket.display()
        )
    };
    fs::write(confdir.join("svc"), line("auth") + &line("account")).unwrap();
    fs::write(
        confdir.join("other"),
        "auth required pam_deny.so\naccount required pam_deny.so\n",
    )
    .unwrap();
    (dir, harness, confdir)
}

fn login_as_nobody(harness: &Path, confdir: &Path, user: &str, code: &str) -> serde_json::Value {
    let out = Command::new(harness)
        .args([
            "--confdir",
            confdir.to_str().unwrap(),
            "--service",
            "svc",
            "--user",
            user,
        ])
        .args(["--answer", code, "--op", "auth", "--op", "account"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("harness output: {} {}", stdout(&out), stderr(&out)))
}

#[test]
#[ignore = "needs root"]
fn a_panel_listed_in_pam_callers_logs_users_in_and_an_unlisted_one_is_refused() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("[access]\npam_callers = [\"nobody\"]\n");
    enroll(&daemon, "ann");
    let (_dir, harness, confdir) = unprivileged_setup(&daemon);
    let result = login_as_nobody(&harness, &confdir, "ann", &fresh_code());
    assert_eq!(result["auth"], "PAM_SUCCESS", "{result}");
    assert_eq!(result["account"], "PAM_SUCCESS", "{result}");

    let unlisted = TestDaemon::start("");
    enroll(&unlisted, "ann");
    let (_dir2, harness, confdir) = unprivileged_setup(&unlisted);
    let result = login_as_nobody(&harness, &confdir, "ann", &fresh_code());
    assert_ne!(result["auth"], "PAM_SUCCESS", "{result}");
    assert!(
        unlisted.stderr().contains("refused a login conversation from uid 65534 (nobody): not root and not in [access] pam_callers"),
        "{}",
        unlisted.stderr()
    );
}

#[test]
fn a_policy_change_applies_on_sighup_and_an_open_connection_keeps_working() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"all\"\n");
    let conf = service(&daemon, "");
    assert!(!succeeded(&login(&conf, "bob", &[])));

    // A client connected before the reload.
    let mut early =
        Client::connect(&daemon.socket, Duration::from_secs(10), &[0], "early").unwrap();

    daemon.write_config("[policy]\nrequire = \"none\"\n");
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.stderr().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        succeeded(&login(&conf, "bob", &[])),
        "the new policy applies to the next login"
    );
    assert!(matches!(
        early.call(&Request::Status).unwrap(),
        Response::Status { .. }
    ));
}
