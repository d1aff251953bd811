//! Facts about a local process from `/proc/PID/stat`: its parent and its
//! start time (which, with the pid, identifies it even if the pid is reused).

use std::io::Read;

/// Parent pid and start time (clock ticks since boot) of `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: i32,
    pub start_time: u64,
    /// Exited but not yet reaped by its parent: no longer running.
    pub zombie: bool,
}

/// One process, told apart from a later one that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

/// `pid` with its start time, or `None` when no such process runs.
pub fn identify(pid: i32) -> Option<ProcessId> {
    stat(pid).map(|s| ProcessId {
        pid,
        start_time: s.start_time,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    // The line is a few hundred bytes: one buffer takes it in one read,
    // where `read_to_string` would read a procfs file in growing pieces.
    let mut buf = [0u8; STAT_BUFFER];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    parse_stat(std::str::from_utf8(&buf[..len]).ok()?)
}

/// Room for `/proc/PID/stat`: 52 numbers and a command name of at most
/// 64 bytes. A longer read is cut, and the line then fails to parse.
const STAT_BUFFER: usize = 2048;

/// Pids of the direct children of `pid` (scanning /proc).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| stat(child).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// Parses stat(5). The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so split after the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ")" : state(3) ppid(4) ... starttime(22)
    let zombie = matches!(*fields.first()?, "Z" | "X");
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat {
        ppid,
        start_time,
        zombie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_parent_and_start_time() {
        let me = stat(std::process::id() as i32).unwrap();
        assert!(me.ppid > 0);
        assert!(me.start_time > 0);
    }

    #[test]
    fn odd_command_names_parse() {
        let line = "1234 (a) b (c)) S 99 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5555 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.ppid, 99);
        assert_eq!(s.start_time, 5555);
        assert!(!s.zombie);
    }

    #[test]
    fn missing_process_is_none() {
        assert_eq!(stat(-1), None);
    }
}
