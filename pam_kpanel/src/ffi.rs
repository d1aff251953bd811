//! The libpam functions and constants pam-bindings does not provide. All
//! raw declarations live here; `libpam.rs` wraps them.

use std::os::raw::{c_char, c_int};

use pam::constants::PamFlag;
use pam::module::PamHandle;

/// Do not show informational texts (pam_sm_* flag).
pub const PAM_SILENT: PamFlag = 0x8000;
/// chauthtok: only check that a change is possible.
pub const PAM_PRELIM_CHECK: PamFlag = 0x4000;
/// chauthtok: change the token.
pub const PAM_UPDATE_AUTHTOK: PamFlag = 0x2000;

#[link(name = "pam")]
unsafe extern "C" {
    /// Linux-PAM's syslog with the module/service prefix, at LOG_AUTHPRIV.
    pub fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);

    /// Sets `NAME=value` in the PAM environment (the string is copied).
    pub fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;

    /// Reads a PAM environment variable; the result is owned by libpam.
    pub fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;

    /// PAM_USER, asking the application for it if unset; libpam owns the
    /// returned string.
    pub fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
}
