//! Login conversations over the real protocol, as a PAM module or a panel
//! would run them, and codes computed by Debian's oathtool.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kauth_proto::{Client, LoginMode, Outcome, Request, Response, Secret};

/// What a conversation showed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResult {
    pub prompts: Vec<String>,
    pub messages: Vec<String>,
    /// `None` when the daemon answered with an error instead.
    pub outcome: Option<Outcome>,
}

impl LoginResult {
    pub fn succeeded(&self) -> bool {
        self.outcome == Some(Outcome::Success)
    }
}

pub fn connect(socket: &Path) -> Client {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    Client::connect(socket, Duration::from_secs(20), &[0, me], "test").expect("connect to kauthd")
}

/// Runs a conversation, answering prompts in order from `answers`.
pub fn converse(client: &mut Client, begin: Request, answers: &[&str]) -> LoginResult {
    let mut result = LoginResult {
        prompts: Vec::new(),
        messages: Vec::new(),
        outcome: None,
    };
    let mut answers = answers.iter();
    let mut response = client.call(&begin).expect("begin");
    for _ in 0..16 {
        response = match response {
            Response::Prompt { message, .. } => {
                result.prompts.push(message);
                let text = answers.next().copied().unwrap_or("");
                client
                    .call(&Request::Answer {
                        text: Secret::from(text),
                    })
                    .expect("answer")
            }
            Response::Message { text, .. } => {
                result.messages.push(text);
                client.call(&Request::Continue).expect("continue")
            }
            Response::Finished { outcome } => {
                result.outcome = Some(outcome);
                return result;
            }
            Response::Error { message, .. } => {
                result.messages.push(message);
                return result;
            }
            other => panic!("unexpected step {other:?}"),
        };
    }
    panic!("conversation did not finish");
}

/// The `begin` of a login of `user` on the test service.
pub fn begin(user: &str, mode: LoginMode, rhost: Option<&str>) -> Request {
    Request::Begin {
        user: user.to_owned(),
        service: "kauth-test".to_owned(),
        rhost: rhost.map(str::to_owned),
        tty: None,
        ruser: None,
        mode,
        authtok: None,
        enroll_at_login: false,
        resumable: false,
    }
}

/// A code-only login (the first factor checked elsewhere).
pub fn login_code(socket: &Path, user: &str, code: &str) -> LoginResult {
    converse(
        &mut connect(socket),
        begin(user, LoginMode::OtpOnly, None),
        &[code],
    )
}

/// A code-only login from a remote host.
pub fn login_code_from(socket: &Path, user: &str, code: &str, rhost: &str) -> LoginResult {
    converse(
        &mut connect(socket),
        begin(user, LoginMode::OtpOnly, Some(rhost)),
        &[code],
    )
}

/// A password-then-code login.
pub fn login_password(socket: &Path, user: &str, password: &str, code: &str) -> LoginResult {
    converse(
        &mut connect(socket),
        begin(user, LoginMode::Password, None),
        &[password, code],
    )
}

/// Whether kauthd holds session `id` valid (`session_check`).
pub fn session_valid(client: &mut Client, id: &str) -> bool {
    match client
        .call(&Request::SessionCheck { id: id.to_owned() })
        .expect("session_check")
    {
        Response::SessionValidity { valid, .. } => valid,
        other => panic!("session_check: {other:?}"),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The code for time step `counter` (30 s steps, SHA1, 6 digits) by oathtool.
pub fn oathtool_at_step(secret: &str, counter: u64) -> String {
    oathtool(secret, &["--totp"], counter * 30)
}

/// oathtool with extra arguments at a given Unix time.
pub fn oathtool(secret: &str, args: &[&str], unix_time: u64) -> String {
    let out = Command::new("oathtool")
        .args(args)
        .args(["-b", "-N", &format!("@{unix_time}"), secret])
        .env("TZ", "UTC")
        .output()
        .expect("oathtool is missing: install Debian's oathtool (tests/debian-packages)");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The current 30-second time step, after waiting (if needed) until at
/// least `margin` seconds of it are left, so a test is not cut by a step
/// change.
/// A 6-digit code that matches none of the steps within `steps` of
/// `step` for `secret`: plainly wrong, not a code for a clock that is off.
pub fn wrong_code_near(secret: &str, step: u64, steps: u64) -> String {
    let near: Vec<String> = (step - steps..=step + steps)
        .map(|s| oathtool_at_step(secret, s))
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !near.contains(c))
        .expect("a code outside the window")
}

pub fn step_with_margin(margin: u64) -> u64 {
    loop {
        let t = now();
        if 30 - t % 30 > margin {
            return t / 30;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The `recovery_codes` list of a kauthctl `--json` answer.
pub fn recovery_codes(doc: &serde_json::Value) -> Vec<String> {
    doc["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery_codes in {doc}"))
        .iter()
        .map(|c| c.as_str().expect("a recovery code is a string").to_owned())
        .collect()
}
