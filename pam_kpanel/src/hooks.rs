//! The C entry points: pam-bindings' `pam_hooks!` generates the six
//! `pam_sm_*` functions (each inside `catch_unwind`) and calls these, which
//! only wrap the handle and hand over to the logic.

use std::ffi::CStr;

use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};

use crate::libpam::LibPam;
use crate::{account, auth, password, session};

pub struct KPanel;

pam::pam_hooks!(KPanel);

impl PamHooks for KPanel {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        auth::authenticate(&mut LibPam::new(pamh), &args, flags)
    }

    /// Nothing to establish: kauthd holds no credentials for the session.
    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        account::account(&mut LibPam::new(pamh), &args, flags)
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        session::open_session(&mut LibPam::new(pamh), &args, flags)
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        session::close_session(&mut LibPam::new(pamh), &args, flags)
    }

    fn sm_chauthtok(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        password::chauthtok(&mut LibPam::new(pamh), &args, flags)
    }
}
