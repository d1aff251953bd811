//! Frames: a 4-byte big-endian length, then that many bytes of JSON.

use std::fmt;
use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroize;

/// The largest frame either side accepts (64 KiB of JSON).
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    Closed,
    /// The announced length is over [`MAX_FRAME`].
    TooLarge(usize),
    /// The frame is not valid JSON for the expected message.
    Malformed(String),
    /// Reading or writing failed (including a timeout or a frame cut short).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes is over the {MAX_FRAME}-byte limit")
            }
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Writes one message as a frame. A message whose JSON is over
/// [`MAX_FRAME`] is refused with [`FrameError::TooLarge`] before anything
/// is written, so the connection can still carry another frame.
pub fn write_frame<W: Write, T: Serialize>(out: &mut W, message: &T) -> Result<(), FrameError> {
    let mut body = serde_json::to_vec(message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let result = write_raw(out, &body);
    body.zeroize();
    result
}

fn write_raw<W: Write>(out: &mut W, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    let result = out.write_all(&frame).and_then(|()| out.flush());
    frame.zeroize();
    Ok(result?)
}

/// Reads one frame and decodes it. A length over [`MAX_FRAME`] is refused
/// before any of the body is read.
pub fn read_frame<R: Read, T: DeserializeOwned>(input: &mut R) -> Result<T, FrameError> {
    let mut body = read_raw(input)?;
    let decoded = serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(describe(&e)));
    body.zeroize();
    decoded
}

/// serde_json's messages can quote the input; keep only the position and
/// category so that a secret in a bad frame never reaches a log.
fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unknown or ill-typed message",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn read_raw<R: Read>(input: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len_bytes = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len_bytes[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Request;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Status).unwrap();
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert!(matches!(back, Request::Status));
    }

    #[test]
    fn oversized_length_is_refused_without_reading_the_body() {
        let buf = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let r: Result<Request, _> = read_frame(&mut buf.as_slice());
        assert!(matches!(r, Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn oversized_message_is_refused_before_anything_is_written() {
        let mut buf = Vec::new();
        let big = Request::UserDel {
            name: "a".repeat(MAX_FRAME),
        };
        let r = write_frame(&mut buf, &big);
        assert!(matches!(r, Err(FrameError::TooLarge(n)) if n > MAX_FRAME));
        assert!(buf.is_empty());
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut buf = 100u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{\"type\":");
        let r: Result<Request, _> = read_frame(&mut buf.as_slice());
        assert!(matches!(r, Err(FrameError::Io(_))));
    }

    #[test]
    fn empty_input_is_a_clean_close() {
        let r: Result<Request, _> = read_frame(&mut [].as_slice());
        assert!(matches!(r, Err(FrameError::Closed)));
    }

    #[test]
    fn malformed_error_does_not_echo_input() {
        let body = br#"{"type":"answer","text":12345678}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        let err = read_frame::<_, Request>(&mut buf.as_slice()).unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
    }
}
