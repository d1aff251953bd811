//! kauthd's memory stays bounded under a flood of connections: many
//! clients at once, from root, sending garbage frames, JSON that the
//! decoder has to buffer before refusing it, oversized lengths and valid
//! requests that fail (unknown users, which still cost a dummy argon2
//! run). Once the flood is over, kauthd's resident size (VmRSS) must be
//! back near what it was before (what the connection threads freed goes
//! back to the system instead of staying in per-thread malloc arenas), and
//! its peak (VmHWM) must stay under a fixed allowance plus one argon2
//! memory cost per core.
//!
//! `KAUTHD_HAMMER_SECONDS=30 cargo test -p kauth-tests --test
//! hardening_memory -- --nocapture` runs a longer burst by hand and
//! prints the figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kauth_tests::daemon::TestDaemon;

/// What kauthd may hold at its peak besides argon2's working memory.
const PEAK_ALLOWANCE_KIB: u64 = 64 * 1024;
/// What a flood may leave resident once it is over.
const RETAINED_KIB: u64 = 6 * 1024;
/// The argon2 memory cost of the default configuration.
const ARGON2_MEMORY_KIB: u64 = 19456;
/// Clients at once, each with its own connection thread: more than the
/// 16 malloc arenas glibc allows on two cores by default, under the default
/// max_connections (64). A frame being decoded can hold a megabyte or more,
/// so the peak grows with the clients decoding at once.
const CLIENTS: usize = 40;
const DEFAULT_SECONDS: u64 = 15;
/// The protocol's frame limit (kauth_proto::MAX_FRAME).
const MAX_FRAME: usize = 64 * 1024;

#[test]
fn memory_stays_bounded_under_a_connection_flood() {
    let daemon = TestDaemon::start("");
    let pid = daemon.pid();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // argon2's working memory (one block per core, kept for reuse) is
    // allocated by the first logins: before the baseline, not in it.
    let start = memory(pid);
    for _ in 0..5 {
        warm_up_argon2(&daemon.socket, cores as usize * 4);
        if memory(pid).rss_kib >= start.rss_kib + cores * ARGON2_MEMORY_KIB {
            break;
        }
    }
    let before = memory(pid);
    let seconds = std::env::var("KAUTHD_HAMMER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);

    let frames = hammer(&daemon.socket, Duration::from_secs(seconds));
    // Let the last connection threads finish and free what they held.
    std::thread::sleep(Duration::from_millis(500));
    let after = memory(pid);
    let peak_bound = PEAK_ALLOWANCE_KIB + cores * ARGON2_MEMORY_KIB;
    let retained = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "{frames} frames from {CLIENTS} clients in {seconds} s: VmRSS {} KiB at start, {} KiB \
         after the first logins, {} KiB after the flood (retained {retained} KiB, bound \
         {RETAINED_KIB}); VmHWM {} KiB (bound {peak_bound} = {PEAK_ALLOWANCE_KIB} + {cores} \
         cores x {ARGON2_MEMORY_KIB} of argon2)",
        start.rss_kib, before.rss_kib, after.rss_kib, after.hwm_kib
    );
    assert!(frames > 200, "the flood sent only {frames} frames");
    assert!(
        retained <= RETAINED_KIB,
        "kauthd kept {retained} KiB more resident after the flood than before it, over \
         {RETAINED_KIB} KiB: memory the connection threads freed stays in the process"
    );
    assert!(
        after.hwm_kib <= peak_bound,
        "kauthd peaked at {} KiB resident under the flood, over the {peak_bound} KiB bound \
         ({PEAK_ALLOWANCE_KIB} KiB + {cores} cores x {ARGON2_MEMORY_KIB} KiB of argon2 memory)",
        after.hwm_kib
    );
    assert!(
        daemon.ctl(&["status"]).status.success(),
        "kauthd stopped answering after the flood: {}",
        daemon.stderr()
    );
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// VmRSS and VmHWM from /proc/PID/status.
fn memory(pid: u32) -> Memory {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// `count` failing logins at once, each on its own connection.
fn warm_up_argon2(socket: &Path, count: usize) {
    let logins: Vec<_> = (0..count)
        .map(|i| {
            let socket = socket.to_path_buf();
            std::thread::spawn(move || {
                let mut stream = UnixStream::connect(&socket).expect("connect to kauthd");
                exchange(&mut stream, HELLO).expect("hello");
                exchange(&mut stream, &failed_login(&mut Rng::new(i as u64))).expect("login");
            })
        })
        .collect();
    for login in logins {
        login.join().expect("login thread");
    }
}

/// Runs CLIENTS clients until `duration` has passed; returns the number of
/// frames sent.
fn hammer(socket: &Path, duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let socket = socket.to_path_buf();
            let sent = Arc::clone(&sent);
            std::thread::spawn(move || {
                let mut rng = Rng::new(i as u64);
                while Instant::now() < deadline {
                    sent.fetch_add(
                        one_connection(&socket, &mut rng, deadline),
                        Ordering::Relaxed,
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    sent.load(Ordering::Relaxed)
}

/// One connection: hello, then up to 50 bad frames, each answered; returns
/// the frames sent.
fn one_connection(socket: &Path, rng: &mut Rng, deadline: Instant) -> u64 {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        std::thread::sleep(Duration::from_millis(10));
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    if exchange(&mut stream, HELLO).is_none() {
        return 1;
    }
    let mut sent = 1;
    for _ in 0..rng.below(50) {
        if Instant::now() >= deadline {
            break;
        }
        sent += 1;
        let frame = match rng.below(1000) {
            // An announced length over the limit: kauthd answers and hangs up.
            0..=9 => {
                let _ = stream
                    .write_all(&((MAX_FRAME as u32) + 1 + rng.below(1 << 20) as u32).to_be_bytes());
                break;
            }
            // A login for nobody: a dummy argon2 run, then a failure.
            10..=14 => failed_login(rng),
            15..=200 => garbage(rng),
            201..=350 => buffered_json(rng),
            351..=800 => dense_array(rng),
            801..=900 => nested_json(rng),
            _ => long_name(rng),
        };
        if exchange(&mut stream, &frame).is_none() {
            break;
        }
    }
    sent
}

/// Sends one frame and reads one answer frame.
fn exchange(stream: &mut UnixStream, body: &[u8]) -> Option<()> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).ok()
}

const HELLO: &[u8] = br#"{"type":"hello","version":1,"client":"flood"}"#;

/// A password login for an unknown user: a dummy argon2 run, then a
/// failure.
fn failed_login(rng: &mut Rng) -> Vec<u8> {
    format!(
        r#"{{"type":"begin","user":"nobody{}","service":"flood","mode":"password","authtok":"x"}}"#,
        rng.below(1000)
    )
    .into_bytes()
}

/// Random bytes, up to the frame limit.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(MAX_FRAME as u64))
        .map(|_| rng.next() as u8)
        .collect()
}

/// A valid JSON object whose "type" comes last: the decoder buffers the
/// whole object (many small allocations) before it finds out what it is.
fn buffered_json(rng: &mut Rng) -> Vec<u8> {
    let mut body = String::from(r#"{"pad":["#);
    let target = rng.below(MAX_FRAME as u64 - 100) as usize;
    while body.len() < target {
        match rng.below(3) {
            0 => body.push_str(r#""abcdefghijklmnopqrstuvwxyz0123456789","#),
            1 => body.push_str(r#"{"k":[1,2,3],"v":"xyzzy"},"#),
            _ => body.push_str("123456789,"),
        }
    }
    body.push_str(r#"0],"type":"user_del","name":"nobody"}"#);
    body.into_bytes()
}

/// A frame-sized array of one-digit numbers, "type" last: the decoder
/// buffers one 32-byte value per two bytes of input, a megabyte per frame.
fn dense_array(rng: &mut Rng) -> Vec<u8> {
    let count = (MAX_FRAME - 100) / 2 - rng.below(1000) as usize;
    let mut body = String::from(r#"{"pad":["#);
    body.push_str(&"0,".repeat(count));
    body.push_str(r#"0],"type":"user_del","name":"nobody"}"#);
    body.into_bytes()
}

/// JSON nested as deep as the decoder allows (and a little deeper), with
/// "type" last again: deep recursion in the connection thread.
fn nested_json(rng: &mut Rng) -> Vec<u8> {
    let depth = 100 + rng.below(40) as usize;
    let mut body = String::from("{");
    for _ in 0..depth {
        body.push_str(r#""a":{"#);
    }
    body.push_str(&"}".repeat(depth));
    body.push_str(r#","type":"status"}"#);
    body.into_bytes()
}

/// A well-formed request with a long, unusable user name.
fn long_name(rng: &mut Rng) -> Vec<u8> {
    let name: String = (0..rng.below(MAX_FRAME as u64 - 100))
        .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
        .collect();
    format!(r#"{{"type":"user_del","name":"{name}"}}"#).into_bytes()
}

/// xorshift64*: enough randomness for a flood, and no crate for it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((now ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
