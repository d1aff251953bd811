//! Rate limits by network, through the real libpam, the built
//! pam_kpanel.so (with `PAM_RHOST`) and a real kauthd: the failures of an
//! IPv6 address count against its `[ratelimit] ipv6_prefix` network, so
//! an attacker who rotates addresses inside a /64 is locked all the same;
//! `kauthctl locks` shows the network, and clearing it by any address in
//! it lifts it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kauth_tests::daemon::{json, TestDaemon};
use kauth_tests::login::{oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-test";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const NETWORK: &str = "2001:db8:1:2::/64";

/// One code-only login through libpam from `rhost`.
fn pam_login(conf: &PamConfDir, user: &str, code: &str, rhost: &str) -> HarnessRun {
    let run = Harness::new(HARNESS, conf, SERVICE)
        .user(user)
        .answer(code)
        .rhost(rhost)
        .run();
    run.assert_completed();
    run
}

#[test]
#[ignore = "needs root"]
fn five_wrong_codes_from_five_addresses_of_one_slash_64_lock_the_slash_64() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 5\n");
    for user in ["carol", "dave"] {
        daemon.import_secret(user, SECRET);
    }
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "otp_only");
    let step = step_with_margin(10);
    let wrong = wrong_code_near(SECRET, step, 30);
    // Five names, so that no account reaches the limit: only the network.
    for i in 1..=5 {
        let run = pam_login(
            &conf,
            &format!("guess{i}"),
            &wrong,
            &format!("2001:db8:1:2::{i:x}"),
        );
        assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    }

    // A sixth address in the /64, with a right code: refused as locked.
    let right = oathtool_at_step(SECRET, step);
    let inside = pam_login(&conf, "carol", &right, "2001:db8:1:2:aaaa:bbbb:cccc:dddd");
    assert_eq!(
        inside.code("auth"),
        Some("PAM_MAXTRIES"),
        "{}",
        inside.stdout
    );
    // An address outside the /64: not locked, the right code logs in.
    let outside = pam_login(&conf, "dave", &right, "2001:db8:1:3::1");
    assert_eq!(
        outside.code("auth"),
        Some("PAM_SUCCESS"),
        "{}",
        outside.stdout
    );

    // `kauthctl locks` shows the network.
    let locks = json(&daemon.ctl(&["--json", "locks"]));
    let hosts: Vec<&str> = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "host")
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, [NETWORK], "{locks}");
    let text = kauth_tests::daemon::stdout(&daemon.ctl(&["locks"]));
    assert!(text.contains(NETWORK), "{text}");

    // Clearing by any address inside lifts the network's lock.
    let cleared = daemon.ctl(&["locks", "clear", "--host", "2001:db8:1:2::77"]);
    assert!(
        cleared.status.success(),
        "{}",
        kauth_tests::daemon::stderr(&cleared)
    );
    // carol's code logs in from the network now (it was not spent: the
    // locked attempt was refused unchecked).
    let after = pam_login(&conf, "carol", &right, "2001:db8:1:2::9");
    assert_eq!(after.code("auth"), Some("PAM_SUCCESS"), "{}", after.stdout);
}

#[test]
#[ignore = "needs root"]
fn ipv4_mapped_addresses_count_as_ipv4_and_an_ipv4_prefix_groups_them() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 3\nipv4_prefix = 24\n");
    daemon.import_secret("carol", SECRET);
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "otp_only");
    let step = step_with_margin(10);
    let wrong = wrong_code_near(SECRET, step, 30);
    for (i, rhost) in ["198.51.100.1", "::ffff:198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        let run = pam_login(&conf, &format!("guess{i}"), &wrong, rhost);
        assert_eq!(run.code("auth"), Some("PAM_AUTH_ERR"), "{}", run.stdout);
    }
    let right = oathtool_at_step(SECRET, step);
    let mapped = pam_login(&conf, "carol", &right, "::ffff:198.51.100.200");
    assert_eq!(
        mapped.code("auth"),
        Some("PAM_MAXTRIES"),
        "{}",
        mapped.stdout
    );
    let locks = json(&daemon.ctl(&["--json", "locks"]));
    assert!(
        locks["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "host" && l["name"] == "198.51.100.0/24"),
        "{locks}"
    );
    let outside = pam_login(&conf, "carol", &right, "198.51.101.1");
    assert_eq!(
        outside.code("auth"),
        Some("PAM_SUCCESS"),
        "{}",
        outside.stdout
    );
}
