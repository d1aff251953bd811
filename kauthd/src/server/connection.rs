//! One client connection: hello, then request/response frames until the
//! client leaves, idles out, or sends something that cannot be framed.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use kauth_proto::peer::peer_cred;
use kauth_proto::{
    read_frame, write_frame, ErrorCode, FrameError, Request, Response, PROTOCOL_VERSION,
};

use crate::daemon::Daemon;
use crate::server::access;
use crate::server::api::{self, ConnState};
use crate::server::client_fields;
use crate::server::response_frame;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn serve(daemon: Arc<Daemon>, mut stream: UnixStream) {
    let cred = match peer_cred(&stream) {
        Ok(cred) => cred,
        Err(e) => {
            log::warn!("refusing a connection whose credentials cannot be read: {e}");
            return;
        }
    };
    let config = daemon.config();
    let idle = Duration::from_secs(config.daemon.idle_timeout);
    if stream.set_read_timeout(Some(idle)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let caller = access::classify(cred, &config);
    drop(config);

    if !hello(&mut stream) {
        return;
    }
    let mut state = ConnState::new(caller);
    loop {
        let response = match read_frame::<_, Request>(&mut stream) {
            Ok(request) => api::handle(&daemon, &mut state, request),
            Err(FrameError::Closed) => return,
            Err(FrameError::Malformed(why)) => {
                // The frame boundary is intact, so the connection can go on.
                error(ErrorCode::BadRequest, format!("request refused: {why}"))
            }
            Err(FrameError::TooLarge(n)) => {
                let _ = write_frame(&mut stream, &too_large(n));
                return;
            }
            Err(FrameError::Io(e)) => {
                if is_timeout(&e) {
                    log::debug!(
                        "closing an idle connection from {}",
                        state.caller.describe()
                    );
                }
                return;
            }
            Err(_) => return,
        };
        if response_frame::write(&mut stream, &response, &state.caller).is_err() {
            return;
        }
    }
}

/// Reads the client's hello and answers it; false ends the connection.
fn hello(stream: &mut UnixStream) -> bool {
    let reply = match read_frame::<_, Request>(stream) {
        Ok(Request::Hello { version, client }) => {
            match client_fields::check("client", &client, client_fields::MAX_CLIENT) {
                Err(why) => error(ErrorCode::BadRequest, format!("hello refused: {why}")),
                Ok(()) if version == PROTOCOL_VERSION => {
                    let welcome = Response::Welcome {
                        version: PROTOCOL_VERSION,
                        server: format!("kauthd {}", env!("CARGO_PKG_VERSION")),
                    };
                    return write_frame(stream, &welcome).is_ok();
                }
                Ok(()) => error(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "this kauthd speaks protocol version {PROTOCOL_VERSION}, not {version}"
                    ),
                ),
            }
        }
        Ok(_) => error(
            ErrorCode::BadRequest,
            "the first message on a connection must be hello".to_owned(),
        ),
        Err(FrameError::TooLarge(n)) => too_large(n),
        Err(FrameError::Malformed(why)) => {
            error(ErrorCode::BadRequest, format!("request refused: {why}"))
        }
        Err(_) => return false,
    };
    let _ = write_frame(stream, &reply);
    false
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error { code, message }
}

fn too_large(n: usize) -> Response {
    error(
        ErrorCode::TooLarge,
        format!(
            "a frame of {n} bytes is over the {}-byte limit; closing the connection",
            kauth_proto::MAX_FRAME
        ),
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
