//! A client that abuses kauthd's connections, for the connection tests.
//! The tests run it as an ordinary uid.
//!
//! `kauth-flood flood SOCKET CONNECTIONS SECONDS`: keeps CONNECTIONS
//! connections open (reconnecting whenever kauthd closes one), each
//! trickling bytes: one byte of its hello every 100 ms; or a hello, then
//! silence; or a hello, then the start of a frame that never ends; or a
//! hello, then one byte of a frame every 100 ms. Prints what happened as
//! one JSON object.
//!
//! `kauth-flood hold SOCKET COUNT`: opens COUNT connections one after the
//! other, says hello on each and prints one line per connection
//! (`welcome`, or `busy MESSAGE`, or `failed WHY`), then holds them until
//! its standard input closes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kauth_proto::{write_frame, Client, ClientError, Request, PROTOCOL_VERSION};

const TICK: Duration = Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("flood") if args.len() == 5 => flood(
            Path::new(&args[2]),
            args[3].parse().expect("CONNECTIONS"),
            Duration::from_secs(args[4].parse().expect("SECONDS")),
        ),
        Some("hold") if args.len() == 4 => {
            hold(Path::new(&args[2]), args[3].parse().expect("COUNT"))
        }
        _ => {
            eprintln!("usage: kauth-flood flood SOCKET CONNECTIONS SECONDS | hold SOCKET COUNT");
            std::process::exit(2);
        }
    }
}

fn hello_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            client: "flood".into(),
        },
    )
    .unwrap();
    frame
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// One byte of the hello per tick.
    TrickleHello,
    /// The hello, then nothing.
    HelloThenSilence,
    /// The hello, then two bytes of a frame header, then nothing.
    HelloThenHalfFrame,
    /// The hello, then one byte of a frame per tick.
    HelloThenTrickle,
}

const MODES: [Mode; 4] = [
    Mode::TrickleHello,
    Mode::HelloThenSilence,
    Mode::HelloThenHalfFrame,
    Mode::HelloThenTrickle,
];

struct Conn {
    mode: Mode,
    stream: Option<UnixStream>,
    sent: usize,
    received: Vec<u8>,
    welcomed: bool,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(Default)]
struct Stats {
    connects: u64,
    connect_failures: u64,
    welcomes: u64,
    busy: u64,
    closed_by_kauthd: u64,
    max_open: usize,
}

fn flood(socket: &Path, connections: usize, length: Duration) {
    let hello = hello_frame();
    // A status request, fed one byte per tick after the hello.
    let mut trickled = Vec::new();
    write_frame(&mut trickled, &Request::Status).unwrap();
    let mut conns: Vec<Conn> = (0..connections)
        .map(|i| Conn {
            mode: MODES[i % MODES.len()],
            stream: None,
            sent: 0,
            received: Vec::new(),
            welcomed: false,
        })
        .collect();
    let mut stats = Stats::default();
    let end = Instant::now() + length;
    while Instant::now() < end {
        let tick = Instant::now();
        for conn in &mut conns {
            if conn.stream.is_none() {
                match UnixStream::connect(socket) {
                    Ok(stream) => {
                        stream.set_nonblocking(true).unwrap();
                        stats.connects += 1;
                        conn.stream = Some(stream);
                        conn.sent = 0;
                        conn.received.clear();
                        conn.welcomed = false;
                    }
                    Err(_) => stats.connect_failures += 1,
                }
                continue;
            }
            if !read_what_came(conn, &mut stats) {
                continue;
            }
            let bytes: Vec<u8> = match conn.mode {
                Mode::TrickleHello => hello.get(conn.sent..conn.sent + 1).unwrap_or(&[]).to_vec(),
                Mode::HelloThenSilence => hello.get(conn.sent..).unwrap_or(&[]).to_vec(),
                Mode::HelloThenHalfFrame => {
                    let all: Vec<u8> = hello.iter().chain(&trickled[..2]).copied().collect();
                    all.get(conn.sent..).unwrap_or(&[]).to_vec()
                }
                Mode::HelloThenTrickle => {
                    let all: Vec<u8> = hello.iter().chain(&trickled).copied().collect();
                    if conn.sent < hello.len() {
                        hello[conn.sent..].to_vec()
                    } else {
                        all.get(conn.sent..conn.sent + 1).unwrap_or(&[]).to_vec()
                    }
                }
            };
            if bytes.is_empty() {
                continue;
            }
            let stream = conn.stream.as_ref().unwrap();
            match (&*stream).write(&bytes) {
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    stats.closed_by_kauthd += 1;
                    conn.stream = None;
                }
            }
        }
        let open = conns.iter().filter(|c| c.stream.is_some()).count();
        stats.max_open = stats.max_open.max(open);
        std::thread::sleep(TICK.saturating_sub(tick.elapsed()));
    }
    println!(
        "{{\"connects\":{},\"connect_failures\":{},\"welcomes\":{},\"busy\":{},\"closed_by_kauthd\":{},\"max_open\":{}}}",
        stats.connects,
        stats.connect_failures,
        stats.welcomes,
        stats.busy,
        stats.closed_by_kauthd,
        stats.max_open
    );
}

/// Reads what kauthd sent; false once it closed the connection.
fn read_what_came(conn: &mut Conn, stats: &mut Stats) -> bool {
    let Some(stream) = conn.stream.as_ref() else {
        return false;
    };
    let mut buf = [0u8; 4096];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                conn.received.extend_from_slice(&buf[..n]);
                if !conn.welcomed && contains(&conn.received, b"\"welcome\"") {
                    conn.welcomed = true;
                    stats.welcomes += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => break,
        }
    }
    if contains(&conn.received, b"\"busy\"") {
        stats.busy += 1;
    }
    stats.closed_by_kauthd += 1;
    conn.stream = None;
    false
}

fn hold(socket: &Path, count: usize) {
    let mut held = Vec::new();
    for _ in 0..count {
        match Client::connect(socket, Duration::from_secs(10), &[0], "holder") {
            Ok(client) => {
                println!("welcome");
                held.push(client);
            }
            Err(ClientError::Busy(message)) => println!("busy {message}"),
            Err(e) => println!("failed {e}"),
        }
    }
    io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = io::stdin().read_to_end(&mut rest);
    drop(held);
}
