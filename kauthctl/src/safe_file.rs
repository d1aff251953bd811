//! Files kauthctl reads or writes at a path it was given. Run by root on
//! a user's behalf, the path may be in a directory that user controls, so
//! whatever sits at the last component is untrusted: a symbolic link to
//! a root-only file, a dangling link, a FIFO, a device, a huge file.
//!
//! Writing never opens an existing file: the data goes into a new file
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600 set on the open descriptor)
//! under a temporary name in the same directory, which is then renamed
//! over the target. A rename replaces a link or a hard link itself and
//! never writes into what it points to, so a link planted between our
//! check and the rename changes nothing outside the directory; the check
//! is there to refuse a link with a clear message. Replacing (rather than
//! refusing an existing file) keeps `--save-codes FILE` usable twice, and
//! the target is never half-written. Both steps are relative to the
//! directory opened once, so swapping a directory of the path afterwards
//! does not redirect them.
//!
//! Reading opens with `O_NOFOLLOW|O_NONBLOCK` (a FIFO cannot hold the open
//! up), accepts only a regular file within a size limit, and reads at most
//! one byte past the limit in case the file grows meanwhile.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use zeroize::Zeroizing;

/// Reads a regular file of at most `limit` bytes at `path`, refusing a
/// symbolic link at its last component. The bytes are wiped when dropped.
pub fn read_limited(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                format!("{shown} is a symbolic link; refusing to read through it (give the path of the file itself)")
            }
            _ => format!("cannot read {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown} is not a regular file (it is {}); refusing to read it",
            kind(&meta.file_type())
        ));
    }
    let too_big = || {
        format!(
            "{shown} is larger than {} KiB; refusing to read it",
            limit / 1024
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let capacity = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    // Sized up front so the buffer never moves and leaves a copy behind.
    let mut data = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if data.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(data)
}

/// What a non-regular file is, for messages.
fn kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

/// A private (0600) file on its way to `path`: created under a temporary
/// name by [`PrivateFile::create`], put in place by
/// [`PrivateFile::commit`], removed if dropped before that.
pub struct PrivateFile {
    path: PathBuf,
    dir: File,
    name: OsString,
    temp_name: OsString,
    file: Option<File>,
}

impl PrivateFile {
    /// Checks that `path` may be written and creates the temporary file.
    /// Call it before asking kauthd for what goes in the file, so a bad
    /// path is refused before anything changes.
    pub fn create(path: &Path) -> Result<PrivateFile, String> {
        let shown = path.display();
        let Some(name) = path.file_name() else {
            return Err(format!("{shown} does not name a file"));
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(parent)
            .map_err(|e| format!("cannot write {shown}: cannot open its directory: {e}"))?;
        check_target(&dir, name, path)?;
        let (temp_name, file) = create_temp(&dir, name)
            .map_err(|e| format!("cannot write {shown}: cannot create a file next to it: {e}"))?;
        // On the descriptor, never by path; the umask may also have
        // narrowed the mode at creation.
        let mode = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        let private = PrivateFile {
            path: path.to_owned(),
            dir,
            name: name.to_owned(),
            temp_name,
            file: Some(file),
        };
        mode.map_err(|e| format!("cannot set the permissions of {shown}: {e}"))?;
        Ok(private)
    }

    /// The path the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data`, flushes it to disk and renames the file into place.
    pub fn commit(mut self, data: &[u8]) -> Result<(), String> {
        let shown = self.path.display().to_string();
        let mut file = self
            .file
            .take()
            .ok_or_else(|| format!("{shown} was already written"))?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
        drop(file);
        renameat(
            &self.dir,
            self.temp_name.as_os_str(),
            &self.dir,
            self.name.as_os_str(),
        )
        .map_err(|e| format!("cannot write {shown}: cannot rename the new file into place: {e}"))?;
        self.temp_name.clear();
        // The rename itself to disk; the data is there already.
        let _ = self.dir.sync_all();
        Ok(())
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if !self.temp_name.is_empty() {
            let _ = unlinkat(
                &self.dir,
                self.temp_name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Refuses a symbolic link or anything but a regular file at `name`.
fn check_target(dir: &File, name: &OsStr, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("cannot write {shown}: {e}")),
    };
    let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if format == SFlag::S_IFLNK {
        return Err(format!(
            "{shown} is a symbolic link; refusing to write through it (remove the link or choose another file)"
        ));
    }
    if format != SFlag::S_IFREG {
        return Err(format!(
            "{shown} exists and is not a regular file; refusing to replace it"
        ));
    }
    Ok(())
}

/// A new, empty file `.NAME.XXXXXXXX.tmp` in `dir`, never one that
/// existed (nor a link).
fn create_temp(dir: &File, name: &OsStr) -> io::Result<(OsString, File)> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
    let mut last = Errno::EEXIST;
    for _ in 0..16 {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(".");
        for byte in random {
            temp.push(format!("{byte:02x}"));
        }
        temp.push(".tmp");
        match openat(
            dir,
            temp.as_os_str(),
            flags | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        ) {
            Ok(fd) => return Ok((temp, File::from(fd))),
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_dir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("no temporary directory: {e}"),
        }
    }

    fn names(dir: &Path) -> Vec<OsString> {
        let mut names: Vec<OsString> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn writes_a_new_file_and_replaces_a_regular_one_with_mode_0600() {
        let dir = temp_dir();
        let path = dir.path().join("codes.txt");
        for text in ["first\n", "second\n"] {
            let written = PrivateFile::create(&path).and_then(|f| f.commit(text.as_bytes()));
            assert_eq!(written, Ok(()));
            assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some(text));
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        assert_eq!(names(dir.path()), [OsString::from("codes.txt")]);
    }

    #[test]
    fn refuses_a_link_or_a_directory_and_leaves_nothing_behind() {
        let dir = temp_dir();
        let link = dir.path().join("link");
        assert!(symlink(dir.path().join("nowhere"), &link).is_ok());
        let err = PrivateFile::create(&link).err().unwrap_or_default();
        assert!(
            err.contains("is a symbolic link; refusing to write through it"),
            "{err}"
        );
        let sub = dir.path().join("sub");
        assert!(std::fs::create_dir(&sub).is_ok());
        let err = PrivateFile::create(&sub).err().unwrap_or_default();
        assert!(err.contains("is not a regular file"), "{err}");
        assert_eq!(
            names(dir.path()),
            [OsString::from("link"), OsString::from("sub")]
        );
    }

    #[test]
    fn a_link_planted_after_the_check_is_replaced_not_followed() {
        let dir = temp_dir();
        let victim = dir.path().join("victim");
        assert!(std::fs::write(&victim, "keep").is_ok());
        let path = dir.path().join("codes.txt");
        let Ok(file) = PrivateFile::create(&path) else {
            panic!("create failed")
        };
        assert!(symlink(&victim, &path).is_ok());
        assert_eq!(file.commit(b"codes"), Ok(()));
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("keep")
        );
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("codes")
        );
        assert!(std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()));
    }

    #[test]
    fn an_uncommitted_file_is_removed() {
        let dir = temp_dir();
        let path = dir.path().join("qr.png");
        assert!(PrivateFile::create(&path).is_ok());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn reads_a_small_regular_file() {
        let dir = temp_dir();
        let path = dir.path().join("ga");
        assert!(std::fs::write(&path, "abc").is_ok());
        let data = read_limited(&path, 3).map(|d| d.to_vec());
        assert_eq!(data, Ok(b"abc".to_vec()));
        let err = read_limited(&path, 2).err().unwrap_or_default();
        assert!(err.contains("is larger than"), "{err}");
    }

    #[test]
    fn refuses_to_read_a_link_a_directory_or_a_device() {
        let dir = temp_dir();
        let path = dir.path().join("ga");
        assert!(std::fs::write(&path, "abc").is_ok());
        let link = dir.path().join("link");
        assert!(symlink(&path, &link).is_ok());
        let err = read_limited(&link, 1024).err().unwrap_or_default();
        assert!(
            err.contains("is a symbolic link; refusing to read through it"),
            "{err}"
        );
        let err = read_limited(dir.path(), 1024).err().unwrap_or_default();
        assert!(err.contains("(it is a directory)"), "{err}");
        let err = read_limited(Path::new("/dev/zero"), 1024)
            .err()
            .unwrap_or_default();
        assert!(err.contains("(it is a character device)"), "{err}");
    }
}
