//! The state every connection shares: the current config and the store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::config::Config;
use crate::store::Store;

#[derive(Debug)]
pub struct Daemon {
    config: RwLock<Arc<Config>>,
    store: Mutex<Store>,
    pub config_path: PathBuf,
    pub started: Instant,
}

impl Daemon {
    pub fn new(config: Config, store: Store, config_path: PathBuf) -> Daemon {
        Daemon {
            config: RwLock::new(Arc::new(config)),
            store: Mutex::new(store),
            config_path,
            started: Instant::now(),
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

    /// The store, locked: every check-and-update runs alone. A panic in
    /// another thread does not leave a half-done change (SQLite rolls back an
    /// unfinished transaction), so a poisoned lock is still usable.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
