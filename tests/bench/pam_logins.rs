//! Login benchmark: kauthd (`pam_kpanel.so`) next to google-authenticator
//! (`pam_google_authenticator.so`), both driven the same way in the same
//! run through the real libpam in this process (`pam_start_confdir`,
//! `pam_authenticate`, `pam_end`), with the goals of issue #13. Run by
//! hand, as root, in a release build: `scripts/bench` (it says how).
//!
//! ```text
//! cargo bench -p kauth-tests --bench pam_logins -- [--users N] [--clients N]
//!     [--concurrent-users N] [--password-users N] [--password-clients N] [--large N]
//!     [--fleet] [--floor]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod driver;
mod fleet;
mod floor;
mod setup;
mod totp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use kauth_tests::daemon::{running_as_root, TestDaemon};
use kauth_tests::login::oathtool_at_step;
use kauth_tests::pam::PamConfDir;

use driver::{Answer, Samples, Target, Throughput};

/// A password kauthd's policy accepts (long, not common, no user name).
const PASSWORD: &str = "Quartz-lantern-7c4e-harbour";

/// kauthd's default argon2id cost (`[password]` in config/kauthd.toml).
const ARGON2_MEMORY_KIB: u32 = 19456;
const ARGON2_ITERATIONS: u32 = 2;
const ARGON2_LANES: u32 = 1;

#[derive(Debug)]
struct Options {
    users: usize,
    clients: usize,
    concurrent_users: usize,
    password_users: usize,
    password_clients: usize,
    large: usize,
    /// Only the fleet comparison (three kauthd on PostgreSQL next to one
    /// on SQLite).
    fleet: bool,
    /// Only the sequential runs, next to a daemon that does nothing.
    floor: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        users: 1000,
        clients: 32,
        concurrent_users: 2000,
        password_users: 256,
        password_clients: 8,
        large: 100_000,
        fleet: false,
        floor: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes --bench to the binary.
        if flag == "--bench" {
            continue;
        }
        if flag == "--fleet" {
            o.fleet = true;
            continue;
        }
        if flag == "--floor" {
            o.floor = true;
            continue;
        }
        let value: usize = args
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(&format!("{flag} needs a number")));
        match flag.as_str() {
            "--users" => o.users = value,
            "--clients" => o.clients = value,
            "--concurrent-users" => o.concurrent_users = value,
            "--password-users" => o.password_users = value,
            "--password-clients" => o.password_clients = value,
            "--large" => o.large = value,
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if o.users == 0 || o.clients == 0 || o.password_users == 0 || o.password_clients == 0 {
        usage("counts must be at least 1");
    }
    o.concurrent_users = o.concurrent_users.max(o.users);
    o.large = o.large.max(o.concurrent_users + o.users);
    o
}

fn usage(why: &str) -> ! {
    eprintln!(
        "pam_logins: {why}\nusage: pam_logins [--users N] [--clients N] [--concurrent-users N] \
         [--password-users N] [--password-clients N] [--large N] [--fleet] [--floor]"
    );
    std::process::exit(2);
}

fn main() {
    let options = parse_options();
    if !running_as_root() {
        eprintln!(
            "pam_logins: run it as root: pam_google_authenticator reads its secret files as \
             root (user=root) and the files must be root's"
        );
        std::process::exit(2);
    }
    check_codes_against_oathtool();
    println!("pam_logins: {options:?}");
    println!("machine: {} cores, load {}", cores(), load_average());
    if options.fleet {
        let all_as_expected = fleet::run(options.concurrent_users, options.clients);
        println!("machine load at the end: {}", load_average());
        std::process::exit(if all_as_expected { 0 } else { 1 });
    }
    if options.floor {
        let all_as_expected = floor::run(options.users);
        println!("machine load at the end: {}", load_average());
        std::process::exit(if all_as_expected { 0 } else { 1 });
    }

    let all_secrets = totp::random_secrets(options.large);
    // One kauthd per size, so that sizes are compared login by login in
    // one run: `small` holds exactly `users` accounts, `busy` the users of
    // the concurrent and password runs, `large` all `large` accounts.
    let small = TestDaemon::start_with_system_syslog("");
    let busy = TestDaemon::start_with_system_syslog("");
    let large_daemon = TestDaemon::start_with_system_syslog("");
    let google = setup::GoogleDir::new();
    let conf = PamConfDir::new();
    setup::write_kauthd_service(&conf, setup::KAUTHD_OTP, &small.socket, "otp_only");
    setup::write_kauthd_service(&conf, setup::KAUTHD_CONCURRENT, &busy.socket, "otp_only");
    setup::write_kauthd_service(&conf, setup::KAUTHD_PASSWORD, &busy.socket, "");
    setup::write_kauthd_service(&conf, setup::KAUTHD_LARGE, &large_daemon.socket, "otp_only");
    setup::write_other_services(&conf, google.path());

    let base = &all_secrets[..options.users];
    let took = setup::enroll_kauthd(&small, "u", 0, base, None);
    println!("kauthd: enrolled {} users in {}", base.len(), secs(took));
    google.write_users("u", 0, &all_secrets[..options.concurrent_users]);
    let kauthd = Target::new(conf.path(), setup::KAUTHD_OTP, "u", base.to_vec(), None);
    let ga = Target::new(conf.path(), setup::GOOGLE, "u", all_secrets.clone(), None);
    let permit = Target::new(conf.path(), setup::PERMIT, "u", Vec::new(), None);

    let first: Vec<usize> = (0..options.users).collect();
    println!("sequential, valid codes, {} users…", options.users);
    let valid = driver::sequential(&[(&kauthd, &first), (&ga, &first)], Answer::Valid);
    println!("sequential, wrong codes…");
    let wrong = driver::sequential(&[(&kauthd, &first), (&ga, &first)], Answer::Wrong);
    println!("floor: pam_permit…");
    let floor = driver::sequential(&[(&permit, &first)], Answer::None);

    let concurrent_secrets = &all_secrets[..options.concurrent_users];
    let took = setup::enroll_kauthd(&busy, "u", 0, concurrent_secrets, None);
    println!(
        "kauthd: enrolled {} users in another kauthd in {}",
        concurrent_secrets.len(),
        secs(took)
    );
    let kauthd_busy = Target::new(
        conf.path(),
        setup::KAUTHD_CONCURRENT,
        "u",
        concurrent_secrets.to_vec(),
        None,
    );
    let all: Vec<usize> = (0..options.concurrent_users).collect();
    println!(
        "{} clients at once, {} users…",
        options.clients, options.concurrent_users
    );
    let kauthd_concurrent = driver::concurrent(&kauthd_busy, &all, Answer::Valid, options.clients);
    let ga_concurrent = driver::concurrent(&ga, &all, Answer::Valid, options.clients);

    println!(
        "password and code, {} clients, {} users…",
        options.password_clients, options.password_users
    );
    let password_secrets = totp::random_secrets(options.password_users);
    let took = setup::enroll_kauthd(&busy, "pw", 0, &password_secrets, Some(PASSWORD));
    println!(
        "kauthd: added {} users with a password in {}",
        password_secrets.len(),
        secs(took)
    );
    let kauthd_password = Target::new(
        conf.path(),
        setup::KAUTHD_PASSWORD,
        "pw",
        password_secrets,
        Some(PASSWORD.to_owned()),
    );
    let password_users: Vec<usize> = (0..options.password_users).collect();
    let password = driver::concurrent(
        &kauthd_password,
        &password_users,
        Answer::Valid,
        options.password_clients,
    );
    // The most the cores give: one hash per core at a time (more threads
    // only make them compete for the caches).
    let argon2 = bare_argon2(options.password_users, cores());

    let rest = &all_secrets[options.concurrent_users..];
    let took = google.write_users("u", options.concurrent_users, rest);
    println!(
        "google-authenticator: wrote {} more secret files in {}",
        rest.len(),
        secs(took)
    );
    let took = setup::enroll_kauthd(&large_daemon, "u", 0, &all_secrets, None);
    println!(
        "kauthd: enrolled {} users in a third kauthd in {} ({:.0} per second)",
        all_secrets.len(),
        secs(took),
        all_secrets.len() as f64 / took.as_secs_f64()
    );
    let kauthd_large = Target::new(
        conf.path(),
        setup::KAUTHD_LARGE,
        "u",
        all_secrets.clone(),
        None,
    );
    // Users spread over all the accounts; for google-authenticator, among
    // those not used yet.
    let spread: Vec<usize> = (0..options.users)
        .map(|k| k * options.large / options.users)
        .collect();
    let spread_unused: Vec<usize> = (0..options.users)
        .map(|k| {
            options.concurrent_users
                + k * (options.large - options.concurrent_users) / options.users
        })
        .collect();
    println!(
        "sequential, valid codes, {} accounts next to {}…",
        options.large, options.users
    );
    let large = driver::sequential(
        &[
            (&kauthd, &first),
            (&kauthd_large, &spread),
            (&ga, &spread_unused),
        ],
        Answer::Valid,
    );
    println!("machine load at the end: {}", load_average());

    let all_as_expected = print_table(&Results {
        options: &options,
        valid: &valid,
        wrong: &wrong,
        floor: &floor[0],
        concurrent: [&kauthd_concurrent, &ga_concurrent],
        password: &password,
        argon2,
        large: &large,
    });
    // Stop kauthd and remove the temporary directories before exiting.
    drop((small, busy, large_daemon, google, conf));
    if !all_as_expected {
        std::process::exit(1);
    }
}

/// Our in-process codes must be the codes oathtool computes.
fn check_codes_against_oathtool() {
    let secret = totp::random_secrets(1)[0];
    let step = totp::current_step();
    let ours = totp::valid_code(&secret, step);
    let theirs = oathtool_at_step(&totp::base32(&secret), step);
    assert_eq!(
        ours, theirs,
        "the benchmark's TOTP code differs from oathtool's"
    );
}

/// Hashes per second of `count` argon2id hashes of kauthd's default cost,
/// `threads` at a time.
fn bare_argon2(count: usize, threads: usize) -> f64 {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None)
        .expect("argon2 parameters");
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut out = [0u8; 32];
                while next.fetch_add(1, Ordering::SeqCst) < count {
                    hasher
                        .hash_password_into(PASSWORD.as_bytes(), b"bench-salt-16byt", &mut out)
                        .expect("argon2 hash");
                }
            });
        }
    });
    count as f64 / started.elapsed().as_secs_f64()
}

struct Results<'a> {
    options: &'a Options,
    valid: &'a [Samples],
    wrong: &'a [Samples],
    floor: &'a Samples,
    concurrent: [&'a Throughput; 2],
    password: &'a Throughput,
    argon2: f64,
    large: &'a [Samples],
}

/// Prints the table; false when a login ended otherwise than expected.
fn print_table(r: &Results<'_>) -> bool {
    let o = r.options;
    println!();
    println!("| measurement | kauthd | google-authenticator | ratio | goal | met |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let ratio = |a: &Samples, b: &Samples| a.median().as_secs_f64() / b.median().as_secs_f64();
    let valid_ratio = ratio(&r.valid[0], &r.valid[1]);
    row(
        &format!(
            "OTP-only login, valid code, sequential, {} users (median; p99)",
            o.users
        ),
        &timing(&r.valid[0]),
        &timing(&r.valid[1]),
        valid_ratio,
        "≤ 0.20 (1/5 of GA's time)",
        valid_ratio <= 0.2,
    );
    let wrong_ratio = ratio(&r.wrong[0], &r.wrong[1]);
    row(
        "wrong code, sequential (median; p99)",
        &timing(&r.wrong[0]),
        &timing(&r.wrong[1]),
        wrong_ratio,
        "≤ 0.05 (1/20 of GA's time)",
        wrong_ratio <= 0.05,
    );
    let [k, g] = r.concurrent;
    let concurrent_ratio = k.per_second() / g.per_second();
    row(
        &format!(
            "{} PAM clients at once, {} users, valid codes",
            o.clients, o.concurrent_users
        ),
        &rate(k.per_second()),
        &rate(g.per_second()),
        concurrent_ratio,
        "≥ 5,000 logins/s and ≥ 5.00",
        k.per_second() >= 5000.0 && concurrent_ratio >= 5.0,
    );
    // large[0] is the 1,000-account kauthd, interleaved with large[1].
    let size_ratio = ratio(&r.large[1], &r.large[0]);
    row(
        &format!(
            "valid code with {} accounts (median; p99); ratio: kauthd's median at {} ÷ at {} \
             ({}), measured login by login in turn",
            thousands(o.large as f64),
            thousands(o.large as f64),
            thousands(o.users as f64),
            timing(&r.large[0])
        ),
        &timing(&r.large[1]),
        &timing(&r.large[2]),
        size_ratio,
        "≤ 1.20",
        size_ratio <= 1.2,
    );
    let password_ratio = r.password.per_second() / r.argon2;
    row(
        &format!(
            "password + code, {} clients, {} users; GA column: bare argon2id \
             ({ARGON2_MEMORY_KIB} KiB, {ARGON2_ITERATIONS} iterations, {ARGON2_LANES} lane), \
             {} threads (one per core)",
            o.password_clients,
            o.password_users,
            cores()
        ),
        &rate(r.password.per_second()),
        &format!("{} hashes/s", thousands(r.argon2)),
        password_ratio,
        "≥ 0.90",
        password_ratio >= 0.9,
    );
    println!(
        "| floor: pam_permit.so alone, same driver (median; p99) | {} | | | | |",
        timing(r.floor)
    );
    println!();
    driver::report_problems([
        ("kauthd valid", r.valid[0].problems()),
        ("google-authenticator valid", r.valid[1].problems()),
        ("kauthd wrong", r.wrong[0].problems()),
        ("google-authenticator wrong", r.wrong[1].problems()),
        ("pam_permit", r.floor.problems()),
        ("kauthd concurrent", k.problems()),
        ("google-authenticator concurrent", g.problems()),
        ("kauthd password", r.password.problems()),
        ("kauthd small, next to large", r.large[0].problems()),
        ("kauthd large", r.large[1].problems()),
        ("google-authenticator large", r.large[2].problems()),
    ])
}

fn row(what: &str, kauthd: &str, google: &str, ratio: f64, goal: &str, met: bool) {
    println!(
        "| {what} | {kauthd} | {google} | {ratio:.2} | {goal} | {} |",
        if met { "yes" } else { "no" }
    );
}

fn timing(s: &Samples) -> String {
    format!(
        "{} µs; {} µs",
        thousands(s.median().as_secs_f64() * 1e6),
        thousands(s.p99().as_secs_f64() * 1e6)
    )
}

fn rate(per_second: f64) -> String {
    format!("{} logins/s", thousands(per_second))
}

/// A whole number with thousands separators: 12,345.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
