//! Every argon2 run in kauthd goes through here: password hashing and
//! checking (the dummy check for unknown users too) and recovery codes.
//!
//! At most one run per core happens at a time, so a flood of logins costs
//! a bounded amount of memory instead of one argon2 memory cost per
//! connection. The others wait their turn, fairly by who asks: each run
//! names a [`QueueKey`] (the remote host, else the local uid), and waiting
//! runs are served round-robin across keys, in arrival order within a
//! key. A host with 2,000 attempts waiting gets one turn per round like a
//! host with one, so it cannot starve another host's login.
//!
//! A [`Turn`] may carry a check made again just before its run starts
//! (the rate-limit lock, see `code_check::attempt`): attempts that queued
//! before a lock was set then end without running argon2.
//!
//! The queue needs no bound of its own: each waiting run is a connection
//! blocked in its request, so `[daemon] max_connections` bounds it, and a
//! waiting run holds a few dozen bytes here, no argon2 memory. Each slot
//! keeps its own block memory, reused from run to run, so the memory the
//! runs need is allocated once per slot instead of once per login. A free
//! slot's memory is always wiped: memory handed straight to a waiting run
//! is not (that run overwrites the blocks it uses), memory kept free is.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use argon2::{Argon2, Block};
use zeroize::Zeroize;

use crate::host_net::{self, Prefixes};
use crate::round_robin::RoundRobin;

/// Who an argon2 run is for: the queue it waits in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueKey {
    /// The remote host a login names (PAM_RHOST).
    Host(String),
    /// The local uid that connected, when no remote host is named.
    Uid(u32),
    /// The account a new password or new recovery codes are hashed for:
    /// done only for root, or after the person proved who they are.
    Account(String),
}

impl QueueKey {
    /// The remote host's network (as the rate limit counts it, see
    /// `host_net`) when there is one, else the caller's uid: the addresses
    /// of one network share one turn.
    pub fn of(rhost: Option<&str>, uid: u32, prefixes: Prefixes) -> QueueKey {
        match rhost.filter(|host| !host.is_empty()) {
            Some(host) => QueueKey::Host(host_net::limit_key(host, prefixes)),
            None => QueueKey::Uid(uid),
        }
    }
}

/// One argon2 run's place in the queue: whose it is, and what must still
/// hold when its turn comes.
pub struct Turn<'a> {
    key: QueueKey,
    still_allowed: Option<&'a dyn Fn() -> bool>,
}

impl<'a> Turn<'a> {
    /// A run for `key` that goes ahead whenever its turn comes.
    pub fn new(key: QueueKey) -> Turn<'static> {
        Turn {
            key,
            still_allowed: None,
        }
    }

    /// A run for `key` that goes ahead only if `still_allowed` says so when
    /// its turn comes, just before argon2 would start.
    pub fn checked(key: QueueKey, still_allowed: &'a dyn Fn() -> bool) -> Turn<'a> {
        Turn {
            key,
            still_allowed: Some(still_allowed),
        }
    }

    pub fn key(&self) -> &QueueKey {
        &self.key
    }

    fn may_run(&self) -> bool {
        self.still_allowed.is_none_or(|allowed| allowed())
    }
}

/// Why [`hash_into`] computed nothing.
#[derive(Debug)]
pub enum RunError {
    /// The turn's check said no when its turn came.
    Stopped,
    /// argon2 refused the parameters or the input.
    Argon2(argon2::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Stopped => f.write_str("the attempt was stopped before its argon2 run"),
            RunError::Argon2(e) => write!(f, "argon2 failed: {e}"),
        }
    }
}

/// What a [`FairSemaphore`] does with a resource that no waiter takes.
pub trait Reusable: Default {
    /// Called before the resource is kept free (outside the semaphore's
    /// lock); not when it goes straight to a waiter.
    fn before_kept_free(&mut self);
}

/// A counting semaphore whose permits are resources (here: argon2 memory),
/// handed out round-robin across the keys of those waiting, and in
/// arrival order within a key.
#[derive(Debug)]
pub struct FairSemaphore<T> {
    queue: Mutex<Queue<T>>,
}

#[derive(Debug)]
struct Queue<T> {
    /// Free resources; only while nobody waits.
    free: Vec<T>,
    /// The waiting runs, by key.
    waiting: RoundRobin<QueueKey, Waiter>,
    /// Resources handed to a waiter that has not picked them up yet.
    granted: HashMap<u64, T>,
    next_ticket: u64,
}

/// A waiting run: its ticket, and the signal it waits on (each its own,
/// so a freed resource wakes one waiter, not all of them).
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    ready: Arc<Condvar>,
}

impl<T> Queue<T> {
    /// Hands `resource` to the next waiter, or keeps it free.
    fn pass_on(&mut self, resource: T) {
        match self.waiting.pop() {
            Some(waiter) => {
                self.granted.insert(waiter.ticket, resource);
                waiter.ready.notify_one();
            }
            None => self.free.push(resource),
        }
    }
}

/// A resource on loan from a [`FairSemaphore`]; given back on drop (also
/// when the holder panics).
#[derive(Debug)]
pub struct Permit<'a, T: Reusable> {
    semaphore: &'a FairSemaphore<T>,
    resource: T,
}

impl<T: Reusable> FairSemaphore<T> {
    /// One permit per resource.
    pub fn new(resources: Vec<T>) -> Self {
        FairSemaphore {
            queue: Mutex::new(Queue {
                free: resources,
                waiting: RoundRobin::default(),
                granted: HashMap::new(),
                next_ticket: 0,
            }),
        }
    }

    /// Takes a free resource, or waits for `key`'s turn (round-robin
    /// across the keys waiting, arrival order within `key`).
    pub fn acquire(&self, key: QueueKey) -> Permit<'_, T> {
        let mut queue = self.lock();
        // Resources are free only while nobody waits: no one is passed.
        if let Some(resource) = queue.free.pop() {
            return self.permit(resource);
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        let ready = Arc::new(Condvar::new());
        queue.waiting.push(
            key,
            Waiter {
                ticket,
                ready: Arc::clone(&ready),
            },
        );
        loop {
            if let Some(resource) = queue.granted.remove(&ticket) {
                return self.permit(resource);
            }
            queue = match ready.wait(queue) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }

    fn permit(&self, resource: T) -> Permit<'_, T> {
        Permit {
            semaphore: self,
            resource,
        }
    }

    /// A poisoned lock is still consistent: the queue is only changed in
    /// a few lines that cannot panic.
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        match self.queue.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Hands `resource` to the next waiter; if none waits, readies it to
    /// be kept free first (a waiter that comes meanwhile gets it readied).
    fn give_back(&self, mut resource: T) {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            drop(queue);
            resource.before_kept_free();
            queue = self.lock();
        }
        queue.pass_on(resource);
    }

    /// How many runs are waiting.
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

impl<T: Reusable> Deref for Permit<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.resource
    }
}

impl<T: Reusable> DerefMut for Permit<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.resource
    }
}

impl<T: Reusable> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.semaphore.give_back(std::mem::take(&mut self.resource));
    }
}

/// How many argon2 runs are waiting for their turn now.
pub fn queue_length() -> usize {
    slots().waiting()
}

/// How many argon2 runs may happen at once: one per core.
pub fn concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// One slot's argon2 memory, and how much of it may still hold the data
/// of a run.
#[derive(Debug, Default)]
struct Memory {
    blocks: Vec<Block>,
    /// `blocks[..dirty]` holds what a run left there.
    dirty: usize,
}

/// Memory going straight to a waiting run is not wiped: that run
/// overwrites the blocks it uses (argon2's first pass writes every block
/// before reading one), so during a burst the memory is wiped once the
/// burst is over, not between runs. Wiping 19 MiB costs about a twentieth
/// of the run itself.
impl Reusable for Memory {
    fn before_kept_free(&mut self) {
        let dirty = self.dirty.min(self.blocks.len());
        self.blocks[..dirty].iter_mut().for_each(Zeroize::zeroize);
        self.dirty = 0;
    }
}

fn slots() -> &'static FairSemaphore<Memory> {
    static SLOTS: OnceLock<FairSemaphore<Memory>> = OnceLock::new();
    SLOTS
        .get_or_init(|| FairSemaphore::new((0..concurrency()).map(|_| Memory::default()).collect()))
}

/// Runs argon2 (with `argon2`'s algorithm, version and cost) over
/// `password` and `salt` into `out` when `turn` comes and its check still
/// allows it. The slot's memory grows to the largest cost seen and is
/// wiped when it is kept free (see `Reusable for Memory`).
pub fn hash_into(
    turn: &Turn<'_>,
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), RunError> {
    let needed = argon2.params().block_count();
    let mut memory = slots().acquire(turn.key.clone());
    if !turn.may_run() {
        return Err(RunError::Stopped);
    }
    if memory.blocks.len() < needed {
        memory.blocks.resize(needed, Block::new());
    }
    memory.dirty = memory.dirty.max(needed);
    let result =
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory.blocks[..needed]);
    result.map_err(RunError::Argon2)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn host(name: &str) -> QueueKey {
        QueueKey::Host(name.to_owned())
    }

    impl Reusable for () {
        fn before_kept_free(&mut self) {}
    }

    impl Reusable for u8 {
        fn before_kept_free(&mut self) {}
    }

    /// A resource that records whether it was readied to be kept free.
    #[derive(Debug, Default)]
    struct Tracked {
        readied: bool,
    }

    impl Reusable for Tracked {
        fn before_kept_free(&mut self) {
            self.readied = true;
        }
    }

    #[test]
    fn a_resource_is_readied_when_kept_free_and_not_when_handed_to_a_waiter() {
        let semaphore = Arc::new(FairSemaphore::new(vec![
            Tracked::default(),
            Tracked::default(),
        ]));
        let first = semaphore.acquire(QueueKey::Uid(1));
        let second = semaphore.acquire(QueueKey::Uid(2));
        let s = Arc::clone(&semaphore);
        let waiter = std::thread::spawn(move || s.acquire(QueueKey::Uid(3)).readied);
        while semaphore.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Both holders finish while a run waits: only one slot goes to it.
        drop(first);
        drop(second);
        assert!(!waiter.join().unwrap(), "the waiter got memory as it was");
        let queue = semaphore.lock();
        assert_eq!(queue.free.len(), 2);
        assert!(queue.free.iter().all(|t| t.readied), "{:?}", queue.free);
    }

    #[test]
    fn never_more_holders_than_permits() {
        let semaphore = Arc::new(FairSemaphore::new(vec![(), ()]));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _permit = semaphore.acquire(QueueKey::Uid(i % 3));
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// Holds the only permit, queues one waiter per `(key, label)` in the
    /// order given (each one queued before the next arrives), then lets
    /// them all through; returns the labels in the order they were served.
    fn service_order(arrivals: &[(QueueKey, &'static str)]) -> Vec<&'static str> {
        let semaphore = Arc::new(FairSemaphore::new(vec![()]));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = semaphore.acquire(host("holder"));
        let mut threads = Vec::new();
        for (i, (key, label)) in arrivals.iter().cloned().enumerate() {
            let (shared, order) = (semaphore.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _permit = shared.acquire(key);
                order.lock().unwrap().push(label);
            }));
            while semaphore.waiting() < i + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        let served = order.lock().unwrap().clone();
        served
    }

    #[test]
    fn one_key_is_served_in_arrival_order() {
        let arrivals: Vec<_> = ["a0", "a1", "a2", "a3", "a4", "a5"]
            .into_iter()
            .map(|label| (host("a"), label))
            .collect();
        assert_eq!(
            service_order(&arrivals),
            ["a0", "a1", "a2", "a3", "a4", "a5"]
        );
    }

    #[test]
    fn keys_take_turns_round_robin() {
        let arrivals = [
            (host("a"), "a0"),
            (host("a"), "a1"),
            (host("a"), "a2"),
            (host("b"), "b0"),
            (host("a"), "a3"),
            (QueueKey::Uid(1000), "u0"),
            (host("b"), "b1"),
        ];
        assert_eq!(
            service_order(&arrivals),
            ["a0", "b0", "u0", "a1", "b1", "a2", "a3"]
        );
    }

    #[test]
    fn a_late_key_waits_one_turn_however_many_the_flooding_key_queued() {
        let mut arrivals: Vec<_> = (0..200).map(|_| (host("flood"), "flood")).collect();
        arrivals.push((host("other"), "other"));
        let served = service_order(&arrivals);
        let position = served.iter().position(|&label| label == "other").unwrap();
        assert_eq!(position, 1, "served: {served:?}");
    }

    #[test]
    fn a_panicking_holder_gives_its_permit_back() {
        let semaphore = Arc::new(FairSemaphore::new(vec![7u8]));
        let s = semaphore.clone();
        let _ = std::thread::spawn(move || {
            let _permit = s.acquire(QueueKey::Uid(0));
            panic!("holder dies");
        })
        .join();
        assert_eq!(*semaphore.acquire(QueueKey::Uid(0)), 7);
    }

    #[test]
    fn a_turn_whose_check_says_no_runs_nothing() {
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        let asked = AtomicUsize::new(0);
        let locked = || {
            asked.fetch_add(1, Ordering::SeqCst);
            false
        };
        let turn = Turn::checked(host("a"), &locked);
        let result = hash_into(&turn, &argon, b"password", b"somesalt", &mut out);
        assert!(matches!(result, Err(RunError::Stopped)), "{result:?}");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(out, [0u8; 32], "argon2 ran anyway");
        let open = || true;
        let turn = Turn::checked(host("a"), &open);
        hash_into(&turn, &argon, b"password", b"somesalt", &mut out).unwrap();
        assert_ne!(out, [0u8; 32]);
    }

    #[test]
    fn a_free_slots_memory_is_wiped() {
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        hash_into(
            &Turn::new(host("a")),
            &argon,
            b"password",
            b"somesalt",
            &mut out,
        )
        .unwrap();
        let queue = slots().lock();
        assert!(!queue.free.is_empty() || !queue.waiting.is_empty());
        for memory in &queue.free {
            assert_eq!(memory.dirty, 0);
            let zero = Block::new();
            assert!(memory.blocks.iter().all(|b| b.as_ref() == zero.as_ref()));
        }
    }

    #[test]
    fn hash_into_matches_the_crates_own_allocation() {
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let turn = Turn::new(QueueKey::Uid(0));
        let mut pooled = [0u8; 32];
        let mut plain = [0u8; 32];
        hash_into(&turn, &argon, b"password", b"somesalt", &mut pooled).unwrap();
        argon
            .hash_password_into(b"password", b"somesalt", &mut plain)
            .unwrap();
        assert_eq!(pooled, plain);
        // A second run reuses (wiped) memory and gives the same answer.
        hash_into(&turn, &argon, b"password", b"somesalt", &mut pooled).unwrap();
        assert_eq!(pooled, plain);
    }

    #[test]
    fn the_key_is_the_remote_hosts_network_else_the_uid() {
        let prefixes = Prefixes { ipv4: 32, ipv6: 64 };
        let key = |rhost, uid| QueueKey::of(rhost, uid, prefixes);
        assert_eq!(key(Some("10.0.0.1"), 1000), host("10.0.0.1"));
        assert_eq!(key(Some("2001:db8:1:2::5"), 0), host("2001:db8:1:2::/64"));
        assert_eq!(
            key(Some("2001:db8:1:2::5"), 0),
            key(Some("2001:db8:1:2:ffff::9"), 0),
            "the addresses of one /64 share a turn"
        );
        assert_eq!(key(Some(""), 1000), QueueKey::Uid(1000));
        assert_eq!(key(None, 0), QueueKey::Uid(0));
    }
}
