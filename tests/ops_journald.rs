//! kauthd logging to the journal natively when its stderr is the journal:
//! kauthd runs with `JOURNAL_STREAM` naming its stderr, in a private mount
//! namespace where `/run/systemd/journal/socket` is a datagram socket the
//! test owns (the journal protocol's path is fixed, so the test moves the
//! socket, not kauthd). Each event must arrive once, with its fields, and
//! nothing on stderr or syslog.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kauth_tests::daemon::binary;
use kauth_tests::login::{login_code_from, oathtool_at_step, step_with_margin, wrong_code_near};
use kauth_tests::standalone::{temp_dir, terminate, wait_answering, write_config};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// One journal entry: its fields (a field given twice keeps the last).
type Entry = BTreeMap<String, String>;

/// Parses one datagram of the native journal protocol: `KEY=value`
/// lines, or `KEY`, a newline, a 64-bit little-endian length and that
/// many bytes, then a newline.
fn parse_entry(mut data: &[u8]) -> Entry {
    let mut entry = Entry::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let line = &data[..end];
        match line.iter().position(|&b| b == b'=') {
            Some(eq) => {
                let key = String::from_utf8_lossy(&line[..eq]).into_owned();
                let value = String::from_utf8_lossy(&line[eq + 1..]).into_owned();
                entry.insert(key, value);
                data = &data[(end + 1).min(data.len())..];
            }
            None => {
                let key = String::from_utf8_lossy(line).into_owned();
                let rest = &data[end + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                let value = String::from_utf8_lossy(&rest[8..8 + len]).into_owned();
                entry.insert(key, value);
                data = &rest[(8 + len + 1).min(rest.len())..];
            }
        }
    }
    entry
}

/// Receives journal entries on `socket` on a thread of its own.
fn capture(socket: UnixDatagram) -> Arc<Mutex<Vec<Entry>>> {
    let entries = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&entries);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = socket.recv(&mut buf) {
            if n > 0 {
                sink.lock().unwrap().push(parse_entry(&buf[..n]));
            }
        }
    });
    entries
}

fn c(path: &str) -> CString {
    CString::new(path).unwrap()
}

#[test]
#[ignore = "needs root"]
fn with_stderr_on_the_journal_each_event_is_logged_once_natively_with_its_fields() {
    let dir = temp_dir();
    let journal_dir = dir.path().join("journal");
    fs::create_dir(&journal_dir).unwrap();
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    let entries = capture(journal);
    let syslog = UnixDatagram::bind(dir.path().join("syslog.sock")).unwrap();
    syslog.set_nonblocking(true).unwrap();

    let socket = dir.path().join("kauthd.sock");
    let config = write_config(dir.path(), &socket);
    let stderr_path = dir.path().join("kauthd.stderr");
    let stderr = fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    // What systemd sets for a service whose stderr is the journal.
    let journal_stream = format!("{}:{}", meta.dev(), meta.ino());

    // Prepared before fork: the child only makes system calls.
    let (root, run, systemd, journal_mount) = (
        c("/"),
        c("/run"),
        c("/run/systemd"),
        c("/run/systemd/journal"),
    );
    let (tmpfs, source) = (c("tmpfs"), c(journal_dir.to_str().unwrap()));
    let mut cmd = Command::new(binary("kauthd"));
    cmd.arg("--config")
        .arg(&config)
        .env("JOURNAL_STREAM", &journal_stream)
        .env("KAUTHD_SYSLOG_SOCKET", dir.path().join("syslog.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // The mounts are in kauthd's own mount namespace: the machine's /run is
    // left alone.
    // SAFETY: prctl, unshare, mount and mkdir are system calls on strings
    // made before the fork; nothing allocates or touches Rust state.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
                || libc::mount(tmpfs.as_ptr(), run.as_ptr(), tmpfs.as_ptr(), 0, none.cast()) != 0
                || libc::mkdir(systemd.as_ptr(), 0o755) != 0
                || libc::mkdir(journal_mount.as_ptr(), 0o755) != 0
                || libc::mount(
                    source.as_ptr(),
                    journal_mount.as_ptr(),
                    none,
                    libc::MS_BIND,
                    none.cast(),
                ) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start kauthd");
    wait_answering(&mut child, &socket, &stderr_path);

    let out = Command::new(binary("kauthctl"))
        .args(["2fa", "import", "--user", "ann", "--secret", SECRET])
        .env("KAUTHD_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let step = step_with_margin(5);
    let wrong = wrong_code_near(SECRET, step, 30);
    assert!(!login_code_from(&socket, "ann", &wrong, "203.0.113.5").succeeded());
    let right = oathtool_at_step(SECRET, step);
    assert!(login_code_from(&socket, "ann", &right, "2001:db8::7").succeeded());
    let status = terminate(&mut child);
    assert!(status.success(), "{status}");

    // The journal socket reads on a thread: wait for the last line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !entries
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.get("MESSAGE").is_some_and(|m| m == "stopping on signal"))
    {
        assert!(
            Instant::now() < deadline,
            "kauthd's last line never reached the journal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let entries = entries.lock().unwrap().clone();
    let events = |kind: &str| -> Vec<Entry> {
        entries
            .iter()
            .filter(|e| e.get("KAUTH_EVENT").is_some_and(|k| k == kind))
            .cloned()
            .collect()
    };
    let failure = events("login_failure");
    assert_eq!(failure.len(), 1, "{entries:#?}");
    let field = |e: &Entry, k: &str| e.get(k).cloned().unwrap_or_default();
    assert_eq!(field(&failure[0], "KAUTH_USER"), "ann");
    assert_eq!(field(&failure[0], "KAUTH_SERVICE"), "kauth-test");
    assert_eq!(field(&failure[0], "KAUTH_RHOST"), "203.0.113.5");
    assert_eq!(field(&failure[0], "PRIORITY"), "4");
    assert_eq!(field(&failure[0], "SYSLOG_IDENTIFIER"), "kauthd");
    assert_eq!(
        field(&failure[0], "MESSAGE"),
        "login_failure: user=ann service=kauth-test rhost=203.0.113.5 wrong verification code"
    );
    let success = events("login_success");
    assert_eq!(success.len(), 1, "{entries:#?}");
    assert_eq!(field(&success[0], "KAUTH_RHOST"), "2001:db8::7");
    assert_eq!(field(&success[0], "PRIORITY"), "5");
    let enroll = events("enroll");
    assert_eq!(enroll.len(), 1, "{entries:#?}");
    assert_eq!(field(&enroll[0], "KAUTH_RHOST"), "-");
    // Every message once: no line doubled.
    let mut messages: Vec<&String> = entries.iter().filter_map(|e| e.get("MESSAGE")).collect();
    let all = messages.len();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), all, "{entries:#?}");

    // Nothing on stderr or syslog.
    let stderr_text = fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(stderr_text, "", "kauthd wrote to stderr");
    let mut buf = [0u8; 4096];
    assert!(syslog.recv(&mut buf).is_err(), "kauthd wrote to syslog");
}
