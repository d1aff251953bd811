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
use std::ffi::{c_void, CStr, CString};
use std::os::raw::{c_char, c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::ptr;

use serde_json::{json, Map, Value};

// Linux-PAM constants (security/_pam_types.h).
const PAM_SUCCESS: c_int = 0;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: c_int = 32;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_AUTHTOK: c_int = 6;
const PAM_RUSER: c_int = 8;
const PAM_FAIL_DELAY: c_int = 10;

const CODE_NAMES: [&str; 32] = [
    "PAM_SUCCESS",
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_PERM_DENIED",
    "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES",
    "PAM_NEW_AUTHTOK_REQD",
    "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR",
    "PAM_CRED_UNAVAIL",
    "PAM_CRED_EXPIRED",
    "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA",
    "PAM_CONV_ERR",
    "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR",
    "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING",
    "PAM_TRY_AGAIN",
    "PAM_IGNORE",
    "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED",
    "PAM_MODULE_UNKNOWN",
    "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN",
    "PAM_INCOMPLETE",
];

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    /// Unused by Linux-PAM; left zero.
    #[allow(dead_code)]
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;
type DelayFn = extern "C" fn(c_int, c_uint, *mut c_void);

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

/// libpam's opaque handle.
#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_chauthtok(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvMode {
    Answer,
    Null,
    Fail,
}

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

/// What the conversation function works from and records.
#[derive(Debug)]
struct ConvState {
    mode: ConvMode,
    answers: VecDeque<String>,
    prompts: Vec<String>,
    infos: Vec<String>,
    errors: Vec<String>,
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

fn code_name(code: c_int) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .map_or_else(|| format!("PAM_UNKNOWN({code})"), |n| (*n).to_owned())
}

fn run(mut config: Config) -> Result<(Value, bool), String> {
    let state = RefCell::new(ConvState {
        mode: config.conv.unwrap_or(ConvMode::Answer),
        answers: std::mem::take(&mut config.answers),
        prompts: Vec::new(),
        infos: Vec::new(),
        errors: Vec::new(),
    });
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: (&state as *const RefCell<ConvState>).cast_mut().cast(),
    };
    let (Some(service), Some(user), Some(confdir)) =
        (&config.service, &config.user, &config.confdir)
    else {
        return Err("missing required arguments".into());
    };
    let mut out = Map::new();
    let mut pamh: *mut PamHandle = ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the call; `conv`
    // and `state` (its appdata) live until after pam_end below; `pamh` is a
    // valid out-pointer.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS || pamh.is_null() {
        out.insert("start".into(), json!(code_name(rc)));
        return Ok((Value::Object(out), false));
    }

    // Failure delays requested by modules are ours to apply: apply none.
    let delay: DelayFn = no_delay;
    // SAFETY: `pamh` is the live handle; PAM_FAIL_DELAY takes a function
    // pointer of the delay-callback type, which `delay` is.
    unsafe { pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void) };
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

extern "C" fn no_delay(_retval: c_int, _usec: c_uint, _appdata: *mut c_void) {}

/// The conversation function libpam calls. Never unwinds into C.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libpam passes the arguments as documented in pam_conv(3)
        // and `appdata` is the pointer we gave pam_start_confdir; `converse_inner`
        // checks every pointer for NULL before use.
        unsafe { converse_inner(num_msg, msg, resp, appdata) }
    }))
    .unwrap_or(PAM_CONV_ERR)
}

/// # Safety
/// `msg` must point to `num_msg` message pointers, `resp` be writable, and
/// `appdata` be NULL or point to the `RefCell<ConvState>` set up in `run`.
unsafe fn converse_inner(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if msg.is_null()
        || resp.is_null()
        || appdata.is_null()
        || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg)
    {
        return PAM_CONV_ERR;
    }
    // SAFETY: the caller guarantees `appdata` points to our RefCell, which
    // lives until pam_end; we only take a shared reference.
    let state = unsafe { &*(appdata as *const RefCell<ConvState>) };
    let Ok(mut state) = state.try_borrow_mut() else {
        return PAM_CONV_ERR;
    };
    let count = num_msg as usize;
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `msg` points to `num_msg` pointers (Linux-PAM layout).
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: `m` is a valid pam_message for the duration of the call.
        let (style, text) = unsafe { ((*m).msg_style, (*m).msg) };
        let text = if text.is_null() {
            String::new()
        } else {
            // SAFETY: a non-NULL msg is a NUL-terminated string.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        messages.push((style, text));
    }
    for (style, text) in &messages {
        match *style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => state.prompts.push(text.clone()),
            PAM_TEXT_INFO => state.infos.push(text.clone()),
            PAM_ERROR_MSG => state.errors.push(text.clone()),
            _ => return PAM_CONV_ERR,
        }
    }
    match state.mode {
        ConvMode::Fail => return PAM_CONV_ERR,
        ConvMode::Null => {
            // SAFETY: `resp` is writable (checked non-NULL above).
            unsafe { *resp = ptr::null_mut() };
            return PAM_SUCCESS;
        }
        ConvMode::Answer => {}
    }
    // libpam frees the array and each answer with free(3): allocate with
    // calloc/malloc.
    // SAFETY: calloc with a small count and the element size; checked.
    let replies =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_CONV_ERR;
    }
    for (i, (style, _)) in messages.iter().enumerate() {
        if !matches!(*style, PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON) {
            continue;
        }
        let answer = state.answers.pop_front().map(|a| malloc_string(&a));
        match answer {
            Some(p) if !p.is_null() => {
                // SAFETY: `i < count` and `replies` holds `count` zeroed entries.
                unsafe { (*replies.add(i)).resp = p };
            }
            _ => {
                // SAFETY: frees what we allocated above, entry by entry.
                unsafe { free_replies(replies, count) };
                return PAM_CONV_ERR;
            }
        }
    }
    // SAFETY: `resp` is writable; libpam takes ownership of `replies`.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// A malloc'd NUL-terminated copy of `s` (NULL if allocation fails).
fn malloc_string(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    // SAFETY: malloc of len+1 bytes; checked for NULL before writing.
    let p = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
    if p.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `p` has room for len+1 bytes and does not overlap `bytes`.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        *p.add(bytes.len()) = 0;
    }
    p.cast()
}

/// # Safety
/// `replies` must be a calloc'd array of `count` responses whose non-NULL
/// `resp` fields were malloc'd.
unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: within the array; free(NULL) is a no-op.
        unsafe { libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: allocated with calloc.
    unsafe { libc::free(replies.cast()) };
}
