//! Making acknowledged writes durable with few fsyncs.
//!
//! SQLite runs with `synchronous=NORMAL`: a commit is written to the WAL
//! without an fsync, so it survives a `kill -9` of kauthd but not a power
//! loss. kauthd makes a request's writes durable itself, before it answers:
//! it waits for an `fdatasync` of the WAL that *started after* its writes.
//! One waiter leads (runs the fdatasync, outside the store mutex); the
//! others that arrive meanwhile share the next one, so concurrent logins
//! share fsyncs and the store is never locked during one.
//!
//! Which requests wait: the store guard (`StoreGuard`) notes, on this
//! thread, that the store changed while it was held; the request handler
//! waits for a sync when its request changed something (a request runs on
//! one thread from its start to its answer). Writes made inside `relaxed`
//! do not make the request wait: they become durable with the next sync,
//! which the flusher runs within `FLUSH_INTERVAL` if no request does (a
//! failure that locks nothing is not even written then: it is held in
//! memory, see `write_behind`).
//!
//! An fdatasync error is final: the page cache can no longer be trusted,
//! so every waiter gets an error (its request is refused, never
//! acknowledged) and the daemon stops; SQLite recovers from the WAL at the
//! next start.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::Store;

/// The longest a relaxed write stays unsynced while nothing else syncs.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request's writes could not be made durable.
#[derive(Debug, Clone)]
pub struct SyncFailed(pub String);

impl std::fmt::Display for SyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The group fdatasync of the database's WAL.
#[derive(Debug)]
pub struct Durability {
    wal_path: PathBuf,
    database_path: PathBuf,
    /// The file last synced; reopened when the path names another inode.
    file: Mutex<Option<File>>,
    epochs: Mutex<Epochs>,
    finished: Condvar,
    /// Writes were made since the last sync started.
    unsynced_writes: AtomicBool,
    /// Set by the first failed fdatasync, never cleared.
    failed: AtomicBool,
    /// The database server makes each commit durable before it returns
    /// (PostgreSQL with `synchronous_commit` on): nothing to sync here.
    by_server: bool,
}

/// Syncs are numbered: `started` is the number of the last one begun,
/// `done` of the last one finished. A caller whose writes are done needs
/// sync number `started + 1` (or later) to finish.
#[derive(Debug, Default)]
struct Epochs {
    started: u64,
    done: u64,
    running: bool,
    failure: Option<String>,
}

impl Durability {
    /// Starts making writes to `database_path` (and its `-wal`) durable, and
    /// syncs `state_dir` once so that the WAL file's name is durable too.
    /// A flusher thread syncs relaxed writes while the returned value lives.
    pub fn start(state_dir: &Path, database_path: &Path) -> io::Result<Arc<Durability>> {
        File::open(state_dir)?.sync_all()?;
        let mut wal = database_path.as_os_str().to_owned();
        wal.push("-wal");
        let durability = Arc::new(Durability {
            wal_path: PathBuf::from(wal),
            database_path: database_path.to_owned(),
            file: Mutex::new(None),
            epochs: Mutex::new(Epochs::default()),
            finished: Condvar::new(),
            unsynced_writes: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            by_server: false,
        });
        let weak = Arc::downgrade(&durability);
        std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || flush_unsynced_writes(&weak))?;
        Ok(durability)
    }

    /// For a database server that commits durably itself (PostgreSQL):
    /// each request's write is one transaction the server made durable
    /// before it answered, so `sync` returns at once.
    pub fn by_the_server() -> Arc<Durability> {
        Arc::new(Durability {
            wal_path: PathBuf::new(),
            database_path: PathBuf::new(),
            file: Mutex::new(None),
            epochs: Mutex::new(Epochs::default()),
            finished: Condvar::new(),
            unsynced_writes: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            by_server: true,
        })
    }

    /// Returns once an fdatasync that started after this call began has
    /// finished, so every write made before the call is durable.
    pub fn sync(&self) -> Result<(), SyncFailed> {
        if self.by_server {
            return Ok(());
        }
        let mut epochs = lock(&self.epochs);
        let needed = epochs.started + 1;
        loop {
            if let Some(why) = &epochs.failure {
                return Err(SyncFailed(why.clone()));
            }
            if epochs.done >= needed {
                return Ok(());
            }
            if epochs.running {
                epochs = match self.finished.wait(epochs) {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                continue;
            }
            epochs.running = true;
            epochs.started += 1;
            let mine = epochs.started;
            drop(epochs);
            self.unsynced_writes.store(false, Ordering::SeqCst);
            let result = self.fdatasync();
            epochs = lock(&self.epochs);
            epochs.running = false;
            epochs.done = mine;
            if let Err(e) = result {
                let why = format!(
                    "kauthd could not make its database durable: fdatasync of {} failed: {e}; the state filesystem may be failing (check `dmesg`); kauthd stops so that nothing unsaved is acknowledged (it recovers from its WAL when started again)",
                    self.wal_path.display()
                );
                log::error!("{why}");
                self.failed.store(true, Ordering::SeqCst);
                epochs.failure = Some(why);
            }
            self.finished.notify_all();
        }
    }

    /// True once an fdatasync has failed: the daemon must stop.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The failure message, if a sync failed.
    pub fn failure(&self) -> Option<String> {
        lock(&self.epochs).failure.clone()
    }

    /// Notes a write; the flusher syncs it unless a sync starts first.
    fn note_unsynced_write(&self) {
        self.unsynced_writes.store(true, Ordering::SeqCst);
    }

    /// One fdatasync of the WAL as it is now. A WAL that SQLite replaced
    /// is reopened; with no WAL at all (it was checkpointed and removed),
    /// the database file itself is synced.
    fn fdatasync(&self) -> io::Result<()> {
        let mut file = lock(&self.file);
        let current = match std::fs::metadata(&self.wal_path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let same = match (file.as_ref(), current.as_ref()) {
            (Some(open), Some(meta)) => open
                .metadata()
                .is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev()),
            _ => false,
        };
        if !same {
            *file = Some(match current {
                Some(_) => File::open(&self.wal_path)?,
                None => File::open(&self.database_path)?,
            });
        }
        match file.as_ref() {
            Some(open) => open.sync_data(),
            None => Ok(()),
        }
    }
}

/// Syncs writes no request waited for (relaxed ones, housekeeping's)
/// within `FLUSH_INTERVAL`, until the `Durability` is dropped.
fn flush_unsynced_writes(durability: &Weak<Durability>) {
    loop {
        std::thread::sleep(FLUSH_INTERVAL);
        let Some(durability) = durability.upgrade() else {
            return;
        };
        if durability.failed() {
            return;
        }
        if durability.unsynced_writes.load(Ordering::SeqCst) {
            // A failure is logged and stops the daemon; nothing to add here.
            let _ = durability.sync();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

thread_local! {
    /// This thread's request changed the store and must wait for a sync.
    static UNSYNCED: Cell<bool> = const { Cell::new(false) };
    /// How many `relaxed` scopes are open on this thread.
    static RELAXED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`; the writes it makes do not make this request wait for a sync
/// (they are synced by the next request that waits, or the flusher).
pub fn relaxed<R>(f: impl FnOnce() -> R) -> R {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            RELAXED.with(|r| r.set(r.get().saturating_sub(1)));
        }
    }
    RELAXED.with(|r| r.set(r.get() + 1));
    let _scope = Scope;
    f()
}

/// Makes this request wait for a sync before it answers, whatever was
/// written under `relaxed` (a failure that locked an account or a host).
pub fn require_sync() {
    UNSYNCED.with(|u| u.set(true));
}

/// Whether this thread's request must wait for a sync; clears the mark.
pub fn take_unsynced() -> bool {
    UNSYNCED.with(|u| u.replace(false))
}

/// The store, locked; notes on drop whether it changed while held.
pub struct StoreGuard<'a> {
    store: MutexGuard<'a, Store>,
    changes_before: u64,
}

impl<'a> StoreGuard<'a> {
    pub fn new(store: MutexGuard<'a, Store>) -> StoreGuard<'a> {
        let changes_before = store.db.total_changes();
        StoreGuard {
            store,
            changes_before,
        }
    }
}

impl Deref for StoreGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        if self.store.db.total_changes() == self.changes_before {
            return;
        }
        // Any write is synced within `FLUSH_INTERVAL` (housekeeping's too);
        // a request's own writes, unless relaxed, before it answers.
        self.store.durability.note_unsynced_write();
        if RELAXED.with(Cell::get) == 0 {
            require_sync();
        }
    }
}

impl std::fmt::Debug for StoreGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use std::sync::Mutex as StdMutex;

    #[test]
    fn a_write_marks_the_request_and_a_relaxed_write_does_not() {
        let (_dir, store) = test_store();
        let store = StdMutex::new(store);
        take_unsynced();
        {
            let guard = StoreGuard::new(store.lock().unwrap());
            guard.count_accounts().unwrap();
        }
        assert!(!take_unsynced(), "a read needs no sync");
        relaxed(|| {
            let mut guard = StoreGuard::new(store.lock().unwrap());
            guard
                .clear_failures(crate::store::LimitKey::Account("x"))
                .unwrap();
            guard
                .record_activity(
                    &crate::store::NewEvent {
                        user: Some("x"),
                        event: crate::activity::EventKind::LoginFailure,
                        service: None,
                        rhost: None,
                        detail: "wrong",
                    },
                    1,
                )
                .unwrap();
        });
        assert!(!take_unsynced(), "a relaxed write needs no sync");
        assert!(store
            .lock()
            .unwrap()
            .durability
            .unsynced_writes
            .load(Ordering::SeqCst));
        {
            let mut guard = StoreGuard::new(store.lock().unwrap());
            guard.prune_activity(i64::MAX).unwrap();
        }
        assert!(take_unsynced(), "a write needs a sync");
        assert!(!take_unsynced(), "the mark is taken once");
    }

    #[test]
    fn concurrent_callers_share_syncs_and_each_returns() {
        let (_dir, store) = test_store();
        let durability = Arc::clone(&store.durability);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = Arc::clone(&durability);
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        d.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let epochs = lock(&durability.epochs);
        assert!(epochs.done >= 1 && epochs.done <= 160, "{}", epochs.done);
        assert!(!epochs.running);
    }

    #[test]
    fn a_caller_waits_for_a_sync_that_started_after_it() {
        let (_dir, store) = test_store();
        let d = Arc::clone(&store.durability);
        // Pretend a sync is running: a caller arriving now must not be
        // satisfied by it finishing.
        {
            let mut e = lock(&d.epochs);
            e.running = true;
            e.started = 5;
            e.done = 4;
        }
        let waiter = {
            let d = Arc::clone(&d);
            std::thread::spawn(move || d.sync())
        };
        std::thread::sleep(Duration::from_millis(50));
        {
            let mut e = lock(&d.epochs);
            e.running = false;
            e.done = 5;
        }
        d.finished.notify_all();
        waiter.join().unwrap().unwrap();
        let e = lock(&d.epochs);
        assert_eq!(e.done, 6, "the waiter ran a sync of its own after sync 5");
    }

    #[test]
    fn the_wal_exists_when_the_directory_is_synced() {
        // `Store::open` syncs the directory right after `configure`: the
        // WAL's name must exist by then.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DATABASE_FILE);
        let conn = rusqlite::Connection::open(&path).unwrap();
        crate::store::configure(&conn).unwrap();
        assert!(dir.path().join("kauthd.sqlite-wal").exists());
    }

    #[test]
    fn a_failed_sync_fails_every_later_caller() {
        let (_dir, store) = test_store();
        let d = Arc::clone(&store.durability);
        lock(&d.epochs).failure = Some("disk gone".into());
        assert!(d.sync().is_err());
        assert!(d.failure().is_some());
    }
}
