//! Taking a connection's next request straight from its socket, on the
//! worker that answered the last one, when it comes whole within a short
//! wait: a PAM module answers a step of a login conversation at once (it
//! relays the prompt and sends the answer, or acknowledges a message), and
//! handing each step back to the event loop and on to a worker again would
//! cost two thread wake-ups per step.
//!
//! Only a whole frame is taken (it is peeked first): anything less stays in
//! the socket for the event loop, which applies its deadlines to it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use kauth_proto::MAX_FRAME;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, MsgFlags};
use zeroize::Zeroize;

const HEADER: usize = 4;

/// How long the wait watches the socket, yielding the CPU between looks,
/// before it sleeps until something comes. A PAM module's next step comes
/// within this; a thread that slept must be woken, which costs tens of
/// microseconds more on a virtual machine whose idle CPU halted.
pub const SPIN: Duration = Duration::from_micros(200);

/// What the socket held after the wait.
#[derive(Debug)]
pub enum Next {
    /// A whole frame, length included, taken from the socket. The receiver
    /// wipes it once decoded.
    Frame(Vec<u8>),
    /// Nothing whole yet: the event loop takes over.
    NotYet,
    /// The peer closed its end: nothing more will come.
    Closed,
    /// Reading what was peeked failed: the connection is unusable.
    Broken,
}

/// Waits up to `wait` for the stream to have a whole frame of at most
/// [`MAX_FRAME`] bytes, and takes it.
pub fn take_whole_frame(stream: &UnixStream, wait: Duration) -> Next {
    if !readable_within(stream, wait) {
        return Next::NotYet;
    }
    let fd = stream.as_raw_fd();
    let mut header = [0u8; HEADER];
    match recv(fd, &mut header, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(HEADER) => {}
        Ok(0) => return Next::Closed,
        _ => return Next::NotYet,
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Next::NotYet;
    }
    let mut frame = vec![0u8; HEADER + len];
    let peeked = recv(fd, &mut frame, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT);
    if peeked != Ok(frame.len()) {
        frame.zeroize();
        return Next::NotYet;
    }
    // The whole frame is in the socket: reading it cannot block.
    match (&mut &*stream).read_exact(&mut frame) {
        Ok(()) => Next::Frame(frame),
        Err(_) => {
            frame.zeroize();
            Next::Broken
        }
    }
}

/// Whether the peer closes its end within `wait`. Nothing is taken from
/// the socket: a request that comes instead stays there.
pub fn closed_within(stream: &UnixStream, wait: Duration) -> bool {
    if !readable_within(stream, wait) {
        return false;
    }
    let mut byte = [0u8; 1];
    recv(
        stream.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) == Ok(0)
}

/// Whether the stream has something to read (or was closed) within `wait`:
/// watched for up to [`SPIN`] first, then slept for.
fn readable_within(stream: &UnixStream, wait: Duration) -> bool {
    let started = Instant::now();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(stream),
        PollFlags::POLLIN,
    )];
    let spin = wait.min(SPIN);
    while started.elapsed() < spin {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) | Err(Errno::EINTR) => std::thread::yield_now(),
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
    loop {
        let left = wait.saturating_sub(started.elapsed());
        let millis = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(n) => return n > 0,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::*;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_whole_frame_is_taken_and_the_next_one_stays() {
        let (ours, mut theirs) = pair();
        let mut both = framed(b"{\"type\":\"continue\"}");
        both.extend(framed(b"{}"));
        theirs.write_all(&both).unwrap();
        match take_whole_frame(&ours, Duration::from_millis(50)) {
            Next::Frame(frame) => assert_eq!(frame, framed(b"{\"type\":\"continue\"}")),
            other => panic!("expected a frame, got {other:?}"),
        }
        match take_whole_frame(&ours, Duration::from_millis(50)) {
            Next::Frame(frame) => assert_eq!(frame, framed(b"{}")),
            other => panic!("expected the second frame, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_sent_in_pieces_is_taken_once_whole() {
        let (ours, mut theirs) = pair();
        let whole = framed(b"{\"type\":\"answer\",\"text\":\"123456\"}");
        for piece in whole.chunks(5) {
            theirs.write_all(piece).unwrap();
        }
        match take_whole_frame(&ours, Duration::from_millis(50)) {
            Next::Frame(frame) => assert_eq!(frame, whole),
            other => panic!("expected the frame, got {other:?}"),
        }
    }

    #[test]
    fn part_of_a_frame_is_left_in_the_socket() {
        let (ours, mut theirs) = pair();
        let whole = framed(b"{\"type\":\"continue\"}");
        theirs.write_all(&whole[..7]).unwrap();
        assert!(matches!(
            take_whole_frame(&ours, Duration::from_millis(50)),
            Next::NotYet
        ));
        theirs.write_all(&whole[7..]).unwrap();
        let mut all = vec![0u8; whole.len()];
        (&ours).read_exact(&mut all).unwrap();
        assert_eq!(all, whole, "nothing was consumed by the first try");
    }

    #[test]
    fn an_oversized_frame_is_left_for_the_event_loop() {
        let (ours, mut theirs) = pair();
        theirs
            .write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
            .unwrap();
        assert!(matches!(
            take_whole_frame(&ours, Duration::from_millis(50)),
            Next::NotYet
        ));
        let mut header = [0u8; 4];
        (&ours).read_exact(&mut header).unwrap();
    }

    #[test]
    fn a_frame_sent_during_the_wait_is_taken() {
        let (ours, mut theirs) = pair();
        let whole = framed(b"{\"type\":\"continue\"}");
        let sent = whole.clone();
        let writer = std::thread::spawn(move || {
            // One send within the watching, one after it, when it sleeps.
            std::thread::sleep(Duration::from_micros(50));
            theirs.write_all(&sent).unwrap();
            std::thread::sleep(SPIN * 4);
            theirs.write_all(&sent).unwrap();
        });
        for _ in 0..2 {
            match take_whole_frame(&ours, Duration::from_secs(5)) {
                Next::Frame(frame) => assert_eq!(frame, whole),
                other => panic!("expected the frame, got {other:?}"),
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn silence_ends_the_wait_in_time() {
        let (ours, _theirs) = pair();
        let started = Instant::now();
        assert!(matches!(
            take_whole_frame(&ours, Duration::from_millis(20)),
            Next::NotYet
        ));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(15), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_closed_peer_is_told_apart() {
        let (ours, theirs) = pair();
        drop(theirs);
        assert!(matches!(
            take_whole_frame(&ours, Duration::from_millis(50)),
            Next::Closed
        ));
    }

    #[test]
    fn a_close_is_seen_and_a_request_is_left_in_the_socket() {
        let (ours, theirs) = pair();
        drop(theirs);
        assert!(closed_within(&ours, Duration::from_millis(50)));

        let (ours, mut theirs) = pair();
        let whole = framed(b"{\"type\":\"continue\"}");
        theirs.write_all(&whole).unwrap();
        assert!(!closed_within(&ours, Duration::from_millis(50)));
        let mut all = vec![0u8; whole.len()];
        (&ours).read_exact(&mut all).unwrap();
        assert_eq!(all, whole);

        let (ours, _theirs) = pair();
        assert!(!closed_within(&ours, Duration::from_millis(5)));
    }

    #[test]
    fn part_of_a_frame_then_a_close_is_left_for_the_event_loop() {
        let (ours, mut theirs) = pair();
        theirs.write_all(&[0, 0]).unwrap();
        drop(theirs);
        assert!(matches!(
            take_whole_frame(&ours, Duration::from_millis(50)),
            Next::NotYet
        ));
    }
}
