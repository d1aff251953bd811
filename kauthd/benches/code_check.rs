//! How much one verification-code check costs, with and without the
//! durable commit that must precede the answer.
//!
//! `cargo bench -p kauthd --bench code_check` (a plain bench binary: it
//! times many iterations and prints the median and percentiles).
//! The store lives in a temporary directory on the same disk as the build
//! (TMPDIR), with WAL and synchronous=FULL as in production.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kauth_proto::Secret;
use kauthd::config::Config;
use kauthd::daemon::Daemon;
use kauthd::store::{LimitKey, NewTotp, Spend, Store};
use kauthd::twofactor::code_check::{self, CodeOutcome, Origin};
use kauthd::twofactor::recovery;
use kauthd::twofactor::totp::{self, TotpParams};

fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let mut config = Config::parse("[ratelimit]\nmax_failures = 1000000\n").expect("config");
    config.daemon.state_dir = dir.path().join("state");
    let mut store = Store::open(
        &config.daemon.state_dir,
        kauthd::secrets::secret_box::SecretKey::generate().expect("key"),
    )
    .expect("store");
    let params = TotpParams::default();
    let secret = totp::generate_secret().expect("secret");
    let account = store.add_account("bench", None, None, 0).expect("account");
    let codes = recovery::generate(10).expect("codes");
    let (salt, hashes) = code_check::hash_codes("bench", &codes).expect("hash");
    store
        .enable_totp(
            account.id,
            &NewTotp {
                secret: &secret,
                params: &params,
                now: 0,
                first_counter: None,
                skew_steps: None,
                codes: Some((&salt, &hashes)),
            },
        )
        .expect("enable");
    let now = kauthd::clock::now() as u64;
    let good = totp::code_at(&secret, &params, now);

    println!(
        "code check benchmark ({} iterations each unless noted)\n",
        ITER
    );

    // 1. The TOTP check alone: three candidate steps, constant-time compare.
    report(
        "TOTP verify (find_match_after, skew 1), no store",
        bench(ITER * 100, |_| {
            let m = totp::find_match_after(&secret, &params, &good, now, 1, 0, None);
            assert!(m.is_some());
        }),
    );

    // 2. The durable commit of an accepted code: move the replay guard,
    //    clear the failure count, then one fdatasync of the WAL.
    let mut counter = now / 30 + 1_000;
    let durability = store.durability();
    report(
        "accept commit (spend + clear failures, fdatasync)",
        bench(ITER, |_| {
            counter += 1;
            let spend = Spend::Totp {
                account_id: account.id,
                counter,
                offset: 0,
            };
            let spent = store
                .spend_code(spend, LimitKey::Account("bench"), None, 0)
                .expect("accept");
            assert!(spent.is_some());
            durability.sync().expect("sync");
        }),
    );

    // 3. A whole check through the daemon's code path for a wrong code:
    //    lock check, TOTP verify, recovery-code shape check, and the
    //    commit of the failure count (to the WAL, no fsync of its own).
    let daemon = Daemon::new(config.clone(), store, dir.path().join("kauthd.toml"));
    let local = Origin::local(0);
    let account = daemon
        .store()
        .account("bench")
        .expect("load")
        .expect("exists");
    let wrong = Secret::from("000000");
    report(
        "full check of a wrong code (verify + failure commit, no fsync)",
        bench(ITER, |_| {
            let outcome = code_check::check(&daemon, "bench", Some(&account), local, None, &wrong)
                .expect("check");
            assert!(matches!(outcome, CodeOutcome::Rejected(_)), "{outcome:?}");
        }),
    );

    // 4. A recovery code: one argon2id run, then the spend commit.
    let mut next = 0;
    report(
        "recovery code check (1 argon2id run + spend commit), 10 runs",
        bench(10, |_| {
            let outcome = code_check::check(
                &daemon,
                "bench",
                Some(&account),
                local,
                Some("bench"),
                &codes[next],
            )
            .expect("check");
            next += 1;
            assert!(matches!(outcome, CodeOutcome::Accepted(_)));
        }),
    );
}

const ITER: usize = 2_000;

fn bench(iterations: usize, mut f: impl FnMut(usize)) -> Vec<Duration> {
    for i in 0..iterations.min(50) {
        if iterations > 50 {
            f(i); // warm up
        }
    }
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        f(i);
        times.push(start.elapsed());
    }
    times.sort();
    times
}

fn report(name: &str, times: Vec<Duration>) {
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{name}\n    median {:>10.2?}   p90 {:>10.2?}   p99 {:>10.2?}   min {:>10.2?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        times[0]
    );
}
