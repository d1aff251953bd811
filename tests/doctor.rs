//! `kauthctl doctor` against a real kauthd on a temporary socket and state
//! dir, with PAM and sshd files of the test's own: a good setup exits 0,
//! each deliberately broken piece is reported with its line and exits 1,
//! and a stopped daemon is a finding, not a hang. Doctor needs root; run
//! without it, these tests print SKIPPED.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use kauth_tests::daemon::{binary, running_as_root, stderr, stdout, TestDaemon};
use kauth_tests::login::{login_code, oathtool_at_step, step_with_margin};

const SECRETS: [&str; 3] = [
    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
    "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK",
];

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A daemon plus PAM and sshd files modelled on the shipped examples
/// (an SSH key, then a code), with the module named by its built path.
struct Setup {
    daemon: TestDaemon,
    pam_dir: PathBuf,
    sshd_config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let daemon = TestDaemon::start("");
        // Whatever the umask: doctor rightly flags a group-writable config.
        fs::set_permissions(&daemon.config_path, fs::Permissions::from_mode(0o644)).unwrap();
        let pam_dir = daemon.dir.path().join("pam.d");
        fs::create_dir(&pam_dir).unwrap();
        let module = binary("libpam_kpanel.so");
        let stack = repo_file("config/pam.d/sshd-key-then-code")
            .replace("pam_kpanel.so", &module.display().to_string());
        fs::write(pam_dir.join("sshd"), stack).unwrap();
        let sshd_config = daemon.dir.path().join("sshd_config");
        fs::write(
            &sshd_config,
            repo_file("config/sshd_config.d/kauthd-key-then-code.conf"),
        )
        .unwrap();
        Setup {
            daemon,
            pam_dir,
            sshd_config,
        }
    }

    fn args<'a>(&'a self, config: &'a str, pam: &'a str, sshd: &'a str) -> Vec<&'a str> {
        vec![
            "doctor",
            "--config",
            config,
            "--pam-dir",
            pam,
            "--sshd-config",
            sshd,
        ]
    }

    /// `kauthctl doctor` (the clock check left out unless `clock`).
    fn run(&self, json: bool, clock: bool) -> std::process::Output {
        let config = self.daemon.config_path.display().to_string();
        let pam = self.pam_dir.display().to_string();
        let sshd = self.sshd_config.display().to_string();
        let mut args = self.args(&config, &pam, &sshd);
        if json {
            args.push("--json");
        }
        if !clock {
            args.extend(["--skip", "clock"]);
        }
        self.daemon.ctl(&args)
    }

    /// `kauthctl doctor --json`: the exit code and the one document.
    fn json(&self, clock: bool) -> (Option<i32>, Value) {
        let out = self.run(true, clock);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json printed no JSON document ({e}): {}{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (out.status.code(), doc)
    }

    fn write_sshd(&self, text: &str) {
        fs::write(&self.sshd_config, text).unwrap();
    }

    fn write_pam(&self, service: &str, text: &str) {
        let module = binary("libpam_kpanel.so").display().to_string();
        fs::write(
            self.pam_dir.join(service),
            text.replace("pam_kpanel.so", &module),
        )
        .unwrap();
    }
}

fn problems(doc: &Value) -> Vec<&Value> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "problem")
        .collect()
}

/// The problem of `check` whose text contains `needle`.
fn problem<'a>(doc: &'a Value, check: &str, needle: &str) -> &'a Value {
    problems(doc)
        .into_iter()
        .find(|f| f["check"] == check && f["what"].as_str().unwrap_or("").contains(needle))
        .unwrap_or_else(|| panic!("no {check} problem mentioning {needle:?} in {doc:#}"))
}

const KEY_THEN_CODE_SSHD: &str = "UsePAM yes\nPubkeyAuthentication yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n";

#[test]
#[ignore = "needs root"]
fn a_good_setup_passes_with_exit_0() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    let out = setup.run(false, false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("doctor: "), "{text}");
    assert!(!text.contains("PROBLEM"), "{text}");

    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(0));
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert_eq!(doc["problems"], 0, "{doc:#}");
    let passed: Vec<&str> = doc["passed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["check"].as_str().unwrap())
        .collect();
    for check in ["config", "files", "daemon", "pam", "sshd"] {
        assert!(passed.contains(&check), "{check} not passed: {doc:#}");
    }
}

#[test]
#[ignore = "needs root"]
fn a_broken_setup_reports_each_problem_with_its_line_and_exits_1() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    // The state dir readable by others (kauthd made it 0700 at start).
    fs::set_permissions(&setup.daemon.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
    // Debian's own default, which hides the code prompt.
    setup.write_sshd(&KEY_THEN_CODE_SSHD.replace(
        "KbdInteractiveAuthentication yes",
        "KbdInteractiveAuthentication no",
    ));
    // A PAM service where a wrong code does not stop the login.
    setup.write_pam(
        "panel",
        "auth required pam_unix.so\nauth optional pam_kpanel.so otp_only\naccount required pam_kpanel.so\n",
    );

    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(doc["ok"], false);

    let state = problem(&doc, "files", "state directory");
    assert!(
        state["fix"].as_str().unwrap().contains("chmod 700"),
        "{state:#}"
    );

    let kbd = problem(&doc, "sshd", "KbdInteractiveAuthentication");
    assert_eq!(kbd["line"], 3, "{kbd:#}");
    assert_eq!(kbd["file"], setup.sshd_config.display().to_string());
    let fix = kbd["fix"].as_str().unwrap();
    assert!(
        fix.contains("`KbdInteractiveAuthentication no` to `KbdInteractiveAuthentication yes`"),
        "{fix}"
    );
    assert!(!kbd["why"].as_str().unwrap().is_empty());

    let pam = problem(&doc, "pam", "panel stack");
    assert_eq!(pam["line"], 2, "{pam:#}");
    assert!(pam["fix"].as_str().unwrap().contains("required"), "{pam:#}");

    // The text form says the same, with what / why / fix for each.
    let out = setup.run(false, false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for needle in [
        "PROBLEM",
        "why:",
        "fix:",
        "chmod 700",
        "KbdInteractiveAuthentication",
        "3 problems",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
#[ignore = "needs root"]
fn the_database_readable_by_others_is_a_problem() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    let db = setup.daemon.state_dir.join("kauthd.sqlite");
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(1));
    let found = problem(&doc, "files", "kauthd.sqlite");
    assert!(
        found["fix"].as_str().unwrap().contains("chmod 600"),
        "{found:#}"
    );
}

#[test]
#[ignore = "needs root"]
fn sshd_settings_that_skip_the_code_are_reported() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    // No AuthenticationMethods (a key alone logs in), password logins on,
    // and PAM off.
    setup.write_sshd("UsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n");
    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(1));
    problem(&doc, "sshd", "UsePAM");
    problem(&doc, "sshd", "AuthenticationMethods is any");
    problem(&doc, "sshd", "PasswordAuthentication");
    let methods = problem(&doc, "sshd", "AuthenticationMethods is any");
    assert!(
        methods["fix"]
            .as_str()
            .unwrap()
            .contains("AuthenticationMethods publickey,keyboard-interactive"),
        "{methods:#}"
    );

    // The old keyword name counts too, and the first value wins.
    setup.write_sshd(&format!(
        "ChallengeResponseAuthentication no\n{KEY_THEN_CODE_SSHD}"
    ));
    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(1));
    let kbd = problem(&doc, "sshd", "KbdInteractiveAuthentication");
    assert_eq!(kbd["line"], 1, "{kbd:#}");
}

#[test]
#[ignore = "needs root"]
fn an_sshd_stack_without_the_account_line_is_a_problem() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    setup.write_pam(
        "sshd",
        "auth required pam_kpanel.so otp_only\naccount required pam_unix.so\nsession required pam_kpanel.so\n",
    );
    let (code, doc) = setup.json(false);
    assert_eq!(code, Some(1));
    let found = problem(&doc, "pam", "not in account");
    assert!(
        found["fix"].as_str().unwrap().contains("account"),
        "{found:#}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_stopped_daemon_is_a_finding_and_the_other_checks_still_run() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let mut setup = Setup::new();
    setup.daemon.stop();
    let started = std::time::Instant::now();
    let (code, doc) = setup.json(false);
    assert!(started.elapsed().as_secs() < 20, "doctor took too long");
    assert_eq!(code, Some(1), "{doc:#}");
    let found = problem(&doc, "daemon", "not reachable");
    assert!(found["fix"]
        .as_str()
        .unwrap()
        .contains("systemctl start kauthd"));
    let passed: Vec<&str> = doc["passed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["check"].as_str().unwrap())
        .collect();
    assert!(
        passed.contains(&"pam") && passed.contains(&"sshd"),
        "{doc:#}"
    );
}

#[test]
#[ignore = "needs root"]
fn codes_matching_off_centre_for_most_users_blame_the_server_clock() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    // Three users whose phones are one step ahead of the server.
    let step = step_with_margin(5);
    for (i, secret) in SECRETS.iter().enumerate() {
        let user = format!("phone{i}");
        let out = setup
            .daemon
            .ctl(&["2fa", "import", "--user", &user, "--secret", secret]);
        assert!(out.status.success(), "{}", stderr(&out));
        let result = login_code(
            &setup.daemon.socket,
            &user,
            &oathtool_at_step(secret, step + 1),
        );
        assert!(result.succeeded(), "{result:?}");
    }
    let (_, doc) = setup.json(true);
    let found = problem(&doc, "clock", "server clock looks about 30 s slow");
    assert!(
        found["what"].as_str().unwrap().contains("3 of 3"),
        "{found:#}"
    );
    assert!(found["fix"].as_str().unwrap().contains("timedatectl"));
}

#[test]
#[ignore = "needs root"]
fn doctor_needs_root() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let setup = Setup::new();
    let out = setup.daemon.ctl_with(&["doctor"], None, Some(65534));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("must run as root"),
        "{}",
        stderr(&out)
    );
}
