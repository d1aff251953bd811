//! Gathers one frame (4-byte big-endian length, then the body) from a
//! non-blocking socket, however the bytes trickle in. It holds at most one
//! frame, and nothing between frames, so an idle connection costs no
//! buffer. The whole frame (length included) is handed on, for
//! `kauth_proto::read_frame` to decode.

use std::io::{self, Read};
use std::time::Instant;

use zeroize::Zeroize;

/// What a read brought.
#[derive(Debug)]
pub enum Progress {
    /// The frame is not whole yet: wait for more.
    Pending,
    /// A whole frame, length included. The receiver wipes it once decoded
    /// (it may hold a password).
    Frame(Vec<u8>),
    /// The announced body length is over the limit; nothing of it was read.
    TooLarge(usize),
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame, or reading
    /// failed.
    Broken,
}

/// The frame being read.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
    filled: usize,
    /// When its first byte came.
    started: Option<Instant>,
}

const HEADER: usize = 4;

impl FrameBuf {
    /// When the first byte of the frame in progress came; None between frames.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Reads what `input` has now, up to the end of one frame (the rest
    /// stays in the socket for the next call). `limit` is the largest
    /// body accepted.
    pub fn read_from<R: Read>(&mut self, input: &mut R, limit: usize, now: Instant) -> Progress {
        loop {
            if self.buf.is_empty() {
                self.buf.resize(HEADER, 0);
            }
            let want = self.buf.len();
            match input.read(&mut self.buf[self.filled..want]) {
                Ok(0) if self.filled == 0 => {
                    self.clear();
                    return Progress::Closed;
                }
                Ok(0) => {
                    self.clear();
                    return Progress::Broken;
                }
                Ok(n) => {
                    self.filled += n;
                    self.started.get_or_insert(now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.filled == 0 {
                        // Nothing of a frame yet: hold no buffer.
                        self.clear();
                    }
                    return Progress::Pending;
                }
                Err(_) => {
                    self.clear();
                    return Progress::Broken;
                }
            }
            if self.filled < want {
                continue;
            }
            if want == HEADER {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > limit {
                    self.clear();
                    return Progress::TooLarge(len);
                }
                self.buf.resize(HEADER + len, 0);
                if len > 0 {
                    continue;
                }
            }
            let frame = std::mem::take(&mut self.buf);
            self.filled = 0;
            self.started = None;
            return Progress::Frame(frame);
        }
    }

    /// Drops (and wipes) whatever part of a frame is held.
    fn clear(&mut self) {
        self.buf.zeroize();
        self.buf = Vec::new();
        self.filled = 0;
        self.started = None;
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Hands out its chunks one read at a time, then "would block" (or EOF).
    struct Trickle {
        chunks: VecDeque<Vec<u8>>,
        eof: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(mut chunk) = self.chunks.pop_front() else {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.chunks.push_front(chunk.split_off(n));
            }
            Ok(n)
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn a_frame_that_trickles_in_byte_by_byte_comes_out_whole() {
        let whole = frame(b"{\"type\":\"status\"}");
        let mut buf = FrameBuf::default();
        let now = Instant::now();
        for (i, byte) in whole.iter().enumerate() {
            let mut input = Trickle {
                chunks: VecDeque::from([vec![*byte]]),
                eof: false,
            };
            match buf.read_from(&mut input, 1024, now) {
                Progress::Pending => assert!(i + 1 < whole.len()),
                Progress::Frame(got) => {
                    assert_eq!(i + 1, whole.len());
                    assert_eq!(got, whole);
                }
                other => panic!("{other:?}"),
            }
            if i + 1 < whole.len() {
                assert_eq!(buf.started(), Some(now));
            }
        }
        assert_eq!(buf.started(), None);
    }

    #[test]
    fn frames_sent_together_come_out_one_at_a_time() {
        let mut both = frame(b"one");
        both.extend(frame(b"two"));
        let mut input = Trickle {
            chunks: VecDeque::from([both]),
            eof: true,
        };
        let mut buf = FrameBuf::default();
        let now = Instant::now();
        assert!(
            matches!(buf.read_from(&mut input, 1024, now), Progress::Frame(f) if f == frame(b"one"))
        );
        assert!(
            matches!(buf.read_from(&mut input, 1024, now), Progress::Frame(f) if f == frame(b"two"))
        );
        assert!(matches!(
            buf.read_from(&mut input, 1024, now),
            Progress::Closed
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_body() {
        let mut input = Trickle {
            chunks: VecDeque::from([frame(&[b'x'; 2000])]),
            eof: false,
        };
        let mut buf = FrameBuf::default();
        assert!(matches!(
            buf.read_from(&mut input, 1024, Instant::now()),
            Progress::TooLarge(2000)
        ));
    }

    #[test]
    fn a_frame_cut_short_is_broken_and_an_idle_buffer_holds_nothing() {
        let mut input = Trickle {
            chunks: VecDeque::from([frame(b"abcdef")[..6].to_vec()]),
            eof: true,
        };
        let mut buf = FrameBuf::default();
        assert!(matches!(
            buf.read_from(&mut input, 1024, Instant::now()),
            Progress::Broken
        ));
        let mut idle = Trickle {
            chunks: VecDeque::new(),
            eof: false,
        };
        assert!(matches!(
            buf.read_from(&mut idle, 1024, Instant::now()),
            Progress::Pending
        ));
        assert_eq!(buf.buf.capacity(), 0);
    }
}
