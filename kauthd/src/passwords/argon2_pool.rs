//! Every argon2 run in kauthd goes through here: password hashing and
//! checking (the dummy check for unknown users too) and recovery codes.
//!
//! At most one run per core happens at a time, so a flood of logins costs
//! a bounded amount of memory instead of one argon2 memory cost per
//! connection; the others wait their turn in arrival order (a fair ticket
//! queue, so no login starves). Each slot keeps its own block memory,
//! reused from run to run and wiped after each, so the memory the runs
//! need is allocated once per slot instead of once per login.

use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use argon2::{Argon2, Block};
use zeroize::Zeroize;

/// A counting semaphore whose permits are resources (here: argon2 memory),
/// handed out strictly in the order they were asked for.
#[derive(Debug)]
pub struct FairSemaphore<T> {
    queue: Mutex<Queue<T>>,
    turn: Condvar,
}

#[derive(Debug)]
struct Queue<T> {
    /// The ticket the next arrival takes.
    next_ticket: u64,
    /// The ticket admitted next; every smaller ticket has been admitted.
    serving: u64,
    free: Vec<T>,
}

/// A resource on loan from a [`FairSemaphore`]; given back on drop (also
/// when the holder panics).
#[derive(Debug)]
pub struct Permit<'a, T: Default> {
    semaphore: &'a FairSemaphore<T>,
    resource: T,
}

impl<T: Default> FairSemaphore<T> {
    /// One permit per resource.
    pub fn new(resources: Vec<T>) -> Self {
        FairSemaphore {
            queue: Mutex::new(Queue {
                next_ticket: 0,
                serving: 0,
                free: resources,
            }),
            turn: Condvar::new(),
        }
    }

    /// Waits until every earlier caller has been served and a resource is
    /// free, then takes it.
    pub fn acquire(&self) -> Permit<'_, T> {
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        let resource = loop {
            if queue.serving == ticket {
                if let Some(resource) = queue.free.pop() {
                    break resource;
                }
            }
            queue = match self.turn.wait(queue) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        };
        queue.serving += 1;
        drop(queue);
        // The next ticket may be waiting for exactly this: a free resource
        // and its turn.
        self.turn.notify_all();
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

    fn give_back(&self, resource: T) {
        self.lock().free.push(resource);
        self.turn.notify_all();
    }
}

impl<T: Default> Deref for Permit<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.resource
    }
}

impl<T: Default> DerefMut for Permit<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.resource
    }
}

impl<T: Default> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.semaphore.give_back(std::mem::take(&mut self.resource));
    }
}

/// How many argon2 runs may happen at once: one per core.
pub fn concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn slots() -> &'static FairSemaphore<Vec<Block>> {
    static SLOTS: OnceLock<FairSemaphore<Vec<Block>>> = OnceLock::new();
    SLOTS.get_or_init(|| FairSemaphore::new((0..concurrency()).map(|_| Vec::new()).collect()))
}

/// Runs argon2 (with `argon2`'s algorithm, version and cost) over
/// `password` and `salt` into `out`, waiting for a free slot first. The
/// slot's memory grows to the largest cost seen and is wiped after use.
pub fn hash_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon2.params().block_count();
    let mut memory = slots().acquire();
    if memory.len() < needed {
        memory.resize(needed, Block::new());
    }
    let blocks = &mut memory[..needed];
    let result = argon2.hash_password_into_with_memory(password, salt, out, &mut *blocks);
    blocks.iter_mut().for_each(Zeroize::zeroize);
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn never_more_holders_than_permits() {
        let semaphore = Arc::new(FairSemaphore::new(vec![(), ()]));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _permit = semaphore.acquire();
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

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let semaphore = Arc::new(FairSemaphore::new(vec![()]));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = semaphore.acquire();
        let mut threads = Vec::new();
        for i in 0..8 {
            let (shared, order) = (semaphore.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _permit = shared.acquire();
                order.lock().unwrap().push(i);
            }));
            // Let thread i take its ticket before thread i + 1 starts.
            while semaphore.lock().next_ticket < i as u64 + 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_holder_gives_its_permit_back() {
        let semaphore = Arc::new(FairSemaphore::new(vec![7u8]));
        let s = semaphore.clone();
        let _ = std::thread::spawn(move || {
            let _permit = s.acquire();
            panic!("holder dies");
        })
        .join();
        assert_eq!(*semaphore.acquire(), 7);
    }

    #[test]
    fn hash_into_matches_the_crates_own_allocation() {
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut pooled = [0u8; 32];
        let mut plain = [0u8; 32];
        hash_into(&argon, b"password", b"somesalt", &mut pooled).unwrap();
        argon
            .hash_password_into(b"password", b"somesalt", &mut plain)
            .unwrap();
        assert_eq!(pooled, plain);
        // A second run reuses (wiped) memory and gives the same answer.
        hash_into(&argon, b"password", b"somesalt", &mut pooled).unwrap();
        assert_eq!(pooled, plain);
    }
}
