//! Floor mode (`--floor`): the sequential logins of the main table, with a
//! third target in between: `pam_kpanel.so` talking to kauth-noop-daemon,
//! a daemon that does nothing but answer (and, for valid codes, write and
//! fdatasync 8 KiB). What that target takes is what libpam, the module,
//! the socket round trips and one durable commit cost on this machine;
//! kauthd's time minus it is kauthd's own work.
//!
//! The order of kauthd and the no-op daemon is swapped halfway, because
//! the target logged in right after another one of ours runs faster
//! than the one right after google-authenticator.

use kauth_tests::daemon::TestDaemon;
use kauth_tests::noop_daemon::NoopDaemon;
use kauth_tests::pam::PamConfDir;

use crate::driver::{self, Answer, Samples, Target};
use crate::{secs, setup, timing, totp};

const KAUTHD: &str = "bench-floor-kauthd";
const NOOP_ACCEPT: &str = "bench-floor-noop-accept";
const NOOP_DENY: &str = "bench-floor-noop-deny";

/// Runs the comparison; false when a login ended otherwise than expected.
pub fn run(users: usize) -> bool {
    let secrets = totp::random_secrets(users);
    let kauthd = TestDaemon::start_with_system_syslog("");
    let dir = tempfile::Builder::new()
        .prefix("bench-noop-daemon-")
        .tempdir()
        .expect("temp dir");
    let accept = NoopDaemon::start(
        &dir.path().join("accept.sock"),
        Some(&dir.path().join("commits")),
    );
    let deny = NoopDaemon::start(&dir.path().join("deny.sock"), None);
    let google = setup::GoogleDir::new();
    let conf = PamConfDir::new();
    setup::write_kauthd_service(&conf, KAUTHD, &kauthd.socket, "otp_only");
    setup::write_kauthd_service(&conf, NOOP_ACCEPT, &accept.socket, "otp_only");
    setup::write_kauthd_service(&conf, NOOP_DENY, &deny.socket, "otp_only");
    setup::write_other_services(&conf, google.path());
    let took = setup::enroll_kauthd(&kauthd, "u", 0, &secrets, None);
    println!("kauthd: enrolled {users} users in {}", secs(took));
    google.write_users("u", 0, &secrets);

    let target = |service| Target::new(conf.path(), service, "u", secrets.clone(), None);
    let ours = target(KAUTHD);
    let ga = target(setup::GOOGLE);
    let noop_accept = target(NOOP_ACCEPT);
    let noop_deny = target(NOOP_DENY);
    let permit = Target::new(conf.path(), setup::PERMIT, "u", Vec::new(), None);

    println!("sequential, valid codes, {users} users…");
    let valid = swapped_halves(&ours, &noop_accept, &ga, users, Answer::Valid);
    println!("sequential, wrong codes…");
    let wrong = swapped_halves(&ours, &noop_deny, &ga, users, Answer::Wrong);
    let all: Vec<usize> = (0..users).collect();
    let floor = driver::sequential(&[(&permit, &all)], Answer::None);
    print_table(users, &valid, &wrong, &floor[0])
}

/// kauthd, the no-op daemon and google-authenticator, interleaved login
/// by login; the first half of the users with kauthd first, the second
/// with the no-op daemon first. Returns their samples in that order.
fn swapped_halves(
    ours: &Target,
    noop: &Target,
    ga: &Target,
    users: usize,
    answer: Answer,
) -> [Samples; 3] {
    let first: Vec<usize> = (0..users / 2).collect();
    let second: Vec<usize> = (users / 2..users).collect();
    let a = driver::sequential(&[(ours, &first), (noop, &first), (ga, &first)], answer);
    let b = driver::sequential(&[(noop, &second), (ours, &second), (ga, &second)], answer);
    let [a0, a1, a2]: [Samples; 3] = a.try_into().expect("three targets");
    let [b0, b1, b2]: [Samples; 3] = b.try_into().expect("three targets");
    [a0.joined(b1), a1.joined(b0), a2.joined(b2)]
}

fn print_table(users: usize, valid: &[Samples; 3], wrong: &[Samples; 3], floor: &Samples) -> bool {
    println!();
    println!(
        "| {users} users, sequential (median; p99) | kauthd | no-op daemon | google-authenticator \
         | kauthd ÷ GA | no-op ÷ GA | goal |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let ratio = |a: &Samples, b: &Samples| a.median().as_secs_f64() / b.median().as_secs_f64();
    for (what, s, goal) in [
        (
            "valid code (no-op: one 8 KiB write and fdatasync)",
            valid,
            "≤ 0.20",
        ),
        ("wrong code (no-op: no write)", wrong, "≤ 0.05"),
    ] {
        println!(
            "| {what} | {} | {} | {} | {:.2} | {:.2} | {goal} |",
            timing(&s[0]),
            timing(&s[1]),
            timing(&s[2]),
            ratio(&s[0], &s[2]),
            ratio(&s[1], &s[2])
        );
    }
    println!("| pam_permit.so alone | {} | | | | | |", timing(floor));
    println!();
    driver::report_problems([
        ("kauthd valid", valid[0].problems()),
        ("no-op daemon valid", valid[1].problems()),
        ("google-authenticator valid", valid[2].problems()),
        ("kauthd wrong", wrong[0].problems()),
        ("no-op daemon wrong", wrong[1].problems()),
        ("google-authenticator wrong", wrong[2].problems()),
        ("pam_permit", floor.problems()),
    ])
}
