//! kauth-frame-client: sends protocol requests to kauthd from whatever
//! uid it runs as, for tests that need another caller than the test
//! process (a second panel uid, an ordinary user).
//!
//! ```text
//! kauth-frame-client SOCKET REQUEST_JSON...
//! ```
//!
//! It checks that the listener runs as root, sends the hello, then each
//! request in order on the same connection, and prints each answer as one
//! JSON line. Exit status: 0 when every request got an answer, 1 when the
//! connection or a request failed (the reason on standard error), 2 for a
//! usage error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kauth_proto::{Client, Request};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((socket, requests)) = args.split_first() else {
        eprintln!("usage: kauth-frame-client SOCKET REQUEST_JSON...");
        return ExitCode::from(2);
    };
    let mut client = match Client::connect(
        Path::new(socket),
        Duration::from_secs(20),
        &[0],
        "kauth-frame-client",
    ) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("cannot connect to {socket}: {e}");
            return ExitCode::from(1);
        }
    };
    for text in requests {
        let request: Request = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(e) => {
                eprintln!("not a request: {e}");
                return ExitCode::from(2);
            }
        };
        match client.call(&request) {
            Ok(response) => match serde_json::to_string(&response) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("cannot print the answer: {e}");
                    return ExitCode::from(1);
                }
            },
            Err(e) => {
                eprintln!("request failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
