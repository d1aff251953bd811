//! What one frame from a client gets as its answer: first the hello, then
//! requests, until the client leaves or sends something that cannot be
//! framed. The event loop (`event_loop.rs`) moves the bytes; a worker
//! (`workers.rs`) runs these.

use kauth_proto::{
    read_frame, write_frame, ErrorCode, FrameError, Request, Response, PROTOCOL_VERSION,
};
use zeroize::Zeroize;

use crate::daemon::Daemon;
use crate::server::access::Caller;
use crate::server::api::{self, ConnState};
use crate::server::client_fields;
use crate::server::response_frame;

/// An answer, and whether the connection goes on after it.
#[derive(Debug)]
pub struct Answer {
    pub response: Response,
    pub keep_open: bool,
}

/// The answer to the first frame, which must be a hello.
pub fn answer_hello(frame: &[u8]) -> Answer {
    let response = match read_frame::<_, Request>(&mut &frame[..]) {
        Ok(Request::Hello { version, client }) => {
            match client_fields::check("client", &client, client_fields::MAX_CLIENT) {
                Err(why) => error(ErrorCode::BadRequest, format!("hello refused: {why}")),
                Ok(()) if version == PROTOCOL_VERSION => {
                    return Answer {
                        response: Response::Welcome {
                            version: PROTOCOL_VERSION,
                            server: format!("kauthd {}", env!("CARGO_PKG_VERSION")),
                        },
                        keep_open: true,
                    };
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
        Err(why) => error(ErrorCode::BadRequest, format!("request refused: {why}")),
    };
    Answer {
        response,
        keep_open: false,
    }
}

/// The answer to a request after the hello. A frame that is not a valid
/// request gets an error and the connection goes on: its boundary is intact.
pub fn answer_request(daemon: &Daemon, state: &mut ConnState, frame: &[u8]) -> Answer {
    let response = match read_frame::<_, Request>(&mut &frame[..]) {
        Ok(request) => api::handle(daemon, state, request),
        Err(FrameError::TooLarge(n)) => {
            return Answer {
                response: too_large(n),
                keep_open: false,
            }
        }
        Err(why) => error(ErrorCode::BadRequest, format!("request refused: {why}")),
    };
    Answer {
        response,
        keep_open: true,
    }
}

/// The answer as a frame. One too large to send becomes a `too_large`
/// error frame (see `response_frame`); one that cannot be encoded at all
/// becomes an internal error, never a silent close.
pub fn encode(response: &Response, caller: &Caller) -> Vec<u8> {
    let mut frame = Vec::new();
    match response_frame::write(&mut frame, response, caller) {
        Ok(()) => frame,
        Err(e) => {
            frame.zeroize();
            log::error!(
                "an answer to {} could not be encoded ({e}); it got an error instead",
                caller.describe()
            );
            let mut frame = Vec::new();
            let refusal = error(
                ErrorCode::Internal,
                "kauthd could not encode this answer; see kauthd's log".to_owned(),
            );
            // A short fixed message always fits.
            let _ = write_frame(&mut frame, &refusal);
            frame
        }
    }
}

pub fn error(code: ErrorCode, message: String) -> Response {
    Response::Error { code, message }
}

pub fn too_large(n: usize) -> Response {
    error(
        ErrorCode::TooLarge,
        format!(
            "a frame of {n} bytes is over the {}-byte limit; closing the connection",
            kauth_proto::MAX_FRAME
        ),
    )
}
