//! kauthd's connections under abuse, against the real daemon: one
//! ordinary uid flooding the socket locks out neither root nor a login
//! through the real libpam and pam_kpanel.so; per-uid limits and the
//! slots reserved for root and PAM callers; and the deadlines that keep
//! trickled bytes from holding a connection (the hello, each whole
//! request, the silence between requests, the whole login conversation).
//!
//! The ordinary uids are played by `kauth-flood` (tests/harness/flood.rs)
//! run under their uid, which needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kauth_proto::{
    read_frame, write_frame, Client, ClientError, ErrorCode, LoginMode, Request, Response,
    PROTOCOL_VERSION,
};
use kauth_tests::daemon::{world_executable_copy, TestDaemon};
use kauth_tests::login::{begin, now, oathtool_at_step};
use kauth_tests::pam::{Harness, PamConfDir};

const FLOOD: &str = env!("CARGO_BIN_EXE_kauth-flood");
const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-test";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const NOBODY: u32 = 65534;
/// The argon2 memory cost of the default configuration
/// (`[password] argon2_memory_kib`).
const ARGON2_MEMORY_KIB: u64 = 19456;
/// What kauthd may hold besides argon2's working memory.
const RSS_ALLOWANCE_KIB: u64 = 64 * 1024;

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn hello() -> Request {
    Request::Hello {
        version: PROTOCOL_VERSION,
        client: "connection test".into(),
    }
}

/// `kauth-flood` with `args`, run as `uid`.
fn flood_command(daemon: &TestDaemon, uid: u32, args: &[&str]) -> Command {
    let program = world_executable_copy(FLOOD.as_ref(), daemon.dir.path());
    let mut cmd = Command::new(program);
    cmd.args(args).uid(uid).gid(uid);
    cmd
}

/// A process of another uid holding connections until dropped.
struct Holder {
    child: Child,
    /// What each connection got: `welcome`, `busy MESSAGE` or `failed WHY`.
    answers: Vec<String>,
}

impl Holder {
    fn start(daemon: &TestDaemon, uid: u32, count: usize) -> Holder {
        let socket = daemon.socket.to_str().unwrap().to_owned();
        let mut child = flood_command(daemon, uid, &["hold", &socket, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kauth-flood");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let answers = (0..count)
            .map(|_| lines.next().expect("an answer per connection").unwrap())
            .collect();
        Holder { child, answers }
    }

    fn welcomed(&self) -> usize {
        self.answers.iter().filter(|a| *a == "welcome").count()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status (VmRSS, VmHWM in KiB; Threads).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
#[ignore = "needs root"]
fn one_uid_flooding_the_socket_locks_out_neither_root_nor_a_pam_login() {
    let daemon = TestDaemon::start("");
    let users = ["ann", "bob", "cyd", "dan", "eve"];
    for user in users {
        daemon.import_secret(user, SECRET);
    }
    let conf = PamConfDir::new();
    conf.kpanel_service(SERVICE, &daemon.socket, "otp_only");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let rss_bound = RSS_ALLOWANCE_KIB + cores * ARGON2_MEMORY_KIB;

    let socket = daemon.socket.to_str().unwrap().to_owned();
    let flood_seconds = 14;
    let flood = flood_command(
        &daemon,
        NOBODY,
        &["flood", &socket, "1500", &flood_seconds.to_string()],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("start kauth-flood");

    // kauthd's resident size, sampled all along the flood.
    let pid = daemon.pid();
    let peak_rss = AtomicU64::new(0);
    let sampling = AtomicBool::new(true);
    let (status_times, login_times) = std::thread::scope(|s| {
        s.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                peak_rss.fetch_max(memory_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Let the flood take whatever it can first.
        std::thread::sleep(Duration::from_secs(3));
        let mut status_times = Vec::new();
        let mut login_times = Vec::new();
        for user in users {
            let start = Instant::now();
            let out = daemon.ctl(&["status"]);
            status_times.push(start.elapsed());
            assert!(
                out.status.success(),
                "kauthctl status failed during the flood: {}",
                String::from_utf8_lossy(&out.stderr)
            );

            let code = oathtool_at_step(SECRET, now() / 30);
            let run = Harness::new(HARNESS, &conf, SERVICE)
                .user(user)
                .answer(&code)
                .op("auth")
                .run();
            run.assert_completed();
            assert_eq!(
                run.code("auth"),
                Some("PAM_SUCCESS"),
                "{user}'s login during the flood: {}",
                run.stdout
            );
            login_times.push(run.elapsed);
            std::thread::sleep(Duration::from_secs(1));
        }
        sampling.store(false, Ordering::Relaxed);
        (status_times, login_times)
    });
    let out = flood.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("kauth-flood printed no figures: {out:?}"));
    let peak_rss = peak_rss.into_inner();
    println!(
        "flood by uid {NOBODY}: {stats}; kauthctl status took {status_times:?}; PAM logins \
         took {login_times:?}; kauthd VmRSS peak {peak_rss} KiB (bound {rss_bound}), VmHWM {} KiB",
        memory_kib(pid, "VmHWM:")
    );

    // The flood was one: far more connections than the uid may hold, held
    // open and answered `busy`.
    assert!(
        stats["connects"].as_u64().unwrap() >= 1500,
        "the flood opened too few connections: {stats}"
    );
    assert!(
        stats["max_open"].as_u64().unwrap() >= 500,
        "the flood never held many connections at once: {stats}"
    );
    assert!(
        stats["busy"].as_u64().unwrap() > 0,
        "no busy answer: {stats}"
    );
    assert!(stats["welcomes"].as_u64().unwrap() >= 8, "{stats}");

    for took in &status_times {
        assert!(
            *took < Duration::from_secs(1),
            "kauthctl status took {took:?} during the flood"
        );
    }
    for took in &login_times {
        assert!(
            *took < Duration::from_secs(2),
            "a PAM login took {took:?} during the flood"
        );
    }
    assert!(
        peak_rss < rss_bound,
        "kauthd's VmRSS reached {peak_rss} KiB during the flood, over {rss_bound} KiB"
    );
    let log = daemon.stderr();
    assert!(
        log.contains(&format!(
            "turned a connection from uid {NOBODY} (nobody) away: it already holds 8 connections"
        )),
        "no log line names the flooding uid: {log}"
    );
    let lines = log
        .lines()
        .filter(|line| line.contains(&format!("uid {NOBODY}")))
        .count();
    assert!(
        lines <= 20,
        "{lines} log lines about uid {NOBODY}: the flood floods the log"
    );
}

#[test]
#[ignore = "needs root"]
fn an_ordinary_uid_gets_busy_beyond_its_limit_while_others_and_root_get_slots() {
    let daemon = TestDaemon::start(
        "max_connections = 20\nmax_connections_per_uid = 3\nreserved_connections = 5\nidle_timeout = 600\n",
    );
    // One uid: three slots, then busy.
    let nobody = Holder::start(&daemon, NOBODY, 4);
    assert_eq!(nobody.welcomed(), 3, "{:?}", nobody.answers);
    assert!(
        nobody.answers[3].starts_with("busy ")
            && nobody.answers[3].contains("maximum of 3 connections"),
        "{:?}",
        nobody.answers
    );
    // Another ordinary uid still gets its own.
    let mut others = vec![Holder::start(&daemon, 60001, 3)];
    assert_eq!(others[0].welcomed(), 3, "{:?}", others[0].answers);
    // Fill what ordinary uids share (20 - 5 reserved = 15; 6 taken).
    for uid in 60002..60005 {
        let holder = Holder::start(&daemon, uid, 3);
        assert_eq!(holder.welcomed(), 3, "uid {uid}: {:?}", holder.answers);
        others.push(holder);
    }
    let late = Holder::start(&daemon, 60005, 1);
    assert!(
        late.answers[0].starts_with("busy ") && late.answers[0].contains("for ordinary users"),
        "{:?}",
        late.answers
    );
    // Root still gets the reserved five, and kauthctl works.
    let out = daemon.ctl(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root: Vec<Client> = (0..5)
        .map(|i| {
            Client::connect(&daemon.socket, Duration::from_secs(5), &[0, my_uid()], "t")
                .unwrap_or_else(|e| panic!("root's connection {i} was refused: {e}"))
        })
        .collect();
    match Client::connect(&daemon.socket, Duration::from_secs(5), &[0, my_uid()], "t") {
        Err(ClientError::Busy(message)) => {
            assert!(message.contains("maximum of 20 connections"), "{message}")
        }
        other => panic!("a 21st connection was not turned away: {other:?}"),
    }
    let log = daemon.stderr();
    assert!(
        log.contains(&format!(
            "turned a connection from uid {NOBODY} (nobody) away: it already holds 3 connections"
        )),
        "{log}"
    );
    assert!(log.contains("turned a connection from uid 60005 away: all 15 connection slots open to ordinary users are in use"), "{log}");
    // Slots come back when connections close.
    drop(root);
    drop(nobody);
    let again = Holder::start(&daemon, NOBODY, 3);
    assert_eq!(again.welcomed(), 3, "{:?}", again.answers);
}

/// A connection that said hello (a PAM caller's: this test's uid is one).
fn greeted(daemon: &TestDaemon) -> UnixStream {
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write_frame(&mut stream, &hello()).unwrap();
    match read_frame::<_, Response>(&mut stream) {
        Ok(Response::Welcome { .. }) => stream,
        other => panic!("no welcome: {other:?}"),
    }
}

/// Reads until kauthd closes the connection; returns what it sent last.
fn read_until_closed(stream: &mut UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

/// The error kauthd sent before closing, if any.
fn parting_error(bytes: &[u8]) -> Option<(ErrorCode, String)> {
    match read_frame::<_, Response>(&mut &bytes[..]) {
        Ok(Response::Error { code, message }) => Some((code, message)),
        _ => None,
    }
}

fn assert_between(took: Duration, low: Duration, high: Duration, what: &str) {
    assert!(
        took >= low && took <= high,
        "{what} after {took:?}, not between {low:?} and {high:?}"
    );
}

#[test]
fn a_request_trickled_one_byte_a_second_is_cut_off_at_the_request_deadline() {
    let daemon = TestDaemon::start("idle_timeout = 120\n");
    let mut stream = greeted(&daemon);
    let mut frame = Vec::new();
    write_frame(&mut frame, &Request::Status).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    for byte in &frame {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        // Wait a second for kauthd to say something.
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    got.extend(read_until_closed(&mut stream));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(frame.len() as u64 - 2),
        "the whole {}-byte request went through, trickled over {took:?}",
        frame.len()
    );
    assert_between(
        took,
        Duration::from_millis(4500),
        Duration::from_secs(9),
        "the trickling connection was closed",
    );
    let (code, message) = parting_error(&got).expect("an error before the close");
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("within 5 seconds"), "{message}");
}

#[test]
fn a_request_that_comes_slowly_but_whole_in_time_is_answered() {
    let daemon = TestDaemon::start("");
    let mut stream = greeted(&daemon);
    let mut frame = Vec::new();
    write_frame(&mut frame, &Request::Status).unwrap();
    for chunk in frame.chunks(frame.len() / 3 + 1) {
        stream.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    match read_frame::<_, Response>(&mut stream) {
        Ok(Response::Status { .. }) => {}
        other => panic!("expected the status, got {other:?}"),
    }
}

#[test]
fn a_silent_connection_after_its_hello_is_closed_at_idle_timeout() {
    let daemon = TestDaemon::start("idle_timeout = 2\n");
    let mut stream = greeted(&daemon);
    let start = Instant::now();
    let got = read_until_closed(&mut stream);
    assert!(got.is_empty(), "kauthd sent something: {got:?}");
    assert_between(
        start.elapsed(),
        Duration::from_millis(1500),
        Duration::from_secs(6),
        "the idle connection was closed",
    );
}

#[test]
fn a_connection_that_never_says_hello_is_closed_within_seconds() {
    let daemon = TestDaemon::start("idle_timeout = 120\n");
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    read_until_closed(&mut stream);
    assert_between(
        start.elapsed(),
        Duration::from_millis(1500),
        Duration::from_secs(6),
        "the connection without a hello was closed",
    );
}

/// A login whose client hangs up while kauthd waits for its next step
/// frees its slot for the next connection: with one slot, each of twenty
/// logins in a row gets it a moment after the last one hung up.
#[test]
fn a_login_the_client_hangs_up_on_frees_its_slot_for_the_next_connection() {
    let daemon = TestDaemon::start(&format!(
        "max_connections = 1\nreserved_connections = 0\n[access]\npam_callers = [{}]\n",
        my_uid()
    ));
    daemon.import_secret("ann", SECRET);
    let begin = begin("ann", LoginMode::OtpOnly, None);
    for round in 0..20 {
        let (client, first) = Client::connect_and_call(
            &daemon.socket,
            Duration::from_secs(5),
            &[0, my_uid()],
            "t",
            &begin,
        )
        .unwrap_or_else(|e| panic!("login {round} got no slot: {e}"));
        assert!(
            matches!(first, Response::Prompt { .. }),
            "login {round}: {first:?}"
        );
        // The client hangs up at the code prompt, as a person pressing
        // Ctrl-C does; the next login comes a moment later.
        drop(client);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_login_conversation_held_open_past_login_timeout_is_closed() {
    let daemon = TestDaemon::start(&format!(
        "idle_timeout = 60\nlogin_timeout = 3\n[access]\npam_callers = [{}]\n",
        my_uid()
    ));
    daemon.import_secret("ann", SECRET);
    let mut stream = greeted(&daemon);
    let start = Instant::now();
    write_frame(&mut stream, &begin("ann", LoginMode::OtpOnly, None)).unwrap();
    match read_frame::<_, Response>(&mut stream) {
        Ok(Response::Prompt { .. }) => {}
        other => panic!("expected the code prompt, got {other:?}"),
    }
    // The person never answers; the connection is far from idle_timeout.
    let got = read_until_closed(&mut stream);
    assert_between(
        start.elapsed(),
        Duration::from_millis(2500),
        Duration::from_secs(8),
        "the conversation was closed",
    );
    let (code, message) = parting_error(&got).expect("an error before the close");
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("longer than 3 seconds"), "{message}");
    assert!(
        daemon.stderr().contains("login_timeout"),
        "no log line: {}",
        daemon.stderr()
    );
}

#[test]
fn a_thousand_idle_connections_cost_no_thread_and_little_memory() {
    let daemon = TestDaemon::start(&format!(
        "idle_timeout = 600\n[access]\npam_callers = [{}]\n",
        my_uid()
    ));
    let pid = daemon.pid();
    // Let the workers of the start-up status request end.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = memory_kib(pid, "VmRSS:");
    let connections: Vec<UnixStream> = (0..1000).map(|_| greeted(&daemon)).collect();
    std::thread::sleep(Duration::from_millis(800));
    let threads = memory_kib(pid, "Threads:");
    let rss_after = memory_kib(pid, "VmRSS:");
    println!(
        "1000 idle connections: {threads} kauthd threads, VmRSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        threads <= 3,
        "kauthd runs {threads} threads for 1000 idle connections"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 4 * 1024,
        "1000 idle connections grew kauthd from {rss_before} to {rss_after} KiB"
    );
    // They are all served still.
    let mut last = connections.into_iter().last().unwrap();
    write_frame(&mut last, &Request::Status).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut last),
        Ok(Response::Status { .. })
    ));
}
