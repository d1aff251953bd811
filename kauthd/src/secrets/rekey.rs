//! The key that seals TOTP secrets, over the daemon's life: opening the
//! store with it at start (finishing a rotation a crash interrupted), and
//! rotating it (`kauthctl rekey`).
//!
//! A rotation is crash-safe in three steps: the new key is written to
//! `KEY.new`; every secret is re-sealed with it in one transaction; then
//! `KEY.new` is renamed over `KEY`. At start, a `KEY.new` whose key seals
//! the secrets is installed (the crash came after the commit); otherwise it
//! is removed (the crash came before, and the old key still seals them).

use crate::error::Error;
use std::path::Path;

use crate::daemon::Daemon;
use crate::secrets::key_file;
use crate::secrets::secret_box::key_id_text;
use crate::store::Store;

/// Reads (or creates) the key file, opens the store with it and settles an
/// interrupted rotation. Logs, without refusing to start, when secrets in
/// the database were sealed with another key: logins with those secrets
/// then fail, each with the same explanation.
pub fn open_store(state_dir: &Path, key_path: &Path) -> Result<Store, Error> {
    let key = key_file::load_or_create(key_path)?;
    let store = Store::open(state_dir, key).map_err(|e| {
        Error::failed(format!(
            "cannot open the store in {}: {e}",
            state_dir.display()
        ))
    })?;
    settle_key(store, key_path)
}

/// Opens the store `[store]` names (SQLite in the state dir, or the
/// shared PostgreSQL database) as [`open_store`] does.
pub fn open_configured_store(config: &crate::config::Config) -> Result<Store, Error> {
    let key_path = &config.daemon.secret_key_file;
    let key = key_file::load_or_create(key_path)?;
    let store = Store::open_configured(config, key).map_err(|e| match config.store.backend {
        crate::config::StoreBackend::Sqlite => Error::failed(format!(
            "cannot open the store in {}: {e}",
            config.daemon.state_dir.display()
        )),
        crate::config::StoreBackend::Postgres => {
            Error::failed(format!("cannot open the PostgreSQL store: {e}"))
        }
    })?;
    settle_key(store, key_path)
}

/// Settles an interrupted rotation and reports secrets sealed with
/// another key.
fn settle_key(mut store: Store, key_path: &Path) -> Result<Store, Error> {
    let pending = key_file::read(&key_file::pending_path(key_path))?;
    let in_use = store
        .key_use()
        .map_err(|e| Error::failed(format!("cannot read the database: {e}")))?;
    if let Some(new) = pending {
        if in_use.iter().any(|u| u.key_id == Some(new.id())) {
            key_file::install_pending(key_path)?;
            log::warn!(
                "finished an interrupted key rotation: {} now holds key {}",
                key_path.display(),
                key_id_text(new.id())
            );
            store.use_key(new);
        } else {
            key_file::discard_pending(key_path)?;
            log::warn!(
                "removed {}: a key rotation stopped before it changed the database, which still uses key {}",
                key_file::pending_path(key_path).display(),
                key_id_text(store.key_id())
            );
        }
    }
    for other in in_use
        .iter()
        .filter(|u| u.key_id.is_some_and(|id| id != store.key_id()))
    {
        log::error!(
            "{} TOTP secrets in the database were encrypted with key {}, but {} holds key {}: the key file does not match this database, and those users cannot log in with a code. Put back the key file that belongs to this database",
            other.secrets,
            key_id_text(other.key_id.unwrap_or_default()),
            key_path.display(),
            key_id_text(store.key_id())
        );
    }
    Ok(store)
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub key_id: u32,
    pub secrets: u64,
}

/// Replaces the key: a new key file, every secret re-sealed with it. The
/// store stays locked throughout, so no secret is written meanwhile.
pub fn rotate(daemon: &Daemon) -> Result<Rotated, Error> {
    let key_path = daemon.config().daemon.secret_key_file.clone();
    let pending = key_file::pending_path(&key_path);
    let mut store = daemon.store();
    if std::fs::symlink_metadata(&pending).is_ok() {
        return Err(Error::failed(format!(
            "{} exists: an earlier rotation did not finish; restart kauthd to settle it, then run rekey again",
            pending.display()
        )));
    }
    let new = key_file::create(&pending)?;
    let new_id = new.id();
    let secrets = match store.reseal_all(new) {
        Ok(n) => n,
        Err(e) => {
            // Nothing changed in the database: the new key is not needed.
            let _ = key_file::discard_pending(&key_path);
            return Err(Error::failed(format!(
                "the secrets were not re-encrypted: {e}"
            )));
        }
    };
    // The database now needs the new key: from here on, a failure leaves
    // KEY.new for the next start to install.
    key_file::install_pending(&key_path).map_err(|e| {
        Error::failed(format!("{e}; the database already uses the new key, which is in {}: kauthd installs it at its next start", pending.display()))
    })?;
    log::warn!(
        "rotated the key in {}: {secrets} TOTP secrets now encrypted with key {}",
        key_path.display(),
        key_id_text(new_id)
    );
    Ok(Rotated {
        key_id: new_id,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::secret_box::SecretKey;
    use crate::twofactor::totp::TotpParams;

    const SECRET: &[u8] = b"12345678901234567890";

    /// A state dir with one enrolled secret sealed by the key file's key.
    fn setup() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::path::PathBuf,
        i64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let key_path = dir.path().join("secret.key");
        let mut store = open_store(&state, &key_path).unwrap();
        let id = store.add_account("ann", None, None, 1).unwrap().id;
        let params = TotpParams::default();
        store.set_pending_totp(id, SECRET, &params, 1).unwrap();
        (dir, state, key_path, id)
    }

    #[test]
    fn a_rotation_that_committed_is_finished_at_start() {
        let (_dir, state, key_path, id) = setup();
        // Crash after the commit, before the rename: KEY.new seals the rows.
        let new = key_file::create(&key_file::pending_path(&key_path)).unwrap();
        let old = key_file::read(&key_path).unwrap().unwrap();
        let mut store = Store::open(&state, old).unwrap();
        store.reseal_all(new.clone()).unwrap();
        drop(store);

        let store = open_store(&state, &key_path).unwrap();
        assert_eq!(store.key_id(), new.id());
        assert_eq!(key_file::read(&key_path).unwrap().unwrap().id(), new.id());
        assert!(!key_file::pending_path(&key_path).exists());
        assert_eq!(&store.pending_totp(id).unwrap().unwrap().secret[..], SECRET);
    }

    #[test]
    fn a_rotation_that_did_not_commit_is_dropped_at_start() {
        let (_dir, state, key_path, id) = setup();
        let old: SecretKey = key_file::read(&key_path).unwrap().unwrap();
        // Crash before the commit: KEY.new exists, the rows use the old key.
        key_file::create(&key_file::pending_path(&key_path)).unwrap();

        let store = open_store(&state, &key_path).unwrap();
        assert_eq!(store.key_id(), old.id());
        assert_eq!(key_file::read(&key_path).unwrap().unwrap().id(), old.id());
        assert!(!key_file::pending_path(&key_path).exists());
        assert_eq!(&store.pending_totp(id).unwrap().unwrap().secret[..], SECRET);
    }
}
