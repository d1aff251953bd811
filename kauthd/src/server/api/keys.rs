//! `kauthctl rekey`: replace the key that encrypts TOTP secrets. Root only.

use kauth_proto::{ErrorCode, Response};

use super::{error, root_only};
use crate::daemon::Daemon;
use crate::secrets::rekey;
use crate::secrets::secret_box::key_id_text;
use crate::server::access::Caller;

pub fn rekey(daemon: &Daemon, caller: &Caller) -> Response {
    if !caller.is_root() {
        return root_only(caller, "replace the key that encrypts TOTP secrets");
    }
    match rekey::rotate(daemon) {
        Ok(done) => Response::Rekeyed {
            key_id: key_id_text(done.key_id),
            secrets: done.secrets,
        },
        Err(e) => {
            log::error!("key rotation failed: {e}");
            error(
                ErrorCode::Internal,
                format!("the key was not replaced: {e}"),
            )
        }
    }
}
