//! Whether a failed login gives away that the account exists: the time of
//! a failed password login for an unknown user against a known user with
//! a wrong password. The medians must differ by less than 10 %.
//!
//! `cargo bench -p kauthd --bench login_timing` (a plain bench binary: it
//! runs both cases alternately through the daemon's own login code, with
//! the default `[password]` argon2 cost and the store on disk as in
//! production, and prints medians and percentiles). Exits 1 when the
//! medians differ by 10 % or more.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kauth_proto::{LoginMode, Outcome, Response, Secret};
use kauthd::config::Config;
use kauthd::daemon::Daemon;
use kauthd::passwords::argon2_pool::QueueKey;
use kauthd::passwords::hashing;
use kauthd::server::access::{Caller, Role};
use kauthd::server::api::login::{self, BeginArgs, Exchange};
use kauthd::store::Store;

const ROUNDS: usize = 150;

fn main() -> ExitCode {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    // Default argon2 cost; no rate limit getting in the way.
    let mut config = Config::parse("[ratelimit]\nmax_failures = 1000000\n").expect("config");
    config.daemon.state_dir = dir.path().join("state");
    let mut store = Store::open(
        &config.daemon.state_dir,
        kauthd::secrets::secret_box::SecretKey::generate().expect("key"),
    )
    .expect("store");
    let key = QueueKey::Account("known".to_owned());
    let hash = hashing::hash(&key, "vq7-lantern-kettle-bramble", &config.password).expect("hash");
    store
        .add_account("known", None, Some(&hash), 0)
        .expect("account");
    let daemon = Daemon::new(config, store, dir.path().join("kauthd.toml"));
    let root = Caller {
        uid: 0,
        gid: 0,
        pid: std::process::id() as i32,
        role: Role::Root,
        name: Some("root".into()),
    };

    println!(
        "failed password logins, {ROUNDS} rounds each, alternating (argon2id m={} KiB, t={}, p={})\n",
        daemon.config().password.argon2_memory_kib,
        daemon.config().password.argon2_iterations,
        daemon.config().password.argon2_parallelism
    );
    // Warm up both paths (the dummy hash is made on first use).
    for _ in 0..5 {
        failed_login(&daemon, &root, "known");
        failed_login(&daemon, &root, "unknown");
    }
    let mut known = Vec::with_capacity(ROUNDS);
    let mut unknown = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Alternate which goes first, so drift hits both alike.
        if round % 2 == 0 {
            known.push(failed_login(&daemon, &root, "known"));
            unknown.push(failed_login(&daemon, &root, "unknown"));
        } else {
            unknown.push(failed_login(&daemon, &root, "unknown"));
            known.push(failed_login(&daemon, &root, "known"));
        }
    }
    let known = report("known user, wrong password", known);
    let unknown = report("unknown user", unknown);
    let difference = (known.as_secs_f64() - unknown.as_secs_f64()).abs()
        / known.as_secs_f64().min(unknown.as_secs_f64());
    println!("\nmedians differ by {:.1} %", difference * 100.0);
    if difference < 0.10 {
        println!("PASS: under 10 %");
        ExitCode::SUCCESS
    } else {
        println!("FAIL: 10 % or more");
        ExitCode::FAILURE
    }
}

/// One whole failed login as the PAM module runs it: the password (wrong),
/// then the code prompt that follows (answered empty), then the denial.
fn failed_login(daemon: &Daemon, caller: &Caller, user: &str) -> Duration {
    let start = Instant::now();
    let mut slot = Exchange::default();
    let args = BeginArgs {
        user: user.to_owned(),
        service: "bench".to_owned(),
        rhost: None,
        mode: LoginMode::Password,
        authtok: Some(Secret::from("not the password at all")),
        enroll_at_login: false,
        resumable: false,
    };
    let mut response = login::begin(daemon, caller, &mut slot, args);
    loop {
        response = match response {
            Response::Finished { outcome } => {
                assert_ne!(outcome, Outcome::Success);
                return start.elapsed();
            }
            Response::Prompt { .. } => login::answer(daemon, &mut slot, &Secret::from("")),
            Response::Message { .. } => login::next(daemon, &mut slot),
            other => panic!("unexpected {other:?}"),
        };
    }
}

fn report(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{name}\n    median {:>10.2?}   p10 {:>10.2?}   p90 {:>10.2?}   min {:>10.2?}",
        pct(0.5),
        pct(0.1),
        pct(0.9),
        times[0]
    );
    pct(0.5)
}
