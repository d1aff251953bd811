//! The libpam application side, for programs that drive the real libpam
//! in-process: its constants and functions (Linux-PAM 1.4 or later, for
//! `pam_start_confdir`), and a conversation function that answers prompts
//! from a list and records what the modules showed. Used by the
//! `kauth-pam-harness` test application and the login benchmark.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

// Linux-PAM constants (security/_pam_types.h).
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;
pub const PAM_MAX_NUM_MSG: c_int = 32;
pub const PAM_TTY: c_int = 3;
pub const PAM_RHOST: c_int = 4;
pub const PAM_AUTHTOK: c_int = 6;
pub const PAM_RUSER: c_int = 8;
pub const PAM_FAIL_DELAY: c_int = 10;

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
pub struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    resp: *mut c_char,
    /// Unused by Linux-PAM; left zero.
    #[allow(dead_code)]
    resp_retcode: c_int,
}

pub type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;
pub type DelayFn = extern "C" fn(c_int, c_uint, *mut c_void);

#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

/// libpam's opaque handle.
#[repr(C)]
pub struct PamHandle {
    _opaque: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    pub fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    pub fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    pub fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    pub fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    pub fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    pub fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    pub fn pam_chauthtok(pamh: *mut PamHandle, flags: c_int) -> c_int;
    pub fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    pub fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvMode {
    Answer,
    Null,
    Fail,
}

/// What the conversation function works from and records.
#[derive(Debug)]
pub struct ConvState {
    pub mode: ConvMode,
    pub answers: VecDeque<String>,
    pub prompts: Vec<String>,
    pub infos: Vec<String>,
    pub errors: Vec<String>,
}

/// `pam_start_confdir` of `service` for `user` with the PAM configuration
/// in `confdir`, then turns off the failure delays modules ask for (they
/// are the application's to apply, and tests and the benchmark apply none).
/// `conv` and what it points to must outlive the handle; end it with
/// `pam_end`. On failure, libpam's result.
pub fn start(
    confdir: &CStr,
    service: &CStr,
    user: &CStr,
    conv: &PamConv,
) -> Result<*mut PamHandle, c_int> {
    let mut pamh: *mut PamHandle = ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the call; the
    // caller keeps `conv` alive for the handle's life; `pamh` is a valid
    // out-pointer.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS || pamh.is_null() {
        return Err(rc);
    }
    let delay: DelayFn = no_delay;
    // SAFETY: `pamh` is the live handle; PAM_FAIL_DELAY takes a function
    // pointer of the delay-callback type, which `delay` is.
    unsafe { pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void) };
    Ok(pamh)
}

pub fn code_name(code: c_int) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .map_or_else(|| format!("PAM_UNKNOWN({code})"), |n| (*n).to_owned())
}

extern "C" fn no_delay(_retval: c_int, _usec: c_uint, _appdata: *mut c_void) {}

/// The conversation to give `pam_start_confdir`: it answers prompts from
/// `state` and records in it what the modules showed. `state` must outlive
/// the PAM handle.
pub fn conversation(state: &RefCell<ConvState>) -> PamConv {
    PamConv {
        conv: Some(converse),
        appdata_ptr: (state as *const RefCell<ConvState>).cast_mut().cast(),
    }
}

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
/// `appdata` be NULL or point to the `RefCell<ConvState>` given to
/// `pam_start_confdir`.
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
