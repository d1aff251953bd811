//! kauth-noop-daemon: the least a login daemon can do, for the login
//! benchmark's floor (`scripts/bench --floor`). It speaks kauthd's protocol
//! to `pam_kpanel.so` and does nothing else: one thread, one connection at
//! a time, no account, no code check, no log.
//!
//! ```text
//! kauth-noop-daemon SOCKET accept FILE    every answer is accepted, after
//!                                         one 8 KiB write to FILE and an
//!                                         fdatasync (one durable commit)
//! kauth-noop-daemon SOCKET deny           every answer is denied, nothing
//!                                         is written
//! ```
//!
//! Per connection: `Hello` → `Welcome`, `Begin` → `Prompt`, `Answer` →
//! `Finished`. The time a login takes through it is what libpam, the
//! module, the socket round trips and the commit cost on this machine,
//! and nothing of kauthd's own work.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

use kauth_proto::{
    read_frame, write_frame, FrameError, Outcome, Request, Response, PROTOCOL_VERSION,
};

/// The commit: as much as kauthd's WAL frames for a login, rewritten in
/// place in a file of this size.
const COMMIT_BYTES: usize = 8192;
const FILE_BYTES: u64 = 4 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (socket, commit) = match args.as_slice() {
        [socket, mode, file] if mode == "accept" => match commit_file(file) {
            Ok(f) => (socket, Some(f)),
            Err(e) => {
                eprintln!("kauth-noop-daemon: cannot prepare {file}: {e}");
                return ExitCode::from(1);
            }
        },
        [socket, mode] if mode == "deny" => (socket, None),
        _ => {
            eprintln!(
                "usage: kauth-noop-daemon SOCKET accept FILE | kauth-noop-daemon SOCKET deny"
            );
            return ExitCode::from(2);
        }
    };
    let _ = std::fs::remove_file(socket);
    let listener = match UnixListener::bind(socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kauth-noop-daemon: cannot listen on {socket}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut offset = 0u64;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        match serve(&mut stream, commit.as_ref(), &mut offset) {
            // A look to see whether it listens yet.
            Ok(()) | Err(FrameError::Closed) => {}
            Err(e) => eprintln!("kauth-noop-daemon: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// A file of [`FILE_BYTES`], written and synced once, so that a commit
/// rewrites blocks in place as SQLite's WAL does.
fn commit_file(path: &str) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all_at(&vec![0u8; FILE_BYTES as usize], 0)?;
    file.sync_all()?;
    Ok(file)
}

fn serve(
    stream: &mut UnixStream,
    commit: Option<&File>,
    offset: &mut u64,
) -> Result<(), FrameError> {
    let Request::Hello { .. } = read_frame(stream)? else {
        return Err(FrameError::Malformed("no hello".into()));
    };
    write_frame(
        stream,
        &Response::Welcome {
            version: PROTOCOL_VERSION,
            server: "kauth-noop-daemon".into(),
        },
    )?;
    let Request::Begin { .. } = read_frame(stream)? else {
        return Err(FrameError::Malformed("no begin".into()));
    };
    write_frame(
        stream,
        &Response::Prompt {
            echo: false,
            message: "Verification code: ".into(),
            continuation: None,
        },
    )?;
    let Request::Answer { .. } = read_frame(stream)? else {
        return Err(FrameError::Malformed("no answer".into()));
    };
    let outcome = match commit {
        Some(file) => {
            file.write_all_at(&[7u8; COMMIT_BYTES], *offset)?;
            file.sync_data()?;
            *offset = (*offset + COMMIT_BYTES as u64) % FILE_BYTES;
            Outcome::Success
        }
        None => Outcome::Denied,
    };
    write_frame(stream, &Response::Finished { outcome })
}
