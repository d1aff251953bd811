//! The client side of a connection: connect with a deadline, check who is
//! listening, say hello, then exchange frames. Every wait has a timeout.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::codec::{read_frame, write_frame, FrameError};
use crate::messages::{ErrorCode, Request, Response};
use crate::peer::peer_cred;
use crate::PROTOCOL_VERSION;
use zeroize::Zeroize;

#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens at the socket path: no socket there (ENOENT) or
    /// nobody accepting on it (ECONNREFUSED). The only error that means
    /// "kauthd is not running"; every other one means something is there.
    Unreachable(io::Error),
    /// Something listens there, but not as a uid we trust.
    UntrustedPeer { uid: u32 },
    /// The daemon speaks another protocol version.
    Version { ours: u32, theirs: u32 },
    /// The exchange broke (timeout, closed, garbage).
    Frame(FrameError),
    /// The daemon answered with something that does not fit the request.
    Unexpected(String),
    /// Something is at the socket path but the connection could not be
    /// set up: not accepted before the timeout (a listener whose backlog
    /// stays full is there, only overwhelmed), permission denied, or the
    /// socket could not be configured.
    Connect(io::Error),
    /// kauthd answered the hello with `busy`: all its connection slots are
    /// in use. Its message says so.
    Busy(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(e) => write!(f, "kauthd is not reachable: {e}"),
            ClientError::UntrustedPeer { uid } => write!(
                f,
                "the process listening on the socket runs as uid {uid}, not as the kauthd user; refusing to talk to it"
            ),
            ClientError::Version { ours, theirs } => write!(
                f,
                "kauthd speaks protocol version {theirs}, this client version {ours}; upgrade so both match"
            ),
            ClientError::Frame(e) => write!(f, "talking to kauthd failed: {e}"),
            ClientError::Unexpected(what) => write!(f, "kauthd answered unexpectedly: {what}"),
            ClientError::Connect(e) => write!(f, "cannot connect to kauthd: {e}"),
            ClientError::Busy(message) => write!(
                f,
                "kauthd is busy ({message}); if this lasts, see kauthd's log for who holds its connections, or raise [daemon] max_connections"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Frame(e)
    }
}

/// How long a login connection ([`Client::connect_and_call`]) watches for
/// kauthd's answer before it sleeps until the answer comes. kauthd answers
/// a login step within about this time; sleeping and being woken again
/// costs a login tens of microseconds more on a virtual machine. Each turn
/// of the wait yields the CPU to anything else that is ready to run.
pub const LOGIN_REPLY_SPIN: Duration = Duration::from_micros(250);

/// An open, checked connection to kauthd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// How long to watch for an answer before sleeping in the read (zero:
    /// sleep at once).
    reply_spin: Duration,
}

impl Client {
    /// Connects to `path`, waiting at most `timeout`, and checks that the
    /// listener runs as one of `trusted_uids` before sending anything.
    pub fn connect(
        path: &Path,
        timeout: Duration,
        trusted_uids: &[u32],
        client_name: &str,
    ) -> Result<Client, ClientError> {
        let mut client = Client::open(path, timeout, trusted_uids)?;
        let welcome = client.call(&hello(client_name))?;
        check_welcome(welcome)?;
        Ok(client)
    }

    /// [`Client::connect`] with `first` sent right behind the hello, in
    /// the same write, without waiting for the welcome in between: one
    /// round trip less for a client that makes a request at once (the PAM
    /// module). Returns the client and the answer to `first`. The listener
    /// is checked before anything is sent, as with `connect`.
    pub fn connect_and_call(
        path: &Path,
        timeout: Duration,
        trusted_uids: &[u32],
        client_name: &str,
        first: &Request,
    ) -> Result<(Client, Response), ClientError> {
        let mut client = Client::open(path, timeout, trusted_uids)?;
        let mut frames = Vec::new();
        let framed = write_frame(&mut frames, &hello(client_name))
            .and_then(|()| write_frame(&mut frames, first));
        let sent = framed.and_then(|()| Ok(client.stream.write_all(&frames)?));
        frames.zeroize();
        // A kauthd that turned us away answered the hello and closed, so
        // the write may have failed: its answer says why.
        client.reply_spin = LOGIN_REPLY_SPIN;
        client.wait_briefly_for_reply();
        let welcome = read_frame(&mut client.stream);
        match (welcome, sent) {
            (Ok(welcome), sent) => {
                check_welcome(welcome)?;
                sent?;
            }
            (Err(_), Err(e)) | (Err(e), Ok(())) => return Err(e.into()),
        }
        client.wait_briefly_for_reply();
        let response = read_frame(&mut client.stream)?;
        Ok((client, response))
    }

    /// Connects and checks who listens; sends nothing.
    fn open(path: &Path, timeout: Duration, trusted_uids: &[u32]) -> Result<Client, ClientError> {
        let stream = connect_with_deadline(path, timeout).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(ClientError::Connect)?;
        let cred = peer_cred(&stream).map_err(ClientError::Connect)?;
        if !trusted_uids.contains(&cred.uid) {
            return Err(ClientError::UntrustedPeer { uid: cred.uid });
        }
        Ok(Client {
            stream,
            reply_spin: Duration::ZERO,
        })
    }

    /// Sends one request and reads one response.
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, request)?;
        self.wait_briefly_for_reply();
        Ok(read_frame(&mut self.stream)?)
    }

    /// Watches the socket for up to `reply_spin`, yielding the CPU between
    /// looks, and returns as soon as something can be read (or the
    /// connection failed: the read that follows says how). The read that
    /// follows blocks with the connection's timeout as before.
    fn wait_briefly_for_reply(&self) {
        if self.reply_spin.is_zero() {
            return;
        }
        let started = Instant::now();
        let mut byte = [0u8; 1];
        while started.elapsed() < self.reply_spin {
            // SAFETY: `byte` is a valid, writable buffer of 1 byte and the
            // stream keeps its fd open for the call; MSG_PEEK leaves the
            // data in the socket.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    byte.as_mut_ptr().cast(),
                    byte.len(),
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            let nothing_yet = n < 0
                && matches!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR)
                );
            if !nothing_yet {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Changes how long each later call may wait for the daemon.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }
}

fn hello(client_name: &str) -> Request {
    Request::Hello {
        version: PROTOCOL_VERSION,
        client: client_name.to_owned(),
    }
}

/// The answer to the hello: a welcome in our version, or why not.
fn check_welcome(answer: Response) -> Result<(), ClientError> {
    match answer {
        Response::Welcome { version, .. } if version == PROTOCOL_VERSION => Ok(()),
        Response::Welcome { version, .. } => Err(ClientError::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        }),
        Response::Error {
            code: ErrorCode::Busy,
            message,
        } => Err(ClientError::Busy(message)),
        Response::Error { message, .. } => Err(ClientError::Unexpected(message)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Only "nothing listens" makes kauthd unreachable; any other failure to
/// connect (a timeout included) means something is at the socket path.
fn connect_error(err: io::Error) -> ClientError {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED) => ClientError::Unreachable(err),
        _ => ClientError::Connect(err),
    }
}

/// `UnixStream::connect` can block when the listener's backlog is full, so
/// connect non-blocking and retry until the deadline.
fn connect_with_deadline(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    let (addr, addr_len) = sockaddr_for(path)?;
    loop {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `addr` is an initialised sockaddr_un and `addr_len` does not
        // exceed its size; `owned` keeps the fd open for the call.
        let rc = unsafe {
            libc::connect(
                owned.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                addr_len,
            )
        };
        if rc == 0 {
            return into_blocking(owned);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Backlog full: try again shortly, until the deadline.
            Some(libc::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "kauthd did not accept the connection in time",
                ))
            }
            Some(libc::EINPROGRESS) => {
                wait_writable(&owned, deadline)?;
                return into_blocking(owned);
            }
            _ => return Err(err),
        }
    }
}

fn into_blocking(fd: OwnedFd) -> io::Result<UnixStream> {
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    Ok(stream)
}

fn wait_writable(fd: &OwnedFd, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "kauthd did not accept the connection in time",
        )),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

fn sockaddr_for(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path is empty, contains a NUL byte or is too long",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    let len = libc::socklen_t::try_from(len).map_err(io::Error::other)?;
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let r = Client::connect(
            &dir.path().join("none.sock"),
            Duration::from_secs(1),
            &[0],
            "t",
        );
        assert!(matches!(r, Err(ClientError::Unreachable(_))));
    }

    #[test]
    fn a_socket_nobody_accepts_on_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        let r = Client::connect(&path, Duration::from_secs(1), &[0], "t");
        assert!(matches!(r, Err(ClientError::Unreachable(_))), "{r:?}");
    }

    #[test]
    fn only_nothing_listening_is_unreachable() {
        let unreachable = |e: io::Error| matches!(connect_error(e), ClientError::Unreachable(_));
        assert!(unreachable(io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(unreachable(io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
        assert!(!unreachable(io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!unreachable(io::Error::from_raw_os_error(libc::ETIMEDOUT)));
        // What connect_with_deadline returns when the backlog stays full.
        assert!(!unreachable(io::Error::new(
            io::ErrorKind::TimedOut,
            "kauthd did not accept the connection in time"
        )));
    }

    #[test]
    fn a_busy_answer_to_the_hello_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _: Request = read_frame(&mut conn).unwrap();
            let busy = Response::Error {
                code: ErrorCode::Busy,
                message: "all 2 slots are in use".into(),
            };
            write_frame(&mut conn, &busy).unwrap();
        });
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let r = Client::connect(&path, Duration::from_secs(5), &[me], "t");
        server.join().unwrap();
        match r {
            Err(e @ ClientError::Busy(_)) => {
                assert!(e.to_string().starts_with("kauthd is busy"), "{e}")
            }
            other => panic!("expected busy, got {other:?}"),
        }
    }

    /// A server that answers the hello and each later request with
    /// `Done`, each answer `delay` after the request.
    fn slow_server(path: &Path, delay: Duration, requests: usize) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            for i in 0..requests {
                let _: Request = read_frame(&mut conn).unwrap();
                std::thread::sleep(delay);
                let answer = if i == 0 {
                    Response::Welcome {
                        version: PROTOCOL_VERSION,
                        server: "test".into(),
                    }
                } else {
                    Response::Done
                };
                write_frame(&mut conn, &answer).unwrap();
            }
        })
    }

    #[test]
    fn a_login_connection_still_reads_answers_that_come_after_its_brief_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let delay = LOGIN_REPLY_SPIN * 40;
        let server = slow_server(&path, delay, 3);
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let started = Instant::now();
        let (mut client, first) = Client::connect_and_call(
            &path,
            Duration::from_secs(5),
            &[me],
            "t",
            &Request::Continue,
        )
        .unwrap();
        assert!(matches!(first, Response::Done), "{first:?}");
        assert!(matches!(
            client.call(&Request::Continue).unwrap(),
            Response::Done
        ));
        assert!(started.elapsed() >= delay * 3);
        server.join().unwrap();
    }

    #[test]
    fn a_login_connection_closed_by_kauthd_fails_at_once_not_after_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server = slow_server(&path, Duration::ZERO, 1);
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let started = Instant::now();
        let r = Client::connect_and_call(
            &path,
            Duration::from_secs(5),
            &[me],
            "t",
            &Request::Continue,
        );
        server.join().unwrap();
        assert!(matches!(r, Err(ClientError::Frame(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn untrusted_listener_is_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let r = Client::connect(&path, Duration::from_secs(1), &[me.wrapping_add(1)], "t");
        assert!(matches!(r, Err(ClientError::UntrustedPeer { .. })));
    }

    #[test]
    fn silent_listener_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let start = Instant::now();
        let r = Client::connect(&path, Duration::from_millis(300), &[me], "t");
        assert!(matches!(r, Err(ClientError::Frame(_))));
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
