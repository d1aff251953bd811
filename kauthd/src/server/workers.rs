//! The threads that run requests. The event loop hands a worker one whole
//! request frame (the hello is answered by the event loop) with its
//! connection's state; the worker decodes it, runs it
//! (start to end on that one thread) and hands back the encoded answer and
//! the state. Idle connections hold no worker, and an idle daemon no
//! worker thread.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kauth_proto::ErrorCode;
use mio::Waker;
use zeroize::Zeroize;

use crate::daemon::Daemon;
use crate::host_net::Prefixes;
use crate::passwords::argon2_pool::QueueKey;
use crate::round_robin::RoundRobin;
use crate::server::api::ConnState;
use crate::server::connection::{self, Answer};
use crate::server::next_frame::{self, Next};
use crate::twofactor::code_check;

/// Workers running requests at once: enough that concurrent logins wait
/// on argon2's per-core queue or the store, not on a free worker.
pub const WORKERS: usize = 64;
/// How long a worker with nothing to do waits for a job before it ends.
pub const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// How long a worker that answered a step of a login conversation waits
/// for the connection's next step before handing the connection back to
/// the event loop (see `next_frame`). A PAM module sends it within a
/// fraction of this; a person typing at a prompt takes far longer.
pub const LINGER: Duration = Duration::from_millis(2);
/// The most steps one worker answers in a row on one connection.
const LINGER_STEPS: usize = 8;

/// One frame to answer.
#[derive(Debug)]
pub struct Job {
    pub token: usize,
    pub state: ConnState,
    /// The whole frame, length included; wiped once decoded.
    pub frame: Vec<u8>,
    /// The connection's socket (non-blocking, shared with the event loop,
    /// which does not touch it while the job runs), to send the answer
    /// without waiting for the event loop.
    pub stream: Option<Arc<UnixStream>>,
}

impl Job {
    fn queue_key(&self, prefixes: Prefixes) -> QueueKey {
        self.state
            .queue_key(prefixes, || connection::named_rhost(&self.frame))
    }
}

/// A job's result.
#[derive(Debug)]
pub struct Done {
    pub token: usize,
    pub state: ConnState,
    /// The answer frame; wiped once sent.
    pub answer: Vec<u8>,
    /// How much of it the worker sent; the event loop sends the rest.
    pub sent: usize,
    pub keep_open: bool,
}

/// The finished jobs, for the event loop to collect.
#[derive(Debug, Default)]
pub struct Finished(Mutex<Pending>);

#[derive(Debug, Default)]
struct Pending {
    done: Vec<Done>,
    /// A wake-up of the event loop was asked for since it last took them.
    wake_asked: bool,
}

impl Finished {
    /// Everything finished so far.
    pub fn take(&self) -> Vec<Done> {
        let mut pending = self.lock();
        pending.wake_asked = false;
        std::mem::take(&mut pending.done)
    }

    /// Adds a finished job; true when the event loop needs waking for it:
    /// it is the first job with something left to do (an answer to send,
    /// a connection to watch again) since the event loop last took them.
    /// A job with nothing left but closing its connection waits for the
    /// event loop's next turn (at the latest its next tick; a new
    /// connection takes them first, so a freed slot is free for it).
    fn push(&self, done: Done) -> bool {
        let urgent = done.keep_open || done.sent < done.answer.len();
        let mut pending = self.lock();
        pending.done.push(done);
        let wake = urgent && !pending.wake_asked;
        pending.wake_asked |= wake;
        wake
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Jobs waiting for a worker, and the workers there are. The jobs are
/// served round-robin by remote host, else by uid (as argon2 runs are):
/// while a flood's requests hold every worker waiting for argon2, the
/// next free worker still goes to another host's login in its turn.
#[derive(Debug, Default)]
struct Queue {
    jobs: RoundRobin<QueueKey, Box<Job>>,
    running: usize,
    idle: usize,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    daemon: Arc<Daemon>,
    finished: Arc<Finished>,
    waker: Arc<Waker>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Up to [`WORKERS`] threads, started when requests wait and ended when
/// they have had nothing to do for [`KEEP_ALIVE`]: what a burst of
/// requests touched (a deeply nested frame takes a lot of stack) goes
/// back to the system with them.
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
}

impl Workers {
    /// Each finished job goes to `finished` and wakes the event loop.
    pub fn new(daemon: &Arc<Daemon>, finished: &Arc<Finished>, waker: &Arc<Waker>) -> Workers {
        Workers {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                daemon: Arc::clone(daemon),
                finished: Arc::clone(finished),
                waker: Arc::clone(waker),
            }),
        }
    }

    /// Queues a job for a waiting worker, or a new one. Gives the job
    /// back if no worker runs and none can be started.
    pub fn submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        let key = job.queue_key(code_check::prefixes(&self.shared.daemon.config()));
        let mut queue = self.shared.queue();
        queue.jobs.push(key.clone(), job);
        if queue.jobs.len() <= queue.idle {
            self.shared.ready.notify_one();
            return Ok(());
        }
        if queue.running >= WORKERS {
            // A busy worker takes it when done.
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || work(&shared));
        match spawned {
            Ok(_) => {
                queue.running += 1;
                Ok(())
            }
            Err(e) => {
                log::error!("cannot start a worker thread: {e}");
                if queue.running > 0 {
                    return Ok(());
                }
                queue.jobs.take_last(&key).map_or(Ok(()), Err)
            }
        }
    }
}

fn work(shared: &Shared) {
    let mut queue = shared.queue();
    loop {
        if let Some(job) = queue.jobs.pop() {
            drop(queue);
            let wake = shared.finished.push(run_conversation(shared, *job));
            if wake {
                if let Err(e) = shared.waker.wake() {
                    log::error!("a worker cannot wake the event loop: {e}");
                }
            }
            queue = shared.queue();
            continue;
        }
        queue.idle += 1;
        let (guard, waited) = match shared.ready.wait_timeout(queue, KEEP_ALIVE) {
            Ok(woken) => woken,
            Err(poisoned) => poisoned.into_inner(),
        };
        queue = guard;
        queue.idle -= 1;
        if waited.timed_out() && queue.jobs.is_empty() {
            queue.running -= 1;
            return;
        }
    }
}

/// Answers the job's frame, then, while the connection is in a login
/// conversation whose answer went out whole and no other job waits for a
/// worker, the steps that follow at once (up to [`LINGER_STEPS`]).
fn run_conversation(shared: &Shared, job: Job) -> Done {
    let Job {
        token,
        state,
        frame,
        stream,
    } = job;
    // The connection was in a login conversation, or enters one below.
    let mut in_login = state.in_login_conversation();
    let mut done = run(&shared.daemon, token, state, frame, stream.as_deref());
    let Some(stream) = stream else {
        return done;
    };
    for _ in 0..LINGER_STEPS {
        let answered_whole = done.sent == done.answer.len();
        if !(done.keep_open && answered_whole && done.state.in_login_conversation()) {
            break;
        }
        in_login = true;
        if !shared.queue().jobs.is_empty() {
            break;
        }
        match next_frame::take_whole_frame(&stream, LINGER) {
            Next::Frame(frame) => {
                done.answer.zeroize();
                done = run(&shared.daemon, token, done.state, frame, Some(&stream));
            }
            Next::NotYet => break,
            Next::Closed | Next::Broken => {
                done.keep_open = false;
                break;
            }
        }
    }
    if in_login && login_just_ended(&done) && shared.queue().jobs.is_empty() {
        // A PAM module closes its connection as soon as the conversation
        // is over: seen here, the event loop need not watch the
        // connection again only to see it close.
        if next_frame::closed_within(&stream, next_frame::SPIN) {
            done.keep_open = false;
        }
    }
    done
}

/// The last step answered ended the login conversation (its whole answer
/// went out, and the connection stays open for whatever comes next).
fn login_just_ended(done: &Done) -> bool {
    done.keep_open && done.sent == done.answer.len() && !done.state.in_login_conversation()
}

/// Answers one frame. A panic in a handler ends that connection with an
/// error, not the worker.
fn run(
    daemon: &Daemon,
    token: usize,
    mut state: ConnState,
    mut frame: Vec<u8>,
    stream: Option<&UnixStream>,
) -> Done {
    let answered = catch_unwind(AssertUnwindSafe(|| {
        connection::answer_request(daemon, &mut state, &frame)
    }));
    frame.zeroize();
    let answer = answered.unwrap_or_else(|_| {
        log::error!(
            "a request from {} failed inside kauthd; closing its connection",
            state.caller.describe()
        );
        Answer {
            response: connection::error(
                ErrorCode::Internal,
                "kauthd failed while answering; see its log".to_owned(),
            ),
            keep_open: false,
        }
    });
    let encoded = connection::encode(&answer.response, &state.caller);
    let sent = stream.map_or(0, |stream| send_what_fits(stream, &encoded));
    Done {
        token,
        state,
        answer: encoded,
        sent,
        keep_open: answer.keep_open,
    }
}

/// Writes what the socket takes now, without waiting; returns how much.
/// A failure is left for the event loop to find when it sends the rest.
fn send_what_fits(mut stream: &UnixStream, answer: &[u8]) -> usize {
    let mut sent = 0;
    while sent < answer.len() {
        match stream.write(&answer[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::access::{Caller, Role};

    fn done(keep_open: bool, sent: usize) -> Done {
        Done {
            token: 7,
            state: ConnState::new(Caller {
                uid: 1000,
                gid: 1000,
                pid: 1,
                role: Role::User,
                name: None,
            }),
            answer: vec![1, 2, 3, 4],
            sent,
            keep_open,
        }
    }

    #[test]
    fn only_a_job_with_something_left_to_do_wakes_the_event_loop() {
        let finished = Finished::default();
        assert!(!finished.push(done(false, 4)), "only a close is left");
        assert!(finished.push(done(true, 4)), "the connection stays open");
        assert!(
            !finished.push(done(true, 4)),
            "a wake-up is already asked for"
        );
        assert_eq!(finished.take().len(), 3);
        assert!(
            finished.push(done(false, 2)),
            "part of the answer is unsent"
        );
    }
}
