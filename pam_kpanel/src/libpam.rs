//! [`PamIo`] over a real libpam handle. Every unsafe call the module makes
//! into libpam is in this file or in pam-bindings.

use std::ffi::{CStr, CString};
use std::os::raw::c_int;
use std::ptr;

use pam::constants::{
    PamMessageStyle, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON,
    PAM_TEXT_INFO,
};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, RUser, Service, Tty};
use pam::module::PamHandle;
use zeroize::Zeroizing;

use crate::ffi;
use crate::pam_io::{Item, Level, PamIo, SecretBytes, Style};

/// The longest log line written; the rest is cut.
const MAX_LOG: usize = 1000;

/// The module's side of one libpam handle, for the duration of one hook.
pub struct LibPam<'a> {
    pamh: &'a mut PamHandle,
}

impl<'a> LibPam<'a> {
    pub fn new(pamh: &'a mut PamHandle) -> Self {
        LibPam { pamh }
    }
}

fn code(rc: c_int) -> PamResultCode {
    PamResultCode::try_from(rc).unwrap_or(PamResultCode::PAM_SYSTEM_ERR)
}

fn lossy(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

impl PamIo for LibPam<'_> {
    fn user(&mut self) -> Result<Vec<u8>, PamResultCode> {
        let mut user: *const std::os::raw::c_char = ptr::null();
        // SAFETY: `pamh` is the live handle libpam passed to this hook;
        // `user` is a valid out-pointer; a NULL prompt asks for libpam's
        // default prompt.
        let rc = unsafe { ffi::pam_get_user(self.pamh, &mut user, ptr::null()) };
        if rc != PamResultCode::PAM_SUCCESS as c_int {
            return Err(code(rc));
        }
        if user.is_null() {
            return Err(PamResultCode::PAM_SYSTEM_ERR);
        }
        // SAFETY: on success libpam returns a NUL-terminated string it owns,
        // valid until PAM_USER changes; we copy it out at once.
        let bytes = unsafe { CStr::from_ptr(user) }.to_bytes().to_vec();
        Ok(bytes)
    }

    fn item(&self, item: Item) -> Option<String> {
        let value = match item {
            Item::Service => self.pamh.get_item::<Service>().ok()?.map(|v| lossy(v.0)),
            Item::Rhost => self.pamh.get_item::<RHost>().ok()?.map(|v| lossy(v.0)),
            Item::Tty => self.pamh.get_item::<Tty>().ok()?.map(|v| lossy(v.0)),
            Item::Ruser => self.pamh.get_item::<RUser>().ok()?.map(|v| lossy(v.0)),
        };
        value.filter(|v| !v.is_empty())
    }

    fn authtok(&self) -> Option<SecretBytes> {
        let tok = self.pamh.get_item::<AuthTok>().ok()??;
        Some(Zeroizing::new(tok.as_bytes().to_vec()))
    }

    fn converse(&mut self, style: Style, text: &str) -> Result<Option<SecretBytes>, PamResultCode> {
        let conv = self
            .pamh
            .get_item::<Conv>()?
            .ok_or(PamResultCode::PAM_CONV_ERR)?;
        let style: PamMessageStyle = match style {
            Style::PromptEchoOff => PAM_PROMPT_ECHO_OFF,
            Style::PromptEchoOn => PAM_PROMPT_ECHO_ON,
            Style::Info => PAM_TEXT_INFO,
            Style::Error => PAM_ERROR_MSG,
        };
        // pam-bindings wipes and frees libpam's copy; ours is wiped on drop.
        let reply = conv.send(style, text)?;
        Ok(reply.map(|r| Zeroizing::new(r.as_bytes().to_vec())))
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), PamResultCode> {
        let pair =
            CString::new(format!("{name}={value}")).map_err(|_| PamResultCode::PAM_BUF_ERR)?;
        // SAFETY: `pamh` is the live handle; `pair` is a NUL-terminated
        // string that libpam copies before returning.
        let rc = unsafe { ffi::pam_putenv(self.pamh, pair.as_ptr()) };
        if rc == PamResultCode::PAM_SUCCESS as c_int {
            Ok(())
        } else {
            Err(code(rc))
        }
    }

    fn getenv(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        let pamh: *const PamHandle = &*self.pamh;
        // SAFETY: `pamh` is the live handle (pam_getenv does not modify it
        // despite its non-const prototype); `name` is NUL-terminated.
        let value = unsafe { ffi::pam_getenv(pamh.cast_mut(), name.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: a non-NULL result is a NUL-terminated string owned by
        // libpam, valid until the environment changes; copied out at once.
        let value = unsafe { CStr::from_ptr(value) };
        value.to_str().ok().map(str::to_owned)
    }

    fn log(&self, level: Level, text: &str) {
        let priority = match level {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        let line = sanitize(text);
        let Ok(line) = CString::new(line) else {
            return;
        };
        // SAFETY: `pamh` is the live handle; the format is the constant
        // "%s" and its one argument is a NUL-terminated string, so nothing
        // in `text` is interpreted as a format.
        unsafe { ffi::pam_syslog(&*self.pamh, priority, c"%s".as_ptr(), line.as_ptr()) };
    }
}

/// One printable line: control characters (including NUL and newlines,
/// which could forge log lines) become '?', and the length is capped.
fn sanitize(text: &str) -> String {
    text.chars()
        .take(MAX_LOG)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_one_printable_line() {
        assert_eq!(sanitize("a\nb\0c\x1b[31m"), "a?b?c?[31m");
        assert_eq!(sanitize(&"x".repeat(5000)).len(), MAX_LOG);
    }
}
