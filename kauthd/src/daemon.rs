//! The state every connection shares: the current config and the store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::config::Config;
use crate::server::api::login::ParkedLogins;
use crate::sessions::procinfo::{self, ProcessId};
use crate::sessions::recent_codes::RecentCodes;
use crate::store::{Durability, Store, StoreGuard};

#[derive(Debug)]
pub struct Daemon {
    config: RwLock<Arc<Config>>,
    store: Mutex<Store>,
    /// Which (process, user) passed a code check a moment ago, so that the
    /// PAM `account` step of the same login knows the code was given.
    recent_codes: Mutex<RecentCodes>,
    /// When kauthd last warned that the server clock looks wrong.
    last_drift_warning: AtomicI64,
    /// When kauthd last warned, per user, that their replay guard is ahead
    /// of the clock (monotonic time: the wall clock is what jumped).
    guard_warnings: Mutex<HashMap<String, Instant>>,
    pub config_path: PathBuf,
    pub started: Instant,
    /// The store's group fsync, waited on outside the store lock.
    durability: Arc<Durability>,
    /// Resumable logins waiting for their next answer.
    parked_logins: Mutex<ParkedLogins>,
}

/// The least time between two warnings about one user's replay guard.
const GUARD_WARNING_SECONDS: u64 = 600;

impl Daemon {
    pub fn new(config: Config, store: Store, config_path: PathBuf) -> Daemon {
        let durability = store.durability();
        Daemon {
            config: RwLock::new(Arc::new(config)),
            store: Mutex::new(store),
            recent_codes: Mutex::new(RecentCodes::default()),
            last_drift_warning: AtomicI64::new(0),
            guard_warnings: Mutex::new(HashMap::new()),
            config_path,
            started: Instant::now(),
            durability,
            parked_logins: Mutex::new(ParkedLogins::default()),
        }
    }

    /// The config in force now. A request keeps the snapshot it started with.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace_config(&self, config: Config) {
        let mut guard = match self.config.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(config);
    }

    /// Notes that process `pid` got a code accepted for `user`. Its parent
    /// counts too: sshd runs PAM authentication in a child of the process
    /// that later runs the account step. Both are keyed by their start
    /// time; a process that cannot be identified is not remembered (its
    /// account step is then refused).
    pub fn remember_code(&self, pid: i32, user: &str) {
        let Some(me) = procinfo::stat(pid) else {
            return;
        };
        let mut processes = vec![ProcessId {
            pid,
            start_time: me.start_time,
        }];
        processes.extend(
            Some(me.ppid)
                .filter(|parent| *parent > 1)
                .and_then(procinfo::identify),
        );
        self.recent_codes()
            .remember(&processes, user, Instant::now());
    }

    /// Whether process `pid` (the same process, not one that reused its
    /// pid) got a code accepted for `user` in this login.
    pub fn code_given_recently(&self, pid: i32, user: &str) -> bool {
        procinfo::identify(pid)
            .is_some_and(|process| self.recent_codes().given(process, user, Instant::now()))
    }

    fn recent_codes(&self) -> MutexGuard<'_, RecentCodes> {
        match self.recent_codes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// True at most once every ten minutes, for the clock-drift warning.
    pub fn may_warn_about_drift(&self, now: i64) -> bool {
        let last = self.last_drift_warning.load(Ordering::Relaxed);
        now - last >= 600
            && self
                .last_drift_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// True at most once every ten minutes per user, for the warning that
    /// the user's replay guard is ahead of the clock.
    pub fn may_warn_about_guard(&self, user: &str) -> bool {
        let mut map = match self.guard_warnings.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|_, at| at.elapsed().as_secs() < GUARD_WARNING_SECONDS);
        if map.contains_key(user) {
            return false;
        }
        map.insert(user.to_owned(), Instant::now());
        true
    }

    /// The store, locked: every check-and-update runs alone. A panic in
    /// another thread does not leave a half-done change (SQLite rolls back an
    /// unfinished transaction), so a poisoned lock is still usable. The
    /// guard notes whether the store changed, so that the request waits for
    /// a sync before it answers (see `store::durability`).
    pub fn store(&self) -> StoreGuard<'_> {
        StoreGuard::new(match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        })
    }

    /// The group fsync that makes acknowledged writes durable.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// The resumable logins waiting for an answer. Taking one out is a
    /// moment's work: hold the guard no longer.
    pub fn parked_logins(&self) -> MutexGuard<'_, ParkedLogins> {
        match self.parked_logins.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
