//! Writing an answer as a frame. An answer too large for one frame is
//! replaced by a `too_large` error frame and a log line: the client always
//! gets an answer it can read, never a silent close, and the connection
//! stays usable.

use std::io::Write;

use kauth_proto::{write_frame, ErrorCode, FrameError, Response, MAX_FRAME};

use crate::server::access::Caller;

/// Writes `response` to `out`, or — when it is over [`MAX_FRAME`] — the
/// error frame that says so.
pub fn write<W: Write>(
    out: &mut W,
    response: &Response,
    caller: &Caller,
) -> Result<(), FrameError> {
    match write_frame(out, response) {
        // `write_frame` refuses an oversize message before writing any of it.
        Err(FrameError::TooLarge(bytes)) => {
            let kind = kind(response);
            log::error!(
                "the {kind} answer to {} is {bytes} bytes, over the {MAX_FRAME}-byte frame limit; sent a too_large error instead",
                caller.describe()
            );
            write_frame(out, &too_large(kind, bytes))
        }
        other => other,
    }
}

/// The answer's `type`, for the log and the message.
fn kind(response: &Response) -> String {
    serde_json::to_value(response)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unnamed".to_owned())
}

fn too_large(kind: String, bytes: usize) -> Response {
    Response::Error {
        code: ErrorCode::TooLarge,
        message: format!(
            "kauthd's {kind} answer came to {bytes} bytes, over the {MAX_FRAME}-byte frame limit, so it was not sent; ask for less (a smaller `limit`, or page with `after`); kauthd's log has the details"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::access::Role;
    use kauth_proto::{read_frame, ActivityEvent};

    fn root() -> Caller {
        Caller {
            uid: 0,
            gid: 0,
            pid: 1,
            role: Role::Root,
            name: Some("root".to_owned()),
        }
    }

    fn events(n: usize) -> Response {
        let event = ActivityEvent {
            at: 1_795_460_000,
            user: Some("ann".to_owned()),
            event: "login_success".to_owned(),
            service: Some("sshd".to_owned()),
            rhost: Some("203.0.113.9".to_owned()),
            detail: "with a verification code".to_owned(),
            host: None,
        };
        Response::ActivityList {
            events: vec![event; n],
            next: None,
        }
    }

    #[test]
    fn an_oversize_answer_becomes_a_too_large_error_frame() {
        let mut out = Vec::new();
        write(&mut out, &events(2_000), &root()).unwrap();
        assert!(out.len() <= 4 + MAX_FRAME);
        match read_frame::<_, Response>(&mut out.as_slice()).unwrap() {
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::TooLarge);
                assert!(message.contains("activity_list"), "{message}");
                assert!(message.contains("frame limit"), "{message}");
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    #[test]
    fn an_answer_that_fits_is_written_as_it_is() {
        let mut out = Vec::new();
        write(&mut out, &events(3), &root()).unwrap();
        let back: Response = read_frame(&mut out.as_slice()).unwrap();
        assert!(matches!(back, Response::ActivityList { events, .. } if events.len() == 3));
    }
}
