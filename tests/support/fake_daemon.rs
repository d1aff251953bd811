//! A stand-in for kauthd on a temporary socket, for tests that need a
//! daemon that misbehaves on purpose. It answers `Hello` with `Welcome`,
//! then runs a script on each connection, one connection at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kauth_proto::{
    read_frame, write_frame, MessageStyle, Outcome, Request, Response, PROTOCOL_VERSION,
};

/// How long a connection may sit idle before the fake gives up on it.
const IDLE: Duration = Duration::from_secs(15);

type Script = dyn Fn(&mut Connection) + Send + Sync;

/// A running fake daemon; stops when dropped.
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

/// One client connection, after the handshake.
pub struct Connection {
    stream: UnixStream,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Connection {
    /// The next request; `None` when the client hung up, timed out or sent
    /// something unreadable.
    pub fn recv(&mut self) -> Option<Request> {
        let request: Request = read_frame(&mut self.stream).ok()?;
        self.requests.lock().unwrap().push(request.clone());
        Some(request)
    }

    /// Sends a response; false when the client is gone.
    pub fn send(&mut self, response: &Response) -> bool {
        write_frame(&mut self.stream, response).is_ok()
    }

    /// Sends bytes that are not a frame.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn prompt(&mut self, echo: bool, message: &str) -> bool {
        self.send(&Response::Prompt {
            echo,
            message: message.to_owned(),
        })
    }

    pub fn message(&mut self, style: MessageStyle, text: &str) -> bool {
        self.send(&Response::Message {
            style,
            text: text.to_owned(),
        })
    }

    pub fn finish(&mut self, outcome: Outcome) -> bool {
        self.send(&Response::Finished { outcome })
    }

    /// Says nothing until the client hangs up (or [`IDLE`] passes).
    pub fn wait_for_hangup(&mut self) {
        let mut buf = [0u8; 4096];
        while matches!(self.stream.read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl FakeDaemon {
    /// Starts serving `script` on a fresh socket.
    pub fn start(script: impl Fn(&mut Connection) + Send + Sync + 'static) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kauthd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            std::thread::spawn(move || serve(&listener, &stop, &requests, &*script))
        };
        FakeDaemon {
            _dir: dir,
            socket,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request received so far (after `Hello`), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: &UnixListener,
    stop: &AtomicBool,
    requests: &Arc<Mutex<Vec<Request>>>,
    script: &Script,
) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(IDLE));
        let _ = stream.set_write_timeout(Some(IDLE));
        let mut conn = Connection {
            stream,
            requests: Arc::clone(requests),
        };
        match read_frame::<_, Request>(&mut conn.stream) {
            Ok(Request::Hello { .. }) => {
                conn.send(&Response::Welcome {
                    version: PROTOCOL_VERSION,
                    server: "fake-kauthd".into(),
                });
            }
            _ => continue,
        }
        script(&mut conn);
    }
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
                conn.send(&Response::SessionOpened {
                    id: "fake-session-1".into(),
                });
            }
            Request::SessionClose { .. } => {
                conn.send(&Response::Done);
            }
            _ => {
                conn.finish(Outcome::Success);
            }
        }
    }
}
