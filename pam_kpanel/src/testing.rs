//! Test doubles: a scripted [`PamIo`] and a fake kauthd serving one
//! connection on a socket in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kauth_proto::{read_frame, write_frame, FrameError, Request, Response, PROTOCOL_VERSION};
use pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::pam_io::{Item, Level, PamIo, SecretBytes, Style};

/// What the fake application answers to the next prompt.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// The conversation succeeds but gives no answer (NULL response).
    Null,
    /// The conversation function fails.
    Fail,
}

/// A scripted PAM handle.
#[derive(Debug, Default)]
pub struct FakePam {
    pub user: Option<Vec<u8>>,
    pub items: HashMap<&'static str, String>,
    pub authtok: Option<Vec<u8>>,
    pub replies: VecDeque<Reply>,
    /// Everything shown or asked, in order.
    pub shown: Vec<(Style, String)>,
    pub env: HashMap<String, String>,
    /// Fail the conversation for info and error texts too.
    pub fail_texts: bool,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl FakePam {
    pub fn new(user: &str) -> Self {
        let mut items = HashMap::new();
        items.insert("service", "sshd".to_owned());
        items.insert("rhost", "192.0.2.7".to_owned());
        FakePam {
            user: Some(user.as_bytes().to_vec()),
            items,
            ..FakePam::default()
        }
    }

    pub fn reply(mut self, reply: Reply) -> Self {
        self.replies.push_back(reply);
        self
    }

    pub fn answer(self, text: &str) -> Self {
        self.reply(Reply::Text(text.to_owned()))
    }

    pub fn prompts(&self) -> Vec<String> {
        self.shown
            .iter()
            .filter(|(s, _)| s.is_prompt())
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub fn logged(&self, level: Level) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(l, t)| format!("{l:?}: {t}\n"))
            .collect()
    }
}

impl PamIo for FakePam {
    fn user(&mut self) -> Result<Vec<u8>, PamResultCode> {
        self.user.clone().ok_or(PamResultCode::PAM_USER_UNKNOWN)
    }

    fn item(&self, item: Item) -> Option<String> {
        let key = match item {
            Item::Service => "service",
            Item::Rhost => "rhost",
            Item::Tty => "tty",
            Item::Ruser => "ruser",
        };
        self.items.get(key).cloned()
    }

    fn authtok(&self) -> Option<SecretBytes> {
        self.authtok.clone().map(Zeroizing::new)
    }

    fn converse(&mut self, style: Style, text: &str) -> Result<Option<SecretBytes>, PamResultCode> {
        self.shown.push((style, text.to_owned()));
        if !style.is_prompt() {
            if self.fail_texts {
                return Err(PamResultCode::PAM_CONV_ERR);
            }
            return Ok(None);
        }
        match self.replies.pop_front() {
            Some(Reply::Text(t)) => Ok(Some(Zeroizing::new(t.into_bytes()))),
            Some(Reply::Null) => Ok(None),
            Some(Reply::Fail) | None => Err(PamResultCode::PAM_CONV_ERR),
        }
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), PamResultCode> {
        self.env.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    fn getenv(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn log(&self, level: Level, text: &str) {
        self.logs.borrow_mut().push((level, text.to_owned()));
    }
}

/// Module arguments as the hooks receive them.
pub struct Args(Vec<CString>);

impl Args {
    pub fn new(args: &[&str]) -> Self {
        Args(args.iter().map(|a| CString::new(*a).unwrap()).collect())
    }

    pub fn for_socket(daemon_socket: &std::path::Path, extra: &[&str]) -> Self {
        let mut all = vec![format!("socket={}", daemon_socket.display())];
        all.extend(extra.iter().map(|s| s.to_string()));
        Args(all.into_iter().map(|a| CString::new(a).unwrap()).collect())
    }

    pub fn as_refs(&self) -> Vec<&CStr> {
        self.0.iter().map(|c| c.as_c_str()).collect()
    }
}

/// One end of a connection the fake daemon serves.
pub struct Peer {
    stream: UnixStream,
    /// Every request received after `Hello`.
    pub received: Vec<Request>,
}

impl Peer {
    /// The next request, `None` when the module hung up.
    pub fn recv(&mut self) -> Option<Request> {
        match read_frame::<_, Request>(&mut self.stream) {
            Ok(req) => {
                self.received.push(req.clone());
                Some(req)
            }
            Err(FrameError::Closed) => None,
            Err(e) => panic!("fake daemon read: {e}"),
        }
    }

    pub fn send(&mut self, response: Response) {
        // The module may already have hung up; tests look at its result.
        let _ = write_frame(&mut self.stream, &response);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn finish(&mut self, outcome: kauth_proto::Outcome) {
        self.send(Response::Finished { outcome });
    }
}

/// A fake kauthd: answers `Hello`, then runs `script` on one connection.
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    thread: Option<JoinHandle<Vec<Request>>>,
}

impl FakeDaemon {
    pub fn serve(script: impl FnOnce(&mut Peer) + Send + 'static) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kauthd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return Vec::new(),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut peer = Peer {
                stream,
                received: Vec::new(),
            };
            match read_frame::<_, Request>(&mut peer.stream) {
                Ok(Request::Hello { .. }) => peer.send(Response::Welcome {
                    version: PROTOCOL_VERSION,
                    server: "fake".into(),
                }),
                other => panic!("expected hello, got {other:?}"),
            }
            script(&mut peer);
            peer.received
        });
        FakeDaemon {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    /// A socket path where nobody listens.
    pub fn nowhere() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        (dir, path)
    }

    /// Waits for the script to end and returns the requests it received.
    pub fn received(mut self) -> Vec<Request> {
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("fake daemon panicked")
    }
}
