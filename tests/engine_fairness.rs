//! argon2 stays fair under a flood, against the real kauthd over the real
//! protocol, with codes from oathtool:
//!
//! - thousands of concurrent bad passwords from one host do not delay
//!   another host's password + code logins (argon2 runs are served
//!   round-robin by remote host, not first come first served);
//! - once a host is locked, the attempts it had queued answer "locked"
//!   without an argon2 run: a burst of 500 costs about `max_failures`
//!   runs, not 500.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kauth_proto::{Client, LoginMode, Outcome, Request, Response, Secret};
use kauth_tests::daemon::{running_as_root, TestDaemon};
use kauth_tests::login::{connect, converse, oathtool_at_step, step_with_margin};

const SERVICE: &str = "kauth-test";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "ochre-tundra-pivot-marmalade";
const FLOOD_HOST: &str = "203.0.113.66";
const OTHER_HOST: &str = "198.51.100.7";

/// Logins from the other host that must complete while the flood lasts,
/// for their p99 to say something.
const MIN_LOGINS_DURING_FLOOD: usize = 50;
/// Accounts for the other host's logins: each takes one code per time
/// step, so each login uses an account of its own.
const OTHER_ACCOUNTS: usize = 150;
/// The slowest of the other host's logins allowed at p99.
const P99_LIMIT: Duration = Duration::from_secs(1);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bad passwords in the flood: 2,000, more on a machine with many cores
/// (kauthd runs one argon2 per core), so that the flood outlasts many
/// logins of the other host.
fn flood_size() -> usize {
    2000.max(250 * cores())
}

/// A root connection that waits as long as a deep argon2 queue may take.
fn patient_client(daemon: &TestDaemon) -> Client {
    Client::connect(
        &daemon.socket,
        Duration::from_secs(300),
        &[0],
        "fairness test",
    )
    .expect("connect to kauthd")
}

fn begin(user: &str, rhost: &str, password: Option<&str>) -> Request {
    Request::Begin {
        user: user.to_owned(),
        service: SERVICE.to_owned(),
        rhost: Some(rhost.to_owned()),
        tty: None,
        ruser: None,
        mode: LoginMode::Password,
        authtok: password.map(Secret::from),
        enroll_at_login: false,
        resumable: false,
    }
}

fn call_ok(client: &mut Client, request: &Request) {
    let response = client.call(request).expect("request");
    assert!(
        matches!(response, Response::Done),
        "{request:?} answered {response:?}"
    );
}

/// Accounts `other-0`… with a password and 2FA on (one shared secret: the
/// replay guard is per account, so one code serves each account once).
fn add_enrolled_accounts(daemon: &TestDaemon, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("other-{i}")).collect();
    let mut client = patient_client(daemon);
    for name in &names {
        call_ok(
            &mut client,
            &Request::UserAdd {
                name: name.clone(),
                password: Some(Secret::from(PASSWORD)),
                uid: None,
            },
        );
        call_ok(
            &mut client,
            &Request::TwoFactorImport {
                user: name.clone(),
                secret: Secret::from(SECRET),
                algorithm: None,
                digits: None,
                period: None,
            },
        );
    }
    names
}

/// The value 99 % of `samples` do not exceed (zero when there are none).
fn p99(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * 99).div_ceil(100);
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// `count` connections (hello done) that send one wrong password each
/// from `host` all at once when the returned barrier is passed. Each
/// thread counts its answer in `answered` and returns how it ended.
fn prepare_burst(
    daemon: &TestDaemon,
    count: usize,
    host: &'static str,
    answered: &Arc<AtomicUsize>,
) -> (Arc<Barrier>, Vec<std::thread::JoinHandle<Option<Outcome>>>) {
    let go = Arc::new(Barrier::new(count + 1));
    let threads = (0..count)
        .map(|i| {
            let mut client = patient_client(daemon);
            let (go, answered) = (Arc::clone(&go), Arc::clone(answered));
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let request = begin(&format!("flood-{i}"), host, Some("wrong password"));
                    go.wait();
                    let mut response = client.call(&request);
                    // A lock is told in a text before `finished`.
                    while let Ok(Response::Message { .. }) = response {
                        response = client.call(&Request::Continue);
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    match response.expect("an answer to a bad password") {
                        Response::Finished { outcome } => Some(outcome),
                        // A wrong password is asked for its code too, so
                        // the answer does not tell it was wrong.
                        Response::Prompt { .. } => None,
                        other => panic!("unexpected answer to a bad password: {other:?}"),
                    }
                })
                .expect("start a flood thread")
        })
        .collect();
    (go, threads)
}

#[test]
#[ignore = "needs root"]
fn a_flood_of_bad_passwords_from_one_host_does_not_delay_another_hosts_logins() {
    assert!(running_as_root(), "this test adds accounts: run it as root");
    let flood = flood_size();
    // A cheap but real argon2 cost; no lock ends the flood; a connection
    // for every flood attempt.
    let daemon = TestDaemon::start(&format!(
        "max_connections = {}\nidle_timeout = 600\n\
         [password]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n\
         [ratelimit]\nmax_failures = 1000000\n",
        flood + 64
    ));
    let accounts = add_enrolled_accounts(&daemon, OTHER_ACCOUNTS);

    let answered = Arc::new(AtomicUsize::new(0));
    let (go, flood_threads) = prepare_burst(&daemon, flood, FLOOD_HOST, &answered);
    let step = step_with_margin(15);
    let code = oathtool_at_step(SECRET, step);
    go.wait();
    // Let the flood reach the argon2 queue before the first login.
    std::thread::sleep(Duration::from_millis(500));

    let mut during_flood = Vec::new();
    let mut flood_left_at_last_login = 0;
    for user in &accounts {
        if answered.load(Ordering::SeqCst) >= flood {
            break;
        }
        let start = Instant::now();
        let result = converse(
            &mut connect(&daemon.socket),
            begin(user, OTHER_HOST, None),
            &[PASSWORD, &code],
        );
        let took = start.elapsed();
        assert!(
            result.succeeded(),
            "{user}'s login during the flood failed: {result:?}\n{}",
            daemon.stderr()
        );
        let left = flood - answered.load(Ordering::SeqCst);
        if left > 0 {
            during_flood.push(took);
            flood_left_at_last_login = left;
        }
    }
    for thread in flood_threads {
        assert!(
            thread.join().is_ok(),
            "a flood connection got no proper answer"
        );
    }

    let p99 = p99(&during_flood);
    let slowest = during_flood.iter().max().copied().unwrap_or_default();
    println!(
        "{} logins from another host during a flood of {flood} bad passwords ({} cores): p99 {p99:?}, slowest {slowest:?}; {flood_left_at_last_login} flood attempts still unanswered after the last",
        during_flood.len(),
        cores(),
    );
    assert!(
        during_flood.len() >= MIN_LOGINS_DURING_FLOOD,
        "only {} logins from another host finished while the flood lasted (at least {MIN_LOGINS_DURING_FLOOD} needed); they took {during_flood:?}",
        during_flood.len()
    );
    assert!(
        p99 < P99_LIMIT,
        "another host's logins waited behind the flood: p99 {p99:?} (limit {P99_LIMIT:?}); they took {during_flood:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_burst_from_one_host_runs_argon2_only_until_the_host_is_locked() {
    assert!(
        running_as_root(),
        "this test runs login conversations: run it as root"
    );
    const BURST: usize = 500;
    const MAX_FAILURES: usize = 5;
    // An argon2 run costly enough that 500 of them would take many
    // seconds, and the default lock.
    let daemon = TestDaemon::start(&format!(
        "max_connections = {}\nidle_timeout = 600\n\
         [password]\nargon2_memory_kib = 32768\nargon2_iterations = 1\n\
         [ratelimit]\nmax_failures = {MAX_FAILURES}\n",
        BURST + 64
    ));
    let answered = Arc::new(AtomicUsize::new(0));
    let (go, threads) = prepare_burst(&daemon, BURST, FLOOD_HOST, &answered);
    let start = Instant::now();
    go.wait();
    let outcomes: Vec<Option<Outcome>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = start.elapsed();
    let locked = outcomes
        .iter()
        .filter(|o| **o == Some(Outcome::Locked))
        .count();
    // A checked wrong password is asked for its code (so the answer does
    // not tell it was wrong): one argon2 run each.
    let checked = outcomes.iter().filter(|o| o.is_none()).count();

    // The other host is not locked: the lock is the flooding host's.
    let response = patient_client(&daemon)
        .call(&begin("flood-0", OTHER_HOST, Some("wrong password")))
        .unwrap();
    assert!(
        !matches!(
            response,
            Response::Finished {
                outcome: Outcome::Locked
            }
        ),
        "another host is locked too: {response:?}"
    );

    let bound = MAX_FAILURES + cores() + 2;
    println!(
        "a burst of {BURST} bad passwords from one host: {checked} checked with argon2, {locked} answered locked, in {took:?} ({} cores)",
        cores()
    );
    assert!(
        checked >= MAX_FAILURES,
        "only {checked} wrong passwords were checked; the lock needs {MAX_FAILURES}"
    );
    assert!(
        checked <= bound,
        "{checked} of {BURST} queued attempts ran argon2 after the host was locked at {MAX_FAILURES} failures (at most {bound} expected)"
    );
    assert_eq!(
        locked + checked,
        BURST,
        "every attempt that was not checked must answer locked"
    );
}
