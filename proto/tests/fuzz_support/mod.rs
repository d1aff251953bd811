//! One place for how the property-based fuzz tests run, shared by
//! `proto/tests/fuzz_frames.rs` and `kauthd/tests/fuzz_parsers.rs`.
//!
//! - `KAUTH_FUZZ_CASES`: cases per property (default [`DEFAULT_CASES`],
//!   small enough for CI; `scripts/fuzz` runs 1,000,000 in release mode).
//! - `KAUTH_FUZZ_SEED`: the random seed (default [`DEFAULT_SEED`], so CI
//!   runs the same cases every time). A failure prints the seed and the
//!   smallest failing input; run again with that seed to reproduce it.
//!
//! No failure-persistence files are written.
//!
//! A failing property must stop the test, so this panics (test code).
#![allow(clippy::panic)]

use std::fmt::Debug;
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestError, TestRunner};

pub const DEFAULT_CASES: u32 = 2_000;
pub const DEFAULT_SEED: u64 = 0x6b61_7574_6864;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => match text.trim().replace('_', "").parse() {
            Ok(n) => n,
            Err(_) => panic!("{name}={text:?} is not a whole number; unset it or give one"),
        },
        Err(_) => default,
    }
}

/// Runs `test` on `KAUTH_FUZZ_CASES` values from `strategy`; panics with
/// the seed and the smallest failing input if one fails (or panics).
pub fn check<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_number("KAUTH_FUZZ_CASES", u64::from(DEFAULT_CASES));
    let cases = u32::try_from(cases).unwrap_or(u32::MAX);
    let seed = env_number("KAUTH_FUZZ_SEED", DEFAULT_SEED);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    match TestRunner::new(config).run(&strategy, test) {
        Ok(()) => eprintln!(
            "fuzz: {name}: {cases} cases passed, 0 failures, in {:.1} s (seed {seed})",
            started.elapsed().as_secs_f64()
        ),
        Err(TestError::Fail(why, input)) => panic!(
            "fuzz: {name}: FAILED with seed {seed} (rerun with KAUTH_FUZZ_SEED={seed}): \
             {why}\nsmallest failing input: {input:#?}"
        ),
        Err(TestError::Abort(why)) => panic!("fuzz: {name}: aborted (seed {seed}): {why}"),
    }
}
