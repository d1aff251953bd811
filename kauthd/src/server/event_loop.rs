//! The one thread that owns every connection: it accepts them (or turns
//! them away), reads and writes their frames without blocking, hands each
//! whole request to a worker, and closes connections whose deadlines pass.
//! An idle connection costs a socket and a few hundred bytes, no thread.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kauth_proto::peer::peer_cred;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::daemon::Daemon;
use crate::error::Error;
use crate::malloc;
use crate::server::admission::{Admission, Limits};
use crate::server::caller_cache::CallerCache;
use crate::server::conn_io::{Conn, Step, Timeouts};
use crate::server::refusal_log;
use crate::server::workers::{Finished, Job, Workers};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;

/// How often deadlines are checked while connections are open.
const TICK: Duration = Duration::from_millis(100);
/// How long a turn waits with no connection open (signals are noticed
/// between turns).
const IDLE_TICK: Duration = Duration::from_millis(250);
/// Connections accepted in one go before the others get a turn.
const ACCEPT_BATCH: usize = 256;
/// Turned-away connections waiting for their `busy` answer at once;
/// beyond this they are closed without one (clients take that as a
/// failure too).
const MAX_TURNING_AWAY: usize = 128;
/// How long accepting pauses when kauthd is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long without an answer before the memory requests freed is given
/// back to the system. Not at each close: one login after another would
/// then pay for a trim each.
const QUIET: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct EventLoop {
    poll: Poll,
    events: Events,
    listener: UnixListener,
    daemon: Arc<Daemon>,
    workers: Workers,
    finished: Arc<Finished>,
    conns: HashMap<usize, Conn>,
    next_token: usize,
    admission: Admission,
    callers: CallerCache,
    turning_away: usize,
    /// When to try accepting again without a new readiness event.
    accept_again: Option<Instant>,
    last_sweep: Instant,
    last_fd_warning: Option<Instant>,
    /// When the last request was answered, if memory was not given back
    /// since.
    answered_since_trim: Option<Instant>,
    /// Connections closed this turn (their slots are free already), their
    /// sockets closed at its end: after the turn's requests went to the
    /// workers, not before.
    closing: Vec<Conn>,
}

impl EventLoop {
    /// Takes over the (non-blocking) listener and starts the workers.
    pub fn new(listener: UnixListener, daemon: Arc<Daemon>) -> Result<EventLoop, Error> {
        let setup = |e: io::Error| Error::failed(format!("cannot set up the event loop: {e}"));
        let poll = Poll::new().map_err(setup)?;
        poll.registry()
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .map_err(setup)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(setup)?);
        let finished = Arc::new(Finished::default());
        let workers = Workers::new(&daemon, &finished, &waker);
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            listener,
            daemon,
            workers,
            finished,
            conns: HashMap::new(),
            next_token: FIRST_CONNECTION,
            admission: Admission::new(),
            callers: CallerCache::default(),
            turning_away: 0,
            accept_again: Some(Instant::now()),
            last_sweep: Instant::now(),
            last_fd_warning: None,
            answered_since_trim: None,
            closing: Vec::new(),
        })
    }

    /// Waits for something to do (at most a tick) and does it.
    pub fn turn(&mut self) {
        let mut timeout = if self.conns.is_empty() {
            IDLE_TICK
        } else {
            TICK
        };
        if let Some(at) = self.accept_again {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
        if let Some(at) = self.answered_since_trim {
            timeout = timeout.min((at + QUIET).saturating_duration_since(Instant::now()));
        }
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("waiting for connections failed: {e}");
                std::thread::sleep(TICK);
            }
            return;
        }
        let ready: Vec<Token> = self.events.iter().map(|event| event.token()).collect();
        // First what the workers finished: connections they closed free
        // their slots before new ones are admitted.
        self.collect_finished();
        for token in ready {
            match token {
                LISTENER => self.accept_all(),
                WAKER => self.collect_finished(),
                Token(token) => self.advance(token),
            }
        }
        self.collect_finished();
        if self.accept_again.is_some_and(|at| at <= Instant::now()) {
            self.accept_all();
        }
        if self.last_sweep.elapsed() >= TICK {
            self.sweep();
        }
        self.close_sockets();
        self.trim_when_quiet();
    }

    /// Closes the sockets of the connections closed this turn.
    fn close_sockets(&mut self) {
        for mut conn in self.closing.drain(..) {
            stop_watching(&self.poll, &mut conn);
        }
    }

    /// Gives back what a burst of requests freed, once it is over.
    fn trim_when_quiet(&mut self) {
        if self
            .answered_since_trim
            .is_some_and(|at| at.elapsed() >= QUIET)
        {
            self.answered_since_trim = None;
            malloc::release_free_memory();
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts::from_config(&self.daemon.config().daemon)
    }

    fn accept_all(&mut self) {
        self.accept_again = None;
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    self.warn_accept_failed(&e);
                    self.accept_again = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
        // More may be waiting: take them at the next turn, after the others.
        self.accept_again = Some(Instant::now());
    }

    /// Out of file descriptors (or memory): say so, at most once a minute.
    fn warn_accept_failed(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_fd_warning
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60))
        {
            return;
        }
        self.last_fd_warning = Some(now);
        log::error!(
            "cannot accept connections ({e}) with {} open; raise kauthd's file limit (LimitNOFILE) or lower [daemon] max_connections",
            self.conns.len()
        );
    }

    /// Gives the connection a slot, or turns it away with `busy`.
    fn admit(&mut self, stream: UnixStream) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("dropping a connection that cannot be made non-blocking: {e}");
            return;
        }
        let cred = match peer_cred(&stream) {
            Ok(cred) => cred,
            Err(e) => {
                log::warn!("refusing a connection whose credentials cannot be read: {e}");
                return;
            }
        };
        let config = self.daemon.config();
        let now = Instant::now();
        let caller = self.callers.classify(cred, &config, now);
        let conn = match self
            .admission
            .admit(&caller, Limits::from_config(&config.daemon))
        {
            Ok(slot) => Conn::admitted(stream, caller, slot, now),
            Err(refusal) => {
                refusal_log::warn(
                    &caller,
                    format_args!(
                        "turned a connection from {} away: {}",
                        caller.describe(),
                        refusal.reason()
                    ),
                );
                if self.turning_away >= MAX_TURNING_AWAY {
                    return;
                }
                self.turning_away += 1;
                Conn::turned_away(stream, caller, refusal.answer(), now)
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        self.conns.insert(token, conn);
        // A PAM module sends its hello and first request right behind the
        // connect: then the request goes to a worker before the socket is
        // ever watched (watching it only to stop at once costs two system
        // calls).
        let timeouts = self.timeouts();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match conn.advance(token, now, timeouts) {
            Step::Wait => {}
            Step::Run(job) => return self.hand_to_worker(token, job),
            Step::Close => return self.close(token),
        }
        // What came since the first read is reported by the next poll: a
        // socket that is ready when it is registered is reported at once.
        if let Err(e) = self.watch(token) {
            log::error!("cannot watch a new connection: {e}");
            self.close(token);
        }
    }

    /// Watches the connection's socket for the event loop. Its readiness
    /// is reported at once if it is ready now (edge-triggered, so nothing
    /// that arrived while it was not watched is missed).
    fn watch(&mut self, token: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        self.poll.registry().register(
            &mut SourceFd(&conn.stream.as_raw_fd()),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conn.watched = true;
        Ok(())
    }

    /// Stops watching the socket while a worker has the connection: the
    /// worker reads and writes it itself, and each of its reads and writes
    /// would otherwise wake this thread for nothing.
    fn unwatch(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(&token) {
            stop_watching(&self.poll, conn);
        }
    }

    /// Moves a connection on after its socket became ready.
    fn advance(&mut self, token: usize) {
        let timeouts = self.timeouts();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let step = conn.advance(token, Instant::now(), timeouts);
        self.act(token, step);
    }

    fn act(&mut self, token: usize, step: Step) {
        match step {
            Step::Wait => {}
            Step::Run(job) => {
                self.unwatch(token);
                self.hand_to_worker(token, job);
            }
            Step::Close => self.close(token),
        }
    }

    /// Queues the connection's request for a worker (its socket is not
    /// watched meanwhile); closes the connection if no worker can run it.
    fn hand_to_worker(&mut self, token: usize, job: Box<Job>) {
        if let Err(job) = self.workers.submit(job) {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.give_back(job.state);
            }
            self.close(token);
        }
    }

    /// Hands the workers' answers to their connections.
    fn collect_finished(&mut self) {
        let done = self.finished.take();
        if done.is_empty() {
            return;
        }
        self.answered_since_trim = Some(Instant::now());
        let timeouts = self.timeouts();
        for done in done {
            let token = done.token;
            // A connection closed meanwhile (at stop) just drops the answer.
            if let Some(conn) = self.conns.get_mut(&token) {
                let only_close = !done.keep_open && done.sent == done.answer.len();
                conn.finish(done, Instant::now(), timeouts);
                if only_close {
                    self.close(token);
                    continue;
                }
                if let Err(e) = self.watch(token) {
                    log::error!("cannot watch a connection again: {e}");
                    self.close(token);
                    continue;
                }
                self.advance(token);
            }
        }
    }

    /// Acts on the deadlines that have passed.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.last_sweep = now;
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline().is_some_and(|at| at <= now))
            .map(|(token, _)| *token)
            .collect();
        if due.is_empty() {
            return;
        }
        let timeouts = self.timeouts();
        for token in due {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            match conn.expire(now, timeouts) {
                // It has a last answer to send: try now.
                Step::Wait => self.advance(token),
                step => self.act(token, step),
            }
        }
    }

    fn close(&mut self, token: usize) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        if conn.working() {
            // Never while a worker has its state: put it back.
            self.conns.insert(token, conn);
            return;
        }
        match conn.take_slot() {
            Some(slot) => self.admission.release(slot),
            None => self.turning_away = self.turning_away.saturating_sub(1),
        }
        self.closing.push(conn);
    }
}

fn stop_watching(poll: &Poll, conn: &mut Conn) {
    if std::mem::take(&mut conn.watched) {
        let _ = poll
            .registry()
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
    }
}
