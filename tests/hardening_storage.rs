//! Storage faults (issue 11, item 9): TOTP secrets encrypted at rest with a
//! key kept outside the database, key rotation, a config file with no
//! settings refused, and no shared-memory file that a failing disk or
//! `chattr +i` could turn into a SIGBUS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kauth_tests::daemon::{binary, json, running_as_root, stderr, TestDaemon};
use kauth_tests::login::{login_code, oathtool_at_step, step_with_margin};

const IMPORTED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Starts an enrollment; returns the secret (base32).
fn enroll_begin(daemon: &TestDaemon, user: &str) -> String {
    daemon.enroll_begin(user)
}

/// A full enrollment confirmed with an oathtool code; returns the secret.
fn enroll(daemon: &TestDaemon, user: &str) -> String {
    let secret = enroll_begin(daemon, user);
    enroll_confirm(daemon, user, &secret);
    secret
}

/// Confirms `user`'s pending enrollment of `secret` with a current code.
fn enroll_confirm(daemon: &TestDaemon, user: &str, secret: &str) {
    daemon.enroll_confirm(user, &oathtool_at_step(secret, step_with_margin(3)));
}

/// RFC 4648 base32 (no padding) to bytes.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .expect("base32 character") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Every file in the state directory (the database, its WAL, anything
/// else kauthd left there), as raw bytes.
fn state_files(daemon: &TestDaemon) -> Vec<(PathBuf, Vec<u8>)> {
    fs::read_dir(&daemon.state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails naming the file if any secret (as base32, in either case, or as
/// raw bytes) is in any file of the state directory.
fn assert_no_secret_in_files(daemon: &TestDaemon, secrets: &[&str], when: &str) {
    let files = state_files(daemon);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("kauthd.sqlite")),
        "no database file found"
    );
    for secret in secrets {
        let raw = base32_decode(secret);
        assert!(raw.len() >= 10, "a secret of {} bytes", raw.len());
        for (path, bytes) in &files {
            for needle in [
                secret.as_bytes(),
                secret.to_ascii_lowercase().as_bytes(),
                &raw[..],
            ] {
                assert!(
                    !contains(bytes, needle),
                    "{when}: a TOTP secret is readable in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn no_enrolled_pending_imported_or_deleted_secret_is_in_the_database_files() {
    let mut daemon = TestDaemon::start("");
    let ann = enroll(&daemon, "ann");
    let bob = enroll(&daemon, "bob");
    let carol = enroll_begin(&daemon, "carol"); // pending, never confirmed
    daemon.import_secret("dave", IMPORTED);
    let out = daemon.ctl(&["2fa", "disable", "--force", "--user", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let secrets = [ann.as_str(), bob.as_str(), carol.as_str(), IMPORTED];
    assert_no_secret_in_files(&daemon, &secrets, "while kauthd runs");
    daemon.kill9();
    assert_no_secret_in_files(&daemon, &secrets, "after kill -9");
    daemon.restart();
    assert_no_secret_in_files(&daemon, &secrets, "after a restart");
    // The encrypted secrets still work.
    let code = oathtool_at_step(IMPORTED, step_with_margin(3));
    assert!(login_code(&daemon.socket, "dave", &code).succeeded());
}

#[test]
fn the_key_file_is_created_private_and_a_loose_one_is_refused() {
    let mut daemon = TestDaemon::start("");
    let key = daemon.key_file();
    let meta = fs::symlink_metadata(&key).expect("kauthd created its key file");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o777, 0o400);
    assert_eq!(meta.len(), 32);
    daemon.kill9();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(binary("kauthd"))
        .arg("--config")
        .arg(&daemon.config_path)
        .env(
            "KAUTHD_SYSLOG_SOCKET",
            daemon.dir.path().join("no-syslog.sock"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "kauthd started with a 0644 key file");
    let text = stderr(&out);
    assert!(
        text.contains("only its owner can read") && text.contains("chmod 0400"),
        "{text}"
    );
}

/// Waits until `text` shows up in what kauthd logged (stderr or syslog).
fn wait_for_log(daemon: &TestDaemon, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.stderr().contains(text) && !daemon.syslog().contains(text) {
        assert!(
            Instant::now() < deadline,
            "kauthd did not log {text:?}: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn copy_database(from: &TestDaemon, to: &TestDaemon) {
    for entry in fs::read_dir(&to.state_dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for entry in fs::read_dir(&from.state_dir).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.state_dir.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_copied_database_without_its_key_yields_no_code_and_says_why() {
    let mut original = TestDaemon::start("");
    original.import_secret("ann", IMPORTED);
    original.stop();
    let mut copy = TestDaemon::start("");
    copy.kill9();
    copy_database(&original, &copy);
    copy.restart();
    wait_for_log(&copy, "does not match this database");
    let step = step_with_margin(5);
    let refused = login_code(&copy.socket, "ann", &oathtool_at_step(IMPORTED, step));
    assert!(!refused.succeeded(), "a code worked with the wrong key");
    // The attempt itself is logged with the reason too.
    wait_for_log(&copy, "the TOTP secret was encrypted with key");
    for (what, text) in [("stderr", copy.stderr()), ("syslog", copy.syslog())] {
        assert!(!text.contains(IMPORTED), "the secret is in kauthd's {what}");
    }

    // With its own key the same database works: the refusal was the key.
    copy.kill9();
    fs::remove_file(copy.key_file()).unwrap();
    fs::copy(original.key_file(), copy.key_file()).unwrap();
    copy.restart();
    let accepted = login_code(&copy.socket, "ann", &oathtool_at_step(IMPORTED, step));
    assert!(accepted.succeeded(), "{accepted:?}");
}

#[test]
fn rekey_replaces_the_key_and_codes_keep_working_after_a_restart() {
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", IMPORTED);
    let pending = enroll_begin(&daemon, "bob");
    let old_key = fs::read(daemon.key_file()).unwrap();

    let done = json(&daemon.ctl(&["--json", "rekey"]));
    assert_eq!(done["secrets"], 2, "{done}");
    let new_key = fs::read(daemon.key_file()).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key, "the key file was not replaced");
    let leftover = PathBuf::from(format!("{}.new", daemon.key_file().display()));
    assert!(!leftover.exists(), "{} left behind", leftover.display());

    let step = step_with_margin(5);
    let first = login_code(&daemon.socket, "ann", &oathtool_at_step(IMPORTED, step));
    assert!(first.succeeded(), "{first:?}");
    daemon.restart();
    let second = login_code(&daemon.socket, "ann", &oathtool_at_step(IMPORTED, step + 1));
    assert!(second.succeeded(), "after a restart: {second:?}");
    // The pending enrollment survived too: it can be confirmed.
    enroll_confirm(&daemon, "bob", &pending);
}

/// `kauthd --check-config` on a file with `text`.
fn check_config(dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("check.toml");
    fs::write(&path, text).unwrap();
    Command::new(binary("kauthd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn a_config_file_without_settings_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    for text in [
        "",
        " \n\n\t\n",
        "# only a comment\n\n# [totp]\n# digits = 8\n",
    ] {
        let out = check_config(dir.path(), text);
        assert_eq!(out.status.code(), Some(1), "{text:?} was accepted");
        let message = stderr(&out);
        assert!(
            message.contains("no settings") && message.contains("Restore the file"),
            "{message}"
        );
    }
    // An unparsable file was refused already; the shipped one passes.
    assert_eq!(check_config(dir.path(), "[totp\n").status.code(), Some(1));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/kauthd.toml");
    let out = Command::new(binary("kauthd"))
        .arg("--check-config")
        .arg("--config")
        .arg(shipped)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn policy_require(daemon: &TestDaemon) -> String {
    let doc = json(&daemon.ctl(&["--json", "policy", "show"]));
    doc["require"]
        .as_str()
        .unwrap_or_else(|| panic!("no require in {doc}"))
        .to_owned()
}

#[test]
fn an_emptied_config_file_is_refused_on_sighup_and_the_old_one_kept() {
    let daemon = TestDaemon::start("[policy]\nrequire = \"none\"\n");
    assert_eq!(policy_require(&daemon), "none");
    fs::write(&daemon.config_path, "# wiped\n").unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for_log(&daemon, "configuration not reloaded");
    assert!(
        daemon.stderr().contains("no settings"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(policy_require(&daemon), "none", "the old config was lost");
}

/// Whether kauthd has a `-shm` file mapped.
fn maps_shm(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("kauthd.sqlite-shm")
}

#[test]
fn no_shared_memory_file_is_mapped_and_a_second_kauthd_is_refused() {
    let daemon = TestDaemon::start("");
    daemon.import_secret("ann", IMPORTED);
    assert!(!maps_shm(daemon.pid()), "kauthd maps the -shm file");
    let shm = daemon.state_dir.join("kauthd.sqlite-shm");
    assert!(!shm.exists(), "{} exists", shm.display());

    // A second kauthd on the same state dir (its own socket) is refused.
    let config = daemon.dir.path().join("second.toml");
    fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsecret_key_file = \"{}\"\n",
            daemon.dir.path().join("second.sock").display(),
            daemon.state_dir.display(),
            daemon.key_file().display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("kauthd"))
        .arg("--config")
        .arg(&config)
        .env(
            "KAUTHD_SYSLOG_SOCKET",
            daemon.dir.path().join("no-syslog.sock"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second kauthd started");
    let text = stderr(&out);
    assert!(text.contains("in use by another process"), "{text}");
    let code = oathtool_at_step(IMPORTED, step_with_margin(3));
    assert!(login_code(&daemon.socket, "ann", &code).succeeded());
}

/// Takes the immutable flag off on drop, so the temp dir can be removed.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root"]
fn an_immutable_shm_file_does_not_stop_kauthd() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let mut daemon = TestDaemon::start("");
    daemon.import_secret("ann", IMPORTED);
    daemon.kill9();
    let shm = daemon.state_dir.join("kauthd.sqlite-shm");
    fs::write(&shm, vec![0u8; 32768]).unwrap();
    let chattr = Command::new("chattr").arg("+i").arg(&shm).output();
    let _guard = Immutable(shm.clone());
    match chattr {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "chattr +i {} failed ({other:?}): this test needs chattr (e2fsprogs) \
             and a file system that supports the immutable flag (ext4, xfs, btrfs; not tmpfs or overlayfs); \
             point TMPDIR at one and run it again",
            shm.display()
        ),
    }
    daemon.restart();
    assert!(!maps_shm(daemon.pid()));
    let step = step_with_margin(5);
    let first = login_code(&daemon.socket, "ann", &oathtool_at_step(IMPORTED, step));
    assert!(first.succeeded(), "{first:?}: {}", daemon.stderr());
    daemon.import_secret("bob", IMPORTED);
    let second = login_code(&daemon.socket, "bob", &oathtool_at_step(IMPORTED, step));
    assert!(second.succeeded(), "{second:?}: {}", daemon.stderr());
    assert_eq!(
        daemon.ctl(&["status"]).status.code(),
        Some(0),
        "kauthd stopped serving: {}",
        daemon.stderr()
    );
}

#[test]
#[ignore = "needs root"]
fn only_root_may_rekey() {
    assert!(running_as_root(), "run as root (tests/run does)");
    let daemon = TestDaemon::start("");
    let before = fs::read(daemon.key_file()).unwrap();
    let out = daemon.ctl_with(&["rekey"], None, Some(65534));
    assert!(!out.status.success(), "a non-root user replaced the key");
    assert!(stderr(&out).contains("only root"), "{}", stderr(&out));
    assert_eq!(fs::read(daemon.key_file()).unwrap(), before);
}
