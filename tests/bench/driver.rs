//! Drives logins through the real libpam in this process
//! (`pam_start_confdir`, `pam_authenticate`, `pam_end`), sequentially or
//! from many threads at once, and times them.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use kauth_tests::pam_ffi::{
    code_name, conversation, pam_authenticate, pam_end, start, ConvMode, ConvState, PAM_AUTH_ERR,
    PAM_SUCCESS,
};

use crate::totp::{self, Secret};

/// One PAM service to log in through and the users it knows.
pub struct Target {
    confdir: CString,
    service: CString,
    /// User `i` is `{prefix}{i}`, with secret `secrets[i]`.
    prefix: &'static str,
    secrets: Vec<Secret>,
    /// Answered before the code when set (a password-then-code stack).
    password: Option<String>,
    /// The latest time step a valid code was spent in, so a later run
    /// does not replay one (both kauthd and google-authenticator refuse a
    /// second login of a user within one step).
    last_spent_step: AtomicU64,
}

/// What to answer at the code prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Valid,
    Wrong,
    /// Nothing is asked (pam_permit).
    None,
}

impl Target {
    pub fn new(
        confdir: &std::path::Path,
        service: &str,
        prefix: &'static str,
        secrets: Vec<Secret>,
        password: Option<String>,
    ) -> Target {
        Target {
            confdir: CString::new(confdir.as_os_str().as_encoded_bytes()).expect("confdir path"),
            service: CString::new(service).expect("service name"),
            prefix,
            secrets,
            password,
            last_spent_step: AtomicU64::new(0),
        }
    }

    pub fn user_name(&self, user: usize) -> String {
        format!("{}{user}", self.prefix)
    }

    /// Waits, if needed, for a time step in which no valid code of this
    /// target was spent yet.
    pub fn wait_for_fresh_step(&self) {
        let spent = self.last_spent_step.load(Ordering::SeqCst);
        while totp::current_step() <= spent {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One login of `user`; returns libpam's result and how long
    /// `pam_start_confdir` to `pam_end` took. The answers are prepared
    /// before the clock starts.
    pub fn login(&self, user: usize, answer: Answer) -> (c_int, Duration) {
        let step = totp::current_step();
        let mut answers = Vec::with_capacity(2);
        if let Some(password) = &self.password {
            answers.push(password.clone());
        }
        match answer {
            Answer::Valid => answers.push(totp::valid_code(&self.secrets[user], step)),
            Answer::Wrong => answers.push(totp::wrong_code(&self.secrets[user], step)),
            Answer::None => {}
        }
        let user_name = CString::new(self.user_name(user)).expect("user name");
        let started = Instant::now();
        let rc = authenticate(self, &user_name, answers);
        let elapsed = started.elapsed();
        if answer == Answer::Valid {
            self.last_spent_step.fetch_max(step, Ordering::SeqCst);
        }
        (rc, elapsed)
    }
}

/// `pam_start_confdir`, `pam_authenticate`, `pam_end`, answering prompts
/// from `answers`. Failure delays requested by modules are not applied.
fn authenticate(target: &Target, user: &CString, answers: Vec<String>) -> c_int {
    let state = RefCell::new(ConvState {
        mode: ConvMode::Answer,
        answers: answers.into(),
        prompts: Vec::new(),
        infos: Vec::new(),
        errors: Vec::new(),
    });
    let conv = conversation(&state);
    let pamh = match start(&target.confdir, &target.service, user, &conv) {
        Ok(pamh) => pamh,
        Err(rc) => return rc,
    };
    // SAFETY: `pamh` is live; the conversation's appdata (`state`) is not
    // borrowed during the call.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: `pamh` is live and not used after this.
    unsafe { pam_end(pamh, rc) };
    rc
}

/// Per-login times of a sequential run.
#[derive(Debug, Default)]
pub struct Samples {
    times: Vec<Duration>,
    /// Logins whose result was not the expected one, by result.
    unexpected: Vec<String>,
}

impl Samples {
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// "" when every login ended as expected, else a summary.
    pub fn problems(&self) -> String {
        summarize(&self.unexpected, self.times.len())
    }

    /// These samples and `other`'s together.
    pub fn joined(mut self, other: Samples) -> Samples {
        self.times.extend(other.times);
        self.unexpected.extend(other.unexpected);
        self
    }
}

fn summarize(unexpected: &[String], total: usize) -> String {
    if unexpected.is_empty() {
        return String::new();
    }
    let mut names: Vec<&String> = unexpected.iter().collect();
    names.sort();
    names.dedup();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    format!(
        "{} of {total} logins ended otherwise than expected ({})",
        unexpected.len(),
        names.join(", ")
    )
}

fn expected(answer: Answer) -> c_int {
    match answer {
        Answer::Valid | Answer::None => PAM_SUCCESS,
        Answer::Wrong => PAM_AUTH_ERR,
    }
}

/// Logs each target's users in once, interleaved (the first user of each
/// target, then the second…), so that the load of a shared machine falls
/// on all targets alike. The user lists are of the same length.
pub fn sequential(runs: &[(&Target, &[usize])], answer: Answer) -> Vec<Samples> {
    if answer == Answer::Valid {
        runs.iter().for_each(|(t, _)| t.wait_for_fresh_step());
    }
    let mut samples: Vec<Samples> = runs.iter().map(|_| Samples::default()).collect();
    let rounds = runs.iter().map(|(_, users)| users.len()).min().unwrap_or(0);
    for round in 0..rounds {
        for ((target, users), samples) in runs.iter().zip(samples.iter_mut()) {
            let (rc, elapsed) = target.login(users[round], answer);
            samples.times.push(elapsed);
            if rc != expected(answer) {
                samples.unexpected.push(code_name(rc));
            }
        }
    }
    samples
}

/// Throughput of a concurrent run.
#[derive(Debug)]
pub struct Throughput {
    pub logins: usize,
    pub elapsed: Duration,
    unexpected: Vec<String>,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.logins as f64 / self.elapsed.as_secs_f64()
    }

    pub fn problems(&self) -> String {
        summarize(&self.unexpected, self.logins)
    }
}

/// Logs each of `users` in once, from `clients` threads at once, each
/// taking the next user; timed from the moment all threads start until the
/// last login ends.
pub fn concurrent(target: &Target, users: &[usize], answer: Answer, clients: usize) -> Throughput {
    concurrent_spread(&[target], users, answer, clients)
}

/// Like [`concurrent`], over several targets that know the same users (the
/// hosts of a fleet): the `i`-th login goes to target `i % targets.len()`.
pub fn concurrent_spread(
    targets: &[&Target],
    users: &[usize],
    answer: Answer,
    clients: usize,
) -> Throughput {
    if answer == Answer::Valid {
        targets.iter().for_each(|t| t.wait_for_fresh_step());
    }
    let next = AtomicUsize::new(0);
    let start = Barrier::new(clients + 1);
    let unexpected = std::sync::Mutex::new(Vec::new());
    let mut started = None;
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                start.wait();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&user) = users.get(i) else { break };
                    let target = targets[i % targets.len()];
                    let (rc, _) = target.login(user, answer);
                    if rc != expected(answer) {
                        unexpected.lock().expect("lock").push(code_name(rc));
                    }
                }
            });
        }
        start.wait();
        started = Some(Instant::now());
        // The scope joins every client before returning.
    });
    Throughput {
        logins: users.len(),
        elapsed: started.map(|s| s.elapsed()).unwrap_or_default(),
        unexpected: unexpected.into_inner().expect("lock"),
    }
}

/// Prints whether every login of each run (named) ended as expected;
/// returns true if so. `problems` pairs a run's name with what went wrong
/// in it (empty when nothing did).
pub fn report_problems<'a>(problems: impl IntoIterator<Item = (&'a str, String)>) -> bool {
    let problems: Vec<String> = problems
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(what, p)| format!("{what}: {p}"))
        .collect();
    if problems.is_empty() {
        println!("every login ended as expected");
    } else {
        println!("UNEXPECTED RESULTS (the figures above are not valid):");
        problems.iter().for_each(|p| println!("  {p}"));
    }
    problems.is_empty()
}
