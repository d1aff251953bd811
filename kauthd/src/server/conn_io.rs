//! One connection as the event loop sees it: its bytes in and out, what it
//! waits for, and its deadlines.
//!
//! - The hello must come whole within [`HELLO_TIMEOUT`] of the connect.
//! - Each request must come whole within [`REQUEST_TIMEOUT`] of its first
//!   byte, so trickling bytes cannot hold a connection.
//! - Between requests (a person typing at a prompt, a client between
//!   calls) a connection may stay silent for `[daemon] idle_timeout`.
//! - A login conversation must end within `[daemon] login_timeout` of its
//!   start, however its bytes come.
//! - An answer must be read within [`WRITE_TIMEOUT`].
//!
//! While a worker runs its request the connection is not read; whatever
//! the client sends meanwhile waits in the socket. A connection holds at
//! most one frame in and one answer out, and nothing while idle.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kauth_proto::{ErrorCode, MAX_FRAME};
use zeroize::Zeroize;

use crate::config::DaemonConfig;
use crate::server::access::Caller;
use crate::server::admission::Slot;
use crate::server::api::ConnState;
use crate::server::connection;
use crate::server::frame_buf::{FrameBuf, Progress};
use crate::server::refusal_log;
use crate::server::workers::{Done, Job};

/// From connect to the whole hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// From a request's first byte to its last.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// For the client to read an answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// For a turned-away client to send its hello, and then to read `busy`.
pub const TURN_AWAY_TIMEOUT: Duration = Duration::from_millis(500);
/// For a client that is being closed to read the error that says why.
const PARTING_TIMEOUT: Duration = Duration::from_secs(1);
/// The most read from a turned-away client (a hello is a few dozen bytes).
const MAX_TURN_AWAY_FRAME: usize = 1024;

/// The timeouts from the configuration in force.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub login: Duration,
}

impl Timeouts {
    pub fn from_config(daemon: &DaemonConfig) -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(daemon.idle_timeout),
            login: Duration::from_secs(daemon.login_timeout),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the hello.
    Hello,
    /// Between requests, or reading one.
    Idle,
    /// A worker runs the request.
    Working,
    /// An answer is going out.
    Writing,
    /// Turned away: reading the hello, only to answer `busy`.
    TurningAway,
}

/// What the event loop should do next with a connection.
#[derive(Debug)]
pub enum Step {
    /// Nothing until the socket is ready or a deadline passes.
    Wait,
    /// Run this request on a worker.
    Run(Box<Job>),
    /// Close the connection.
    Close,
}

#[derive(Debug)]
pub struct Conn {
    /// Shared with the worker that runs the connection's request.
    pub stream: Arc<UnixStream>,
    /// The event loop watches the socket (see `EventLoop::watch`).
    pub watched: bool,
    caller: Caller,
    /// None for a turned-away connection.
    slot: Option<Slot>,
    /// None while a worker has it, and for a turned-away connection.
    state: Option<ConnState>,
    /// For a turned-away connection: its `busy` answer.
    busy: Option<String>,
    reading: FrameBuf,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    greeted: bool,
    close_after_write: bool,
    /// The deadline of the phase (hello, idle, write, turning away).
    phase_ends: Instant,
    conversation_ends: Option<Instant>,
}

impl Conn {
    /// A connection that got a slot.
    pub fn admitted(stream: UnixStream, caller: Caller, slot: Slot, now: Instant) -> Conn {
        let state = ConnState::new(caller.clone());
        Conn::new(stream, caller, Some(slot), Some(state), None, now)
    }

    /// A connection that gets `busy` after its hello, then is closed.
    pub fn turned_away(stream: UnixStream, caller: Caller, busy: String, now: Instant) -> Conn {
        Conn::new(stream, caller, None, None, Some(busy), now)
    }

    fn new(
        stream: UnixStream,
        caller: Caller,
        slot: Option<Slot>,
        state: Option<ConnState>,
        busy: Option<String>,
        now: Instant,
    ) -> Conn {
        let (phase, phase_ends) = match busy {
            Some(_) => (Phase::TurningAway, now + TURN_AWAY_TIMEOUT),
            None => (Phase::Hello, now + HELLO_TIMEOUT),
        };
        Conn {
            stream: Arc::new(stream),
            watched: false,
            caller,
            slot,
            state,
            busy,
            reading: FrameBuf::default(),
            out: Vec::new(),
            sent: 0,
            phase,
            greeted: false,
            close_after_write: false,
            phase_ends,
            conversation_ends: None,
        }
    }

    /// The slot to give back when the connection closes (None if it was
    /// turned away).
    pub fn take_slot(&mut self) -> Option<Slot> {
        self.slot.take()
    }

    /// Whether a worker has its request (it must not be closed then).
    pub fn working(&self) -> bool {
        self.phase == Phase::Working
    }

    /// Does what the socket allows now: reads toward a whole frame, or
    /// writes the answer, then reads again.
    pub fn advance(&mut self, token: usize, now: Instant, timeouts: Timeouts) -> Step {
        loop {
            match self.phase {
                Phase::Working => return Step::Wait,
                Phase::Writing => match self.flush() {
                    Ok(true) => {
                        self.out.zeroize();
                        self.out = Vec::new();
                        self.sent = 0;
                        if self.close_after_write {
                            return Step::Close;
                        }
                        self.phase = Phase::Idle;
                        self.phase_ends = now + timeouts.idle;
                    }
                    Ok(false) => return Step::Wait,
                    Err(_) => return Step::Close,
                },
                Phase::Hello | Phase::Idle | Phase::TurningAway => {
                    let limit = if self.phase == Phase::TurningAway {
                        MAX_TURN_AWAY_FRAME
                    } else {
                        MAX_FRAME
                    };
                    match self.reading.read_from(&mut &*self.stream, limit, now) {
                        Progress::Pending => return Step::Wait,
                        Progress::Closed | Progress::Broken => return Step::Close,
                        Progress::Frame(mut frame) => {
                            if self.phase == Phase::TurningAway {
                                frame.zeroize();
                                self.answer_busy(now);
                                continue;
                            }
                            if !self.greeted {
                                // A hello needs no worker: no store, no
                                // waiting. Answered here, a client that sent
                                // its first request right behind the hello
                                // has it read next, in this same turn.
                                self.answer_hello(frame, now);
                                continue;
                            }
                            let Some(state) = self.state.take() else {
                                return Step::Close;
                            };
                            self.phase = Phase::Working;
                            return Step::Run(Box::new(Job {
                                token,
                                state,
                                frame,
                                // The worker sends the answer itself when
                                // the socket takes it at once.
                                stream: Some(Arc::clone(&self.stream)),
                            }));
                        }
                        Progress::TooLarge(n) => {
                            if self.phase == Phase::TurningAway {
                                self.answer_busy(now);
                            } else {
                                let answer =
                                    connection::encode(&connection::too_large(n), &self.caller);
                                self.send_last(answer, now, WRITE_TIMEOUT);
                            }
                        }
                    }
                }
            }
        }
    }

    fn answer_hello(&mut self, mut frame: Vec<u8>, now: Instant) {
        let answer = connection::answer_hello(&frame);
        frame.zeroize();
        self.greeted = true;
        self.out = connection::encode(&answer.response, &self.caller);
        self.sent = 0;
        self.close_after_write = !answer.keep_open;
        self.phase = Phase::Writing;
        self.phase_ends = now + WRITE_TIMEOUT;
    }

    /// Takes back the state and the answer from the worker.
    pub fn finish(&mut self, done: Done, now: Instant, timeouts: Timeouts) {
        if done.state.in_login_conversation() {
            self.conversation_ends.get_or_insert(now + timeouts.login);
        } else {
            self.conversation_ends = None;
        }
        self.state = Some(done.state);
        self.out = done.answer;
        self.sent = done.sent;
        self.close_after_write = !done.keep_open;
        self.phase = Phase::Writing;
        self.phase_ends = now + WRITE_TIMEOUT;
    }

    /// Takes back the state of a request no worker could run.
    pub fn give_back(&mut self, state: ConnState) {
        self.state = Some(state);
        self.phase = Phase::Idle;
    }

    /// When the connection must have moved on; None while a worker has it.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Working => None,
            Phase::Hello | Phase::Writing | Phase::TurningAway => Some(self.phase_ends),
            Phase::Idle => {
                let ends = match self.reading.started() {
                    Some(first_byte) => first_byte + REQUEST_TIMEOUT,
                    None => self.phase_ends,
                };
                Some(self.conversation_ends.map_or(ends, |c| c.min(ends)))
            }
        }
    }

    /// Acts on a deadline that has passed: closes the connection, or first
    /// tells the client why when it may be listening.
    pub fn expire(&mut self, now: Instant, timeouts: Timeouts) -> Step {
        let who = self.caller.describe();
        match self.phase {
            Phase::Working => Step::Wait,
            Phase::TurningAway => {
                self.answer_busy(now);
                Step::Wait
            }
            Phase::Hello => {
                log::debug!("closing a connection from {who}: no hello within {HELLO_TIMEOUT:?}");
                Step::Close
            }
            Phase::Writing => {
                if self.slot.is_some() {
                    refusal_log::info(
                        &self.caller,
                        format_args!(
                            "closing a connection from {who}: it did not read its answer within {} s",
                            WRITE_TIMEOUT.as_secs()
                        ),
                    );
                }
                Step::Close
            }
            Phase::Idle => {
                if self.conversation_ends.is_some_and(|ends| ends <= now) {
                    let secs = timeouts.login.as_secs();
                    refusal_log::info(
                        &self.caller,
                        format_args!(
                            "closing a connection from {who}: its login conversation took longer than {secs} s ([daemon] login_timeout)"
                        ),
                    );
                    self.part(
                        format!(
                            "the login took longer than {secs} seconds; closing the connection"
                        ),
                        now,
                    );
                    Step::Wait
                } else if self.reading.started().is_some() {
                    let secs = REQUEST_TIMEOUT.as_secs();
                    refusal_log::info(
                        &self.caller,
                        format_args!(
                            "closing a connection from {who}: a request did not arrive whole within {secs} s"
                        ),
                    );
                    self.part(
                        format!("a request must arrive whole within {secs} seconds; closing the connection"),
                        now,
                    );
                    Step::Wait
                } else {
                    log::debug!("closing an idle connection from {who}");
                    Step::Close
                }
            }
        }
    }

    /// Sends a last error that says why the connection ends.
    fn part(&mut self, message: String, now: Instant) {
        let answer = connection::encode(
            &connection::error(ErrorCode::BadRequest, message),
            &self.caller,
        );
        self.send_last(answer, now, PARTING_TIMEOUT);
    }

    fn answer_busy(&mut self, now: Instant) {
        let message = self.busy.take().unwrap_or_default();
        let answer = connection::encode(&connection::error(ErrorCode::Busy, message), &self.caller);
        self.send_last(answer, now, TURN_AWAY_TIMEOUT);
    }

    fn send_last(&mut self, answer: Vec<u8>, now: Instant, timeout: Duration) {
        self.out = answer;
        self.sent = 0;
        self.close_after_write = true;
        self.phase = Phase::Writing;
        self.phase_ends = now + timeout;
    }

    /// Writes what the socket takes; true once the whole answer is out.
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match (&*self.stream).write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.out.zeroize();
    }
}
