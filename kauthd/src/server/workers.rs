//! The threads that run requests. The event loop hands a worker one whole
//! frame with its connection's state; the worker decodes it, runs it
//! (start to end on that one thread) and hands back the encoded answer and
//! the state. Idle connections hold no worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use kauth_proto::ErrorCode;
use mio::Waker;
use zeroize::Zeroize;

use crate::daemon::Daemon;
use crate::server::api::ConnState;
use crate::server::connection::{self, Answer};

/// Workers running requests at once: enough that concurrent logins wait
/// on argon2's per-core queue or the store, not on a free worker.
pub const WORKERS: usize = 64;

/// One frame to answer.
#[derive(Debug)]
pub struct Job {
    pub token: usize,
    pub state: ConnState,
    /// The whole frame, length included; wiped once decoded.
    pub frame: Vec<u8>,
    /// Whether the hello was answered already (else this frame is the hello).
    pub greeted: bool,
}

/// A job's result.
#[derive(Debug)]
pub struct Done {
    pub token: usize,
    pub state: ConnState,
    /// The answer frame; wiped once sent.
    pub answer: Vec<u8>,
    pub keep_open: bool,
}

/// The finished jobs, for the event loop to collect.
#[derive(Debug, Default)]
pub struct Finished(Mutex<Vec<Done>>);

impl Finished {
    /// Everything finished so far.
    pub fn take(&self) -> Vec<Done> {
        std::mem::take(&mut *self.lock())
    }

    fn push(&self, done: Done) {
        self.lock().push(done);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Done>> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[derive(Debug)]
pub struct Workers {
    jobs: Sender<Box<Job>>,
}

impl Workers {
    /// Starts the workers; each finished job wakes the event loop.
    pub fn start(
        daemon: &Arc<Daemon>,
        finished: &Arc<Finished>,
        waker: &Arc<Waker>,
    ) -> std::io::Result<Workers> {
        let (jobs, receiver) = channel::<Box<Job>>();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WORKERS {
            let daemon = Arc::clone(daemon);
            let finished = Arc::clone(finished);
            let waker = Arc::clone(waker);
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || work(&daemon, &receiver, &finished, &waker))?;
        }
        Ok(Workers { jobs })
    }

    /// Queues a job; false if no worker is left to run it.
    pub fn submit(&self, job: Box<Job>) -> bool {
        self.jobs.send(job).is_ok()
    }
}

fn work(daemon: &Daemon, jobs: &Mutex<Receiver<Box<Job>>>, finished: &Finished, waker: &Waker) {
    loop {
        let job = {
            let receiver = match jobs.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            receiver.recv()
        };
        let Ok(job) = job else {
            return;
        };
        finished.push(run(daemon, *job));
        if let Err(e) = waker.wake() {
            log::error!("a worker cannot wake the event loop: {e}");
        }
    }
}

/// Answers one frame. A panic in a handler ends that connection with an
/// error, not the worker.
fn run(daemon: &Daemon, job: Job) -> Done {
    let Job {
        token,
        mut state,
        mut frame,
        greeted,
    } = job;
    let answered = catch_unwind(AssertUnwindSafe(|| {
        if greeted {
            connection::answer_request(daemon, &mut state, &frame)
        } else {
            connection::answer_hello(&frame)
        }
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
    Done {
        token,
        state,
        answer: encoded,
        keep_open: answer.keep_open,
    }
}
