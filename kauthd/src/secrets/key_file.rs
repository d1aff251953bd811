//! The key file that seals TOTP secrets (`daemon.secret_key_file`): 32
//! random bytes, created at the first start, readable only by kauthd's
//! user. It is kept outside the database so that a copied database or a
//! backup of the state dir holds no usable secret.
//!
//! A rotation (`kauthctl rekey`) writes the new key to `PATH.new` first,
//! re-encrypts the database, then renames it over `PATH`; `PATH.new` left
//! by a crash is settled at the next start (see `rekey`).

use crate::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secrets::secret_box::{SecretKey, KEY_LEN};

/// Where a rotation puts the new key until the database uses it.
pub fn pending_path(path: &Path) -> PathBuf {
    with_suffix(path, ".new")
}

/// Reads the key at `path`, or creates it if there is none.
pub fn load_or_create(path: &Path) -> Result<SecretKey, Error> {
    match read(path)? {
        Some(key) => Ok(key),
        None => {
            let key = create(path)?;
            log::info!(
                "created the key file {} that encrypts TOTP secrets; back it up apart from the database",
                path.display()
            );
            Ok(key)
        }
    }
}

/// Reads a key file; `None` if there is none. Refuses a file that is not a
/// regular file of kauthd's user with no group or other permission, or
/// that does not hold exactly 32 bytes.
pub fn read(path: &Path) -> Result<Option<SecretKey>, Error> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::failed(format!(
                "the key file {} is a symbolic link; kauthd does not follow links there: replace it with the file itself",
                path.display()
            )))
        }
        Err(e) => return Err(Error::failed(format!("cannot open the key file {}: {e}", path.display()))),
    };
    check_private(&file, path)?;
    // check_private saw exactly KEY_LEN bytes.
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    (&file)
        .read_exact(&mut bytes[..])
        .map_err(|e| Error::failed(format!("cannot read the key file {}: {e}", path.display())))?;
    Ok(Some(SecretKey::from_bytes(bytes)))
}

fn check_private(file: &File, path: &Path) -> Result<(), Error> {
    let meta = file.metadata().map_err(|e| {
        Error::failed(format!(
            "cannot inspect the key file {}: {e}",
            path.display()
        ))
    })?;
    let uid = nix::unistd::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() || meta.uid() != uid || mode & 0o077 != 0 {
        return Err(Error::failed(format!(
            "the key file {0} must be a regular file owned by uid {uid} that only its owner can read (it is {1}, owner uid {2}, mode {mode:04o}); fix it with: chown {uid} {0} && chmod 0400 {0}",
            path.display(),
            if meta.is_file() { "a regular file" } else { "not a regular file" },
            meta.uid(),
        )));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(Error::failed(format!(
            "the key file {} holds {} bytes, not {KEY_LEN}: it is not a kauthd key; put back the right file",
            path.display(),
            meta.len()
        )));
    }
    Ok(())
}

/// Creates a new key file (never replacing one) with a fresh random key,
/// mode 0400, synced to disk with its directory entry. The key is written
/// to `PATH.tmp` and then linked to `PATH`, so a crash never leaves a
/// partly written key file behind.
pub fn create(path: &Path) -> Result<SecretKey, Error> {
    let key = SecretKey::generate()?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| {
            Error::failed(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let tmp = with_suffix(path, ".tmp");
    let written = remove_if_present(&tmp)
        .and_then(|()| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
        })
        .and_then(|mut file| {
            file.write_all(key.bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::hard_link(&tmp, path));
    let _ = remove_if_present(&tmp);
    if let Err(e) = written {
        let hint = if e.raw_os_error() == Some(libc::EROFS) {
            " (the file system is read-only here: under systemd, allow the directory with ReadWritePaths=)"
        } else {
            ""
        };
        return Err(Error::failed(format!(
            "cannot create the key file {}: {e}{hint}",
            path.display()
        )));
    }
    sync_dir(path)?;
    Ok(key)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes `PATH.new` the key file (atomically, by a rename).
pub fn install_pending(path: &Path) -> Result<(), Error> {
    let pending = pending_path(path);
    fs::rename(&pending, path).map_err(|e| {
        Error::failed(format!(
            "cannot rename {} to {}: {e}",
            pending.display(),
            path.display()
        ))
    })?;
    sync_dir(path)
}

/// Removes `PATH.new` (a rotation that never reached the database).
pub fn discard_pending(path: &Path) -> Result<(), Error> {
    let pending = pending_path(path);
    fs::remove_file(&pending)
        .map_err(|e| Error::failed(format!("cannot remove {}: {e}", pending.display())))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::failed(format!("cannot sync the directory {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_key_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = load_or_create(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        assert_eq!(meta.len(), 32);
        assert_eq!(load_or_create(&path).unwrap().id(), key.id());
        assert!(create(&path).is_err(), "an existing key is never replaced");
        assert_eq!(read(&path).unwrap().unwrap().id(), key.id());
    }

    #[test]
    fn a_partly_written_key_left_by_a_crash_does_not_block_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        fs::write(dir.path().join("secret.key.tmp"), b"part").unwrap();
        create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 32);
        assert!(!dir.path().join("secret.key.tmp").exists());
    }

    #[test]
    fn readable_by_others_or_a_link_or_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 0400"), "{e}");

        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));

        let short = dir.path().join("short.key");
        fs::write(&short, b"short").unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read(&short)
            .unwrap_err()
            .to_string()
            .contains("not a kauthd key"));
    }
}
