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

/// Frames larger than this are not looked into before a worker decodes
/// them: a login's first request is far smaller.
const PEEK_LIMIT: usize = 4096;

/// The `rhost` a request frame names (a login's `begin`, `account_check`
/// or `session_open`), read without decoding the request, so that the
/// request can wait for a worker in its remote host's turn.
pub fn named_rhost(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        rhost: Option<String>,
    }
    let body = frame.get(4..).filter(|body| body.len() <= PEEK_LIMIT)?;
    serde_json::from_slice::<Named>(body).ok()?.rhost
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(request: &Request) -> Vec<u8> {
        let mut frame = Vec::new();
        write_frame(&mut frame, request).unwrap();
        frame
    }

    #[test]
    fn a_login_frame_names_its_remote_host_without_being_decoded() {
        let begin = frame(&Request::SessionOpen {
            user: "ann".to_owned(),
            service: "sshd".to_owned(),
            rhost: Some("203.0.113.9".to_owned()),
            tty: None,
            client: None,
        });
        assert_eq!(named_rhost(&begin).as_deref(), Some("203.0.113.9"));
        assert_eq!(named_rhost(&frame(&Request::Status)), None);
        assert_eq!(named_rhost(b"\0\0\0\x05{\"rh"), None);
    }

    #[test]
    fn a_large_frame_is_not_looked_into() {
        let mut big = br#"{"type":"status","rhost":"203.0.113.9","pad":""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', PEEK_LIMIT));
        big.extend(br#""}"#);
        let mut frame = (big.len() as u32).to_be_bytes().to_vec();
        frame.extend(big);
        assert_eq!(named_rhost(&frame), None);
    }
}
