//! A fake kauthd for tests, on a socket in a temporary directory: it
//! answers `Hello` with `Welcome`, then runs a script on the connection.
//!
//! Only built with the `testing` feature, which only test code enables
//! (pam_kpanel's unit tests, the end-to-end tests): the module never links
//! it.
//!
//! The fake's thread is joined when the [`FakeDaemon`] is dropped (or when
//! [`FakeDaemon::received`] is called), and a panic inside the script (a
//! failed assertion) is raised again in the test's thread, so it cannot go
//! unseen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{
    read_frame, write_frame, FrameError, MessageStyle, Outcome, Request, Response, PROTOCOL_VERSION,
};

/// How long a connection may sit idle before the fake gives up on it (a
/// script waiting longer than this for a request fails).
const IDLE: Duration = Duration::from_secs(15);

/// How often the fake looks for a new connection or for the stop flag.
const POLL: Duration = Duration::from_millis(5);

/// One client connection, after the handshake.
pub struct Connection {
    stream: UnixStream,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Connection {
    /// The next request; `None` when the client hung up.
    ///
    /// Panics (failing the test) when the client sends something that is
    /// not a request, or sends nothing for [`IDLE`].
    pub fn recv(&mut self) -> Option<Request> {
        match read_frame::<_, Request>(&mut self.stream) {
            Ok(request) => {
                self.requests.lock().unwrap().push(request.clone());
                Some(request)
            }
            Err(FrameError::Closed) => None,
            Err(FrameError::Io(e)) if hung_up(&e) => None,
            Err(e) => panic!("fake daemon: could not read a request from the client: {e}"),
        }
    }

    /// Sends a response; false when the client is gone (tests look at the
    /// client's result then).
    pub fn send(&mut self, response: Response) -> bool {
        write_frame(&mut self.stream, &response).is_ok()
    }

    /// Sends bytes that are not a frame.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn prompt(&mut self, echo: bool, message: &str) -> bool {
        self.send(Response::Prompt {
            echo,
            message: message.to_owned(),
            continuation: None,
        })
    }

    pub fn message(&mut self, style: MessageStyle, text: &str) -> bool {
        self.send(Response::Message {
            style,
            text: text.to_owned(),
        })
    }

    pub fn finish(&mut self, outcome: Outcome) -> bool {
        self.send(Response::Finished { outcome })
    }

    /// Says nothing until the client hangs up (or [`IDLE`] passes).
    pub fn wait_for_hangup(&mut self) {
        let mut buf = [0u8; 4096];
        while matches!(self.stream.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Whether a read error means the client went away (rather than a stall).
fn hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A running fake daemon. Dropping it stops it, joins its thread and
/// re-raises a panic of its script (unless the test is already panicking).
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Serves `script` on the first connection only.
    pub fn serve(script: impl FnOnce(&mut Connection) + Send + 'static) -> FakeDaemon {
        let mut script = Some(script);
        FakeDaemon::spawn(move |conn, more| {
            if let Some(script) = script.take() {
                script(conn);
            }
            *more = false;
        })
    }

    /// Serves `script` on every connection, one at a time, until dropped.
    pub fn start(script: impl Fn(&mut Connection) + Send + Sync + 'static) -> FakeDaemon {
        FakeDaemon::spawn(move |conn, _more| script(conn))
    }

    /// A socket path where nobody listens (in the returned directory).
    pub fn nowhere() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        (dir, path)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request received so far (after `Hello`), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Stops the fake, waits for the script to end (raising its panic
    /// again) and returns every request it received (after `Hello`).
    pub fn received(mut self) -> Vec<Request> {
        self.stop_and_join();
        self.requests()
    }

    /// `on_connection` runs for each connection after the handshake; it
    /// sets its flag to false when no further connection is to be served.
    fn spawn(
        mut on_connection: impl FnMut(&mut Connection, &mut bool) + Send + 'static,
    ) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kauthd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            std::thread::spawn(move || {
                let mut more = true;
                while more {
                    let Some(stream) = accept(&listener, &stop) else {
                        return;
                    };
                    let mut conn = handshake(stream, &requests);
                    on_connection(&mut conn, &mut more);
                }
            })
        };
        FakeDaemon {
            _dir: dir,
            socket,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// Tells the thread to stop taking connections, waits for it, and
    /// raises its panic again in this thread.
    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test already failed; its message is the one that counts.
            // Still wait for the thread, but a second panic would abort.
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
            return;
        }
        self.stop_and_join();
    }
}

/// The next connection, or `None` once told to stop.
fn accept(listener: &UnixListener, stop: &AtomicBool) -> Option<UnixStream> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(_) if stop.load(Ordering::SeqCst) => return None,
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Reads the client's `Hello` and answers `Welcome`.
fn handshake(stream: UnixStream, requests: &Arc<Mutex<Vec<Request>>>) -> Connection {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(IDLE)).unwrap();
    stream.set_write_timeout(Some(IDLE)).unwrap();
    let mut conn = Connection {
        stream,
        requests: Arc::clone(requests),
    };
    match read_frame::<_, Request>(&mut conn.stream) {
        Ok(Request::Hello { .. }) => {
            conn.send(Response::Welcome {
                version: PROTOCOL_VERSION,
                server: "fake-kauthd".into(),
            });
        }
        other => panic!("fake daemon: expected Hello first, got {other:?}"),
    }
    conn
}

/// Ready-made behaviours.
pub mod scripts {
    use super::*;

    /// Asks `Verification code: ` and finishes Success when the answer is
    /// `expected`, Denied otherwise. Other requests (account checks) get
    /// Success; sessions get an id.
    pub fn code_checker(expected: &'static str) -> impl Fn(&mut Connection) + Send + Sync {
        move |conn| match conn.recv() {
            Some(Request::Begin { .. }) => {
                conn.prompt(false, "Verification code: ");
                match conn.recv() {
                    Some(Request::Answer { text }) if text.expose() == expected => {
                        conn.finish(Outcome::Success);
                    }
                    Some(Request::Answer { .. }) => {
                        conn.finish(Outcome::Denied);
                    }
                    _ => {}
                }
            }
            Some(other) => answer_plainly(conn, &other),
            None => {}
        }
    }

    /// Shows `text` as info, then finishes Success.
    pub fn info_then_success(text: &'static str) -> impl Fn(&mut Connection) + Send + Sync {
        move |conn| {
            if conn.recv().is_none() {
                return;
            }
            conn.message(MessageStyle::Info, text);
            if matches!(conn.recv(), Some(Request::Continue)) {
                conn.finish(Outcome::Success);
            }
        }
    }

    /// Prompts once, then closes the connection whatever the answer.
    pub fn close_mid_conversation() -> impl Fn(&mut Connection) + Send + Sync {
        |conn| {
            if conn.recv().is_some() {
                conn.prompt(false, "Verification code: ");
                let _ = conn.recv();
            }
        }
    }

    /// Reads the request and never answers.
    pub fn silent() -> impl Fn(&mut Connection) + Send + Sync {
        |conn| {
            if conn.recv().is_some() {
                conn.wait_for_hangup();
            }
        }
    }

    /// Answers the request with bytes that are not a frame.
    pub fn garbage() -> impl Fn(&mut Connection) + Send + Sync {
        |conn| {
            if conn.recv().is_some() {
                conn.send_raw(b"\xff\xff\xff\xffHTTP/1.1 200 OK\r\n\r\n");
                conn.wait_for_hangup();
            }
        }
    }

    /// Answers the way a kauthd with no special policy would, without
    /// prompting: Success for logins and account checks, an id for
    /// sessions.
    fn answer_plainly(conn: &mut Connection, request: &Request) {
        match request {
            Request::SessionOpen { .. } => {
                conn.send(Response::SessionOpened {
                    id: "fake-session-1".into(),
                });
            }
            Request::SessionClose { .. } => {
                conn.send(Response::Done);
            }
            _ => {
                conn.finish(Outcome::Success);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connects and says hello the way the module does.
    fn client(daemon: &FakeDaemon) -> UnixStream {
        let mut stream = UnixStream::connect(daemon.socket()).unwrap();
        write_frame(
            &mut stream,
            &Request::Hello {
                version: PROTOCOL_VERSION,
                client: "test".into(),
            },
        )
        .unwrap();
        let welcome: Response = read_frame(&mut stream).unwrap();
        assert!(matches!(welcome, Response::Welcome { .. }));
        stream
    }

    #[test]
    fn a_failed_assertion_in_the_script_fails_the_test() {
        let daemon = FakeDaemon::serve(|conn| {
            assert!(conn.recv().is_some(), "the script's own assertion");
        });
        drop(client(&daemon)); // hangs up without a request
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(daemon)))
            .expect_err("the script's panic must reach the test thread");
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(text.contains("the script's own assertion"), "{text}");
    }

    #[test]
    fn received_returns_the_requests_after_hello() {
        let daemon = FakeDaemon::serve(|conn| {
            assert!(matches!(conn.recv(), Some(Request::Continue)));
            conn.finish(Outcome::Success);
        });
        let mut stream = client(&daemon);
        write_frame(&mut stream, &Request::Continue).unwrap();
        let _: Response = read_frame(&mut stream).unwrap();
        drop(stream);
        assert!(matches!(daemon.received()[..], [Request::Continue]));
    }

    #[test]
    fn dropping_a_daemon_nobody_called_returns_at_once() {
        let daemon = FakeDaemon::start(scripts::silent());
        assert!(daemon.received().is_empty());
    }
}
