//! Log to stderr and to syslog (facility authpriv), or, when stderr is the
//! journal (`JOURNAL_STREAM` names it, as systemd sets it for a service),
//! to the journal alone, natively: each line once, with `PRIORITY`,
//! `SYSLOG_IDENTIFIER=kauthd` and the fields its record carries
//! (`KAUTH_EVENT`, `KAUTH_USER`, `KAUTH_SERVICE`, `KAUTH_RHOST` for an
//! activity event, see `activity::log`), so that `journalctl -u kauthd
//! KAUTH_USER=ann` works. Callers must never pass a secret in a log line.
//! Every line is escaped here (a value with a newline cannot forge a second
//! line, nor an ESC reach a terminal) and cut to [`MAX_LINE_CHARS`].

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, LogFormat, LoggerBackend, Severity};
use systemd_journal_logger::JournalLog;

use crate::clock;
use crate::escape;

/// Longest log line written; the rest is cut, saying how long it was.
pub const MAX_LINE_CHARS: usize = 2048;

struct DaemonLogger {
    syslog: Option<Mutex<syslog::Logger<LoggerBackend, SyslogLine>>>,
    /// Set when stderr is the journal: then nothing goes to stderr or
    /// syslog (the journal reads both: each line would be there thrice).
    journal: Option<JournalLog>,
    level: LevelFilter,
}

impl Log for DaemonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = line(&record.args().to_string());
        if let Some(journal) = &self.journal {
            let sent = journal.journal_send(
                &Record::builder()
                    .args(format_args!("{text}"))
                    .level(record.level())
                    .target(record.target())
                    .key_values(record.key_values())
                    .build(),
            );
            if sent.is_ok() {
                return;
            }
            // The journal went away: the line goes to stderr, not nowhere.
        }
        // One write per line: stderr is unbuffered, and a line written in
        // pieces costs a system call each.
        let whole = format!(
            "kauthd: {}: {text}\n",
            record.level().as_str().to_lowercase()
        );
        let _ = std::io::stderr().write_all(whole.as_bytes());
        if let Some(syslog) = &self.syslog {
            let mut logger = match syslog.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let _ = match record.level() {
                Level::Error => logger.err(&text),
                Level::Warn => logger.warning(&text),
                Level::Info => logger.info(&text),
                Level::Debug | Level::Trace => logger.debug(&text),
            };
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// A syslog line as the syslog crate's `Formatter3164` writes it
/// (`<priority>Mmm DD HH:MM:SS kauthd[pid]: message`, UTC), without
/// parsing a time format for each line as it does.
#[derive(Debug, Clone)]
struct SyslogLine {
    facility: Facility,
    pid: u32,
}

impl<T: std::fmt::Display> LogFormat<T> for SyslogLine {
    fn format<W: Write>(&self, w: &mut W, severity: Severity, message: T) -> syslog::Result<()> {
        write!(
            w,
            "<{}>{} kauthd[{}]: {message}",
            self.facility as u8 | severity as u8,
            clock::format_syslog_time(clock::now()),
            self.pid
        )
        .map_err(syslog::Error::Write)
    }
}

/// What is written for a message: escaped, and cut when too long.
fn line(message: &str) -> String {
    let escaped = escape::escape(message);
    match escaped.char_indices().nth(MAX_LINE_CHARS) {
        None => escaped.into_owned(),
        Some((cut, _)) => format!("{}… (line cut, {} bytes)", &escaped[..cut], escaped.len()),
    }
}

/// Installs the daemon's logger. Without a syslog socket (a container, a
/// test) it logs to stderr only.
pub fn init(debug: bool) {
    let formatter = SyslogLine {
        facility: Facility::LOG_AUTHPRIV,
        pid: std::process::id(),
    };
    // KAUTHD_SYSLOG_SOCKET points syslog elsewhere than /dev/log (tests
    // capture what kauthd sends to syslog this way).
    let syslog = match std::env::var_os("KAUTHD_SYSLOG_SOCKET") {
        Some(path) => syslog::unix_custom(formatter, path).ok(),
        None => syslog::unix(formatter).ok(),
    }
    .map(Mutex::new);
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    // stderr is the journal: log to it natively (if its socket answers).
    let journal = if systemd_journal_logger::connected_to_journal() {
        JournalLog::new()
            .ok()
            .map(|journal| journal.with_syslog_identifier("kauthd".to_owned()))
    } else {
        None
    };
    let syslog = if journal.is_some() { None } else { syslog };
    let logger = DaemonLogger {
        syslog,
        journal,
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cannot_hold_a_second_line_or_an_escape() {
        assert_eq!(
            line("rhost=1.2.3.4\nkauthd: info: login_success: user=root"),
            "rhost=1.2.3.4\\x0akauthd: info: login_success: user=root"
        );
        assert_eq!(line("\u{1b}[2J"), "\\x1b[2J");
    }

    #[test]
    fn syslog_lines_are_written_as_the_syslog_crate_writes_them() {
        let ours = SyslogLine {
            facility: Facility::LOG_AUTHPRIV,
            pid: 4242,
        };
        let crates = syslog::Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "kauthd".into(),
            pid: 4242,
        };
        // Both read the clock: retry if a second passed in between.
        for _ in 0..5 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ours.format(&mut a, Severity::LOG_WARNING, "login_failure: user=ann")
                .unwrap();
            crates
                .format(&mut b, Severity::LOG_WARNING, "login_failure: user=ann")
                .unwrap();
            if a == b {
                assert!(a.starts_with(b"<84>"), "{}", String::from_utf8_lossy(&a));
                return;
            }
        }
        panic!("the lines differ");
    }

    #[test]
    fn long_lines_are_cut() {
        let cut = line(&"x".repeat(100_000));
        assert!(cut.len() < MAX_LINE_CHARS + 64);
        assert!(cut.ends_with("(line cut, 100000 bytes)"), "{cut}");
    }
}
