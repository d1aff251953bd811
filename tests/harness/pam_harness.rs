//! kauth-pam-harness: a PAM application for tests. It drives the real
//! libpam with its own configuration directory (`pam_start_confdir`,
//! Linux-PAM 1.4 or later) and answers prompts from the command line, then
//! prints one JSON object saying what each step returned and what the
//! modules showed.
//!
//! ```text
//! kauth-pam-harness --confdir DIR --service NAME (--user NAME | --user-hex HEX)
//!     [--op auth|account|open|close|chauthtok|login]...   (default: auth)
//!     [--answer TEXT]...  [--conv-null | --conv-fail]
//!     [--rhost HOST] [--tty TTY] [--ruser USER] [--authtok TEXT] [--env NAME=VALUE]...
//! ```
//!
//! Answers are given in order to the echo-off and echo-on prompts; when
//! they run out, the conversation fails (like a user pressing Ctrl-D).
//! `--conv-null` makes the conversation return PAM_SUCCESS with no response
//! array, `--conv-fail` return PAM_CONV_ERR. Steps run in order and stop at
//! the first failure (`login` is auth, account, open, close). Exit status: 0
//! when every step returned PAM_SUCCESS, 1 otherwise, 2 for a usage error.
//!
//! Output: `{"auth": "PAM_SUCCESS", ..., "prompts": [...], "infos": [...],
//! "errors": [...], "session_id": "..." | null}`. `--authtok` also adds
//! `"set_authtok"`: Linux-PAM lets only modules set PAM_AUTHTOK, so from an
//! application this normally reports PAM_BAD_ITEM; tests that need
//! PAM_AUTHTOK stack a module that sets it in front of pam_kpanel.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::process::ExitCode;

use kauth_tests::pam_ffi::{
    code_name, conversation, pam_acct_mgmt, pam_authenticate, pam_chauthtok, pam_close_session,
    pam_end, pam_getenv, pam_open_session, pam_putenv, pam_set_item, start, ConvMode, ConvState,
    PamHandle, PAM_AUTHTOK, PAM_RHOST, PAM_RUSER, PAM_SUCCESS, PAM_TTY,
};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Auth,
    Account,
    Open,
    Close,
    Chauthtok,
}

impl Op {
    fn key(self) -> &'static str {
        match self {
            Op::Auth => "auth",
            Op::Account => "account",
            Op::Open => "open_session",
            Op::Close => "close_session",
            Op::Chauthtok => "chauthtok",
        }
    }
}

#[derive(Debug, Default)]
struct Config {
    confdir: Option<CString>,
    service: Option<CString>,
    user: Option<CString>,
    ops: Vec<Op>,
    answers: VecDeque<String>,
    conv: Option<ConvMode>,
    rhost: Option<CString>,
    tty: Option<CString>,
    ruser: Option<CString>,
    authtok: Option<CString>,
    env: Vec<CString>,
}

fn main() -> ExitCode {
    // Like most C PAM applications, leave SIGPIPE at its default (the Rust
    // runtime ignores it), so a module that writes to a closed socket
    // without MSG_NOSIGNAL kills this process and the test sees it.
    // SAFETY: called first thing, before any other thread exists; SIG_DFL
    // is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("kauth-pam-harness: {why}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok((output, all_ok)) => {
            println!("{output}");
            if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(why) => {
            eprintln!("kauth-pam-harness: {why}");
            ExitCode::from(2)
        }
    }
}

fn cstring(what: &str, value: impl Into<Vec<u8>>) -> Result<CString, String> {
    CString::new(value).map_err(|_| format!("{what} contains a NUL byte"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut c = Config::default();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--confdir" => c.confdir = Some(cstring("--confdir", value("--confdir")?)?),
            "--service" => c.service = Some(cstring("--service", value("--service")?)?),
            "--user" => c.user = Some(cstring("--user", value("--user")?)?),
            "--user-hex" => {
                c.user = Some(cstring("--user-hex", decode_hex(&value("--user-hex")?)?)?)
            }
            "--answer" => c.answers.push_back(value("--answer")?),
            "--conv-null" => c.conv = Some(ConvMode::Null),
            "--conv-fail" => c.conv = Some(ConvMode::Fail),
            "--rhost" => c.rhost = Some(cstring("--rhost", value("--rhost")?)?),
            "--tty" => c.tty = Some(cstring("--tty", value("--tty")?)?),
            "--ruser" => c.ruser = Some(cstring("--ruser", value("--ruser")?)?),
            "--authtok" => c.authtok = Some(cstring("--authtok", value("--authtok")?)?),
            "--env" => c.env.push(cstring("--env", value("--env")?)?),
            "--op" => match value("--op")?.as_str() {
                "auth" => c.ops.push(Op::Auth),
                "account" => c.ops.push(Op::Account),
                "open" => c.ops.push(Op::Open),
                "close" => c.ops.push(Op::Close),
                "chauthtok" => c.ops.push(Op::Chauthtok),
                "login" => c.ops.extend([Op::Auth, Op::Account, Op::Open, Op::Close]),
                other => return Err(format!("unknown --op {other}")),
            },
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if c.confdir.is_none() || c.service.is_none() || c.user.is_none() {
        return Err("--confdir, --service and --user (or --user-hex) are required".into());
    }
    if c.ops.is_empty() {
        c.ops.push(Op::Auth);
    }
    Ok(c)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("--user-hex needs an even number of hex digits".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn run(mut config: Config) -> Result<(Value, bool), String> {
    let state = RefCell::new(ConvState {
        mode: config.conv.unwrap_or(ConvMode::Answer),
        answers: std::mem::take(&mut config.answers),
        prompts: Vec::new(),
        infos: Vec::new(),
        errors: Vec::new(),
    });
    let conv = conversation(&state);
    let (Some(service), Some(user), Some(confdir)) =
        (&config.service, &config.user, &config.confdir)
    else {
        return Err("missing required arguments".into());
    };
    let mut out = Map::new();
    let pamh = match start(confdir, service, user, &conv) {
        Ok(pamh) => pamh,
        Err(rc) => {
            out.insert("start".into(), json!(code_name(rc)));
            return Ok((Value::Object(out), false));
        }
    };
    for (item, value) in [
        (PAM_RHOST, &config.rhost),
        (PAM_TTY, &config.tty),
        (PAM_RUSER, &config.ruser),
    ] {
        if let Some(value) = value {
            // SAFETY: `pamh` is live; string items are copied by libpam.
            unsafe { pam_set_item(pamh, item, value.as_ptr().cast()) };
        }
    }
    if let Some(authtok) = &config.authtok {
        // SAFETY: as above; libpam refuses this item from applications
        // (PAM_BAD_ITEM) and we report what it said.
        let rc = unsafe { pam_set_item(pamh, PAM_AUTHTOK, authtok.as_ptr().cast()) };
        out.insert("set_authtok".into(), json!(code_name(rc)));
    }
    for pair in &config.env {
        // SAFETY: `pamh` is live; `pair` is NUL-terminated and copied.
        unsafe { pam_putenv(pamh, pair.as_ptr()) };
    }

    let mut all_ok = true;
    let mut last = PAM_SUCCESS;
    let mut session_id = Value::Null;
    for op in &config.ops {
        // SAFETY: `pamh` is the live handle from pam_start_confdir; the
        // conversation's appdata (`state`) is not borrowed during the call.
        let rc = unsafe {
            match op {
                Op::Auth => pam_authenticate(pamh, 0),
                Op::Account => pam_acct_mgmt(pamh, 0),
                Op::Open => pam_open_session(pamh, 0),
                Op::Close => pam_close_session(pamh, 0),
                Op::Chauthtok => pam_chauthtok(pamh, 0),
            }
        };
        out.insert(op.key().into(), json!(code_name(rc)));
        if *op == Op::Open && rc == PAM_SUCCESS {
            session_id = env_value(pamh, c"KAUTH_SESSION_ID");
        }
        last = rc;
        if rc != PAM_SUCCESS {
            all_ok = false;
            break;
        }
    }
    // SAFETY: `pamh` is live and not used after this.
    unsafe { pam_end(pamh, last) };

    let state = state.into_inner();
    out.insert("prompts".into(), json!(state.prompts));
    out.insert("infos".into(), json!(state.infos));
    out.insert("errors".into(), json!(state.errors));
    out.insert("session_id".into(), session_id);
    Ok((Value::Object(out), all_ok))
}

fn env_value(pamh: *mut PamHandle, name: &CStr) -> Value {
    // SAFETY: `pamh` is live and `name` NUL-terminated.
    let value = unsafe { pam_getenv(pamh, name.as_ptr()) };
    if value.is_null() {
        return Value::Null;
    }
    // SAFETY: a non-NULL result is a NUL-terminated string owned by libpam,
    // valid until the environment changes; copied out at once.
    let value = unsafe { CStr::from_ptr(value) };
    json!(value.to_string_lossy())
}
