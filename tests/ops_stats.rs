//! `kauthctl stats` against a real kauthd after a scripted mix of 100
//! logins on two services, with known numbers of successes, wrong codes,
//! replayed codes, locked attempts and recovery codes: `--json` reports
//! the exact counts, the text and `--prometheus` forms say the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kauth_proto::{LoginMode, Outcome, Request};
use kauth_tests::daemon::{json, stdout, TestDaemon};
use kauth_tests::login::{begin, connect, converse, now, oathtool_at_step};
use serde_json::{json, Value};

const SERVICES: [&str; 2] = ["ssh-test", "panel-test"];

fn secret_of(n: usize) -> String {
    // 20 bytes of base32: distinct per account.
    format!("JBSWY3DPEHPK3PXP{:A>16}", letters(n))
}

/// `n` written with base32 letters only (A..Z), so the secret is valid.
fn letters(mut n: usize) -> String {
    let mut s = String::new();
    loop {
        s.insert(0, char::from(b'A' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

/// One code-only login on `service`; its outcome.
fn login(daemon: &TestDaemon, user: &str, service: &str, code: &str) -> Option<Outcome> {
    let mut request = begin(user, LoginMode::OtpOnly, None);
    if let Request::Begin { service: s, .. } = &mut request {
        *s = service.to_owned();
    }
    converse(&mut connect(&daemon.socket), request, &[code]).outcome
}

fn current_code(secret: &str) -> String {
    oathtool_at_step(secret, now() / 30)
}

/// What the mix must show, per service: (success, denied, locked).
struct Expected {
    per_service: [(u64, u64, u64); 2],
}

impl Expected {
    fn count(&mut self, service: usize, outcome: Outcome) {
        let counts = &mut self.per_service[service];
        match outcome {
            Outcome::Success => counts.0 += 1,
            Outcome::Denied => counts.1 += 1,
            Outcome::Locked => counts.2 += 1,
        }
    }
}

#[test]
#[ignore = "needs root"]
fn stats_after_a_scripted_mix_of_100_logins_report_the_exact_counts() {
    let daemon = TestDaemon::start("[ratelimit]\nmax_failures = 5\n");
    for i in 0..30 {
        daemon.import_secret(&format!("s{i}"), &secret_of(i));
    }
    daemon.import_secret("r0", &secret_of(99));
    let codes = daemon.regenerate_recovery_codes("r0");
    let started = Instant::now();
    let mut expected = Expected {
        per_service: [(0, 0, 0); 2],
    };
    let mut logins = 0;
    let mut run = |user: &str, i: usize, code: &str, want: Outcome| {
        let service = i % 2;
        let got = login(&daemon, user, SERVICES[service], code);
        assert_eq!(got, Some(want), "login {logins} of {user}");
        expected.count(service, want);
        logins += 1;
    };

    // 30 successes with a TOTP code, then 10 of those codes again.
    let mut used = Vec::new();
    for i in 0..30 {
        let code = current_code(&secret_of(i));
        run(&format!("s{i}"), i, &code, Outcome::Success);
        used.push(code);
    }
    for (i, code) in used.iter().enumerate().take(10) {
        run(&format!("s{i}"), i, code, Outcome::Denied);
    }
    // 5 successes with a recovery code.
    for (i, code) in codes.iter().enumerate().take(5) {
        run("r0", i, code, Outcome::Success);
    }
    // 40 wrong codes: 35 names once each, then 5 for `lk`, which locks it.
    for i in 0..35 {
        run(&format!("w{i}"), i, "000000", Outcome::Denied);
    }
    for i in 0..5 {
        run("lk", i, "000000", Outcome::Denied);
    }
    // 15 attempts while `lk` is locked.
    for i in 0..15 {
        run("lk", i, "000000", Outcome::Locked);
    }
    assert_eq!(logins, 100);
    let took = started.elapsed();

    let stats = json(&daemon.ctl(&["--json", "stats"]));
    let start = &stats["since_start"];
    assert_eq!(
        start["logins"],
        json!({"success": 35, "denied": 50, "locked": 15}),
        "{stats}"
    );
    let mut services: Vec<Value> = start["services"].as_array().unwrap().clone();
    services.sort_by_key(|s| s["service"].as_str().unwrap().to_owned());
    let want = |i: usize| {
        let (success, denied, locked) = expected.per_service[i];
        json!({"service": SERVICES[i], "success": success, "denied": denied, "locked": locked})
    };
    assert_eq!(services, [want(1), want(0)], "{stats}");
    assert_eq!(
        start["codes_refused"],
        json!({"wrong": 40, "replayed": 10, "locked": 15}),
        "{stats}"
    );
    assert_eq!(start["recovery_codes_used"], 5, "{stats}");
    let p50 = start["latency_ms"]["p50"].as_f64().expect("a p50");
    let p99 = start["latency_ms"]["p99"].as_f64().expect("a p99");
    assert!(p50 > 0.0 && p50 <= p99, "{stats}");
    assert_eq!(
        stats["locks"],
        json!({"accounts": 1, "hosts": 0}),
        "{stats}"
    );
    // kauthctl's own connection is root's.
    assert!(
        stats["connections"]["root"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["argon2_queue"], 0, "{stats}");
    let minute = &stats["last_minute"];
    if took < Duration::from_secs(45) {
        // The whole mix fell within the last minute.
        assert_eq!(minute["logins"], start["logins"], "{stats}");
        assert_eq!(minute["codes_refused"], start["codes_refused"], "{stats}");
        assert_eq!(minute["recovery_codes_used"], 5, "{stats}");
    } else {
        let recent = minute["logins"]["denied"].as_u64().unwrap();
        assert!(recent <= 50, "{stats}");
    }

    // Text and Prometheus say the same.
    let text = stdout(&daemon.ctl(&["stats"]));
    assert!(
        text.contains("logins: 35 succeeded, 50 denied, 15 locked"),
        "{text}"
    );
    assert!(
        text.contains("codes refused: 40 wrong, 10 replayed, 15 while locked"),
        "{text}"
    );
    let prom = stdout(&daemon.ctl(&["stats", "--prometheus"]));
    let (s0, d0, l0) = expected.per_service[0];
    for line in [
        format!("kauthd_logins_total{{service=\"ssh-test\",outcome=\"success\"}} {s0}"),
        format!("kauthd_logins_total{{service=\"ssh-test\",outcome=\"denied\"}} {d0}"),
        format!("kauthd_logins_total{{service=\"ssh-test\",outcome=\"locked\"}} {l0}"),
        "kauthd_codes_refused_total{reason=\"replayed\"} 10".to_owned(),
        "kauthd_recovery_codes_used_total 5".to_owned(),
        "kauthd_locks{kind=\"account\"} 1".to_owned(),
        "# TYPE kauthd_logins_total counter".to_owned(),
    ] {
        assert!(prom.lines().any(|l| l == line), "no `{line}` in:\n{prom}");
    }
    // Root only.
    let refused = daemon.ctl_with(&["stats"], None, Some(65534));
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
}
