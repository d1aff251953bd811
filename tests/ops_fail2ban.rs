//! The shipped fail2ban filter (`packaging/fail2ban/filter.d/kauthd.conf`)
//! against what a real kauthd logged during a mix of logins: wrong codes,
//! wrong passwords, locks, locked attempts and successes, from IPv4 and
//! IPv6 hosts and from none. Debian's `fail2ban-regex` must match every
//! failure line that names a host, with that host, and no other line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::Command;

use kauth_proto::{LoginMode, Request};
use kauth_tests::daemon::TestDaemon;
use kauth_tests::login::{
    begin, connect, converse, login_code, login_code_from, oathtool_at_step, step_with_margin,
    wrong_code_near,
};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "correct-Horse-battery-9";
const FILTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/fail2ban/filter.d/kauthd.conf"
);
/// Installed by Debian's fail2ban; the filter includes it.
const COMMON_CONF: &str = "/etc/fail2ban/filter.d/common.conf";
const FAILURES: [&str; 3] = ["login_failure", "password_change_failure", "lockout"];

/// A password-then-code login from `rhost`; true if it logged in.
fn password_login(
    daemon: &TestDaemon,
    user: &str,
    password: &str,
    code: &str,
    rhost: &str,
) -> bool {
    converse(
        &mut connect(&daemon.socket),
        begin(user, LoginMode::Password, Some(rhost)),
        &[password, code],
    )
    .succeeded()
}

/// kauthd's syslog messages as rsyslog writes them to /var/log/auth.log:
/// the priority dropped, the host name after the time stamp.
fn as_auth_log(syslog: &str) -> String {
    syslog
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find('>')? + 1..];
            let (stamp, message) = rest.split_at(15.min(rest.len()));
            Some(format!("{stamp} testhost{message}\n"))
        })
        .collect()
}

/// The event and the rhost of a kauthd line in the documented format.
fn event_and_rhost(line: &str) -> Option<(&str, &str)> {
    let message = &line[line.find("]: ")? + 3..];
    let (event, fields) = message.split_once(": user=")?;
    let rhost = fields.split(" rhost=").nth(1)?.split(' ').next()?;
    Some((event, rhost))
}

/// The host fail2ban bans for an rhost: an IPv4-mapped IPv6 address as
/// IPv4, anything else as written.
fn banned_as(rhost: &str) -> String {
    match rhost
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .and_then(|a| a.to_ipv4_mapped())
    {
        Some(v4) => v4.to_string(),
        None => rhost.to_owned(),
    }
}

/// The hosts `fail2ban-regex` found in `log` with the filter, in order.
fn fail2ban_hosts(log: &Path, filter: &Path) -> Vec<String> {
    let out = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(log)
        .arg(filter)
        .output()
        .expect("fail2ban-regex is missing: install Debian's fail2ban (tests/debian-packages)");
    assert!(
        out.status.success(),
        "fail2ban-regex failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn fail2ban_matches_every_failure_with_a_host_and_no_success() {
    let daemon = TestDaemon::start(
        "[ratelimit]\nmax_failures = 3\n\
         [password]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n",
    );
    daemon.add_account("ann", PASSWORD);
    for user in ["ann", "bob", "carol"] {
        daemon.import_secret(user, SECRET);
    }
    let step = step_with_margin(10);
    let right = oathtool_at_step(SECRET, step);
    let wrong = wrong_code_near(SECRET, step, 30);

    // Failures: wrong codes (IPv4, IPv6, IPv4-mapped), a wrong password,
    // a wrong code with no host (not for fail2ban).
    assert!(!login_code_from(&daemon.socket, "bob", &wrong, "203.0.113.10").succeeded());
    assert!(!login_code_from(&daemon.socket, "bob", &wrong, "2001:db8:5::1").succeeded());
    assert!(!login_code_from(&daemon.socket, "nobody1", &wrong, "::ffff:203.0.113.11").succeeded());
    assert!(!password_login(
        &daemon,
        "ann",
        "wrong-password",
        &right,
        "198.51.100.20"
    ));
    assert!(!login_code(&daemon.socket, "carol", &wrong).succeeded());
    // A service name made to look like another host: the real host only.
    let mut forged = begin("bob", LoginMode::OtpOnly, Some("203.0.113.77"));
    if let Request::Begin { service, .. } = &mut forged {
        *service = "x rhost=192.0.2.66".to_owned();
    }
    assert!(!converse(&mut connect(&daemon.socket), forged, &[&wrong]).succeeded());
    // A network locked by three names from three of its addresses, then
    // an attempt from it refused unchecked.
    for i in 1..=3 {
        let host = format!("2001:db8:9:9::{i}");
        assert!(!login_code_from(&daemon.socket, &format!("guess{i}"), &wrong, &host).succeeded());
    }
    assert!(!login_code_from(&daemon.socket, "carol", &right, "2001:db8:9:9::99").succeeded());
    // Successes from hosts: ann with her password, carol from IPv6.
    assert!(password_login(
        &daemon,
        "ann",
        PASSWORD,
        &right,
        "198.51.100.21"
    ));
    assert!(login_code_from(&daemon.socket, "carol", &right, "2001:db8:7::7").succeeded());
    assert!(daemon.syslog_receives("rhost=2001:db8:7::7 with a verification code"));

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let text = as_auth_log(&daemon.syslog());
    fs::write(&log, &text).unwrap();
    let filters = dir.path().join("filter.d");
    fs::create_dir(&filters).unwrap();
    fs::copy(COMMON_CONF, filters.join("common.conf"))
        .expect("fail2ban's common.conf is missing: install Debian's fail2ban");
    fs::copy(FILTER, filters.join("kauthd.conf")).unwrap();

    let lines: Vec<(&str, &str)> = text.lines().filter_map(event_and_rhost).collect();
    let expected: Vec<String> = lines
        .iter()
        .filter(|(event, rhost)| FAILURES.contains(event) && *rhost != "-")
        .map(|(_, rhost)| banned_as(rhost))
        .collect();
    // The mix holds what the test is about.
    for host in [
        "203.0.113.10",
        "2001:db8:5::1",
        "203.0.113.11",
        "198.51.100.20",
        "2001:db8:9:9::3",
        "2001:db8:9:9::/64",
        "2001:db8:9:9::99",
    ] {
        assert!(
            expected.iter().any(|h| h == host),
            "no failure from {host} in:\n{text}"
        );
    }
    let successes = lines
        .iter()
        .filter(|(event, rhost)| *event == "login_success" && *rhost != "-")
        .count();
    assert_eq!(successes, 2, "{text}");
    assert!(lines
        .iter()
        .any(|(event, rhost)| *event == "login_failure" && *rhost == "-"));

    // Every failure line with a host matched, with its host; nothing else.
    let matched = fail2ban_hosts(&log, &filters.join("kauthd.conf"));
    assert_eq!(matched, expected, "log:\n{text}");
    assert!(matched.iter().any(|h| h == "203.0.113.77"), "{matched:?}");
    assert!(!matched.iter().any(|h| h == "192.0.2.66"), "{matched:?}");
}
