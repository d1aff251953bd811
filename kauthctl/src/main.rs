//! `kauthctl`: administration for root, self-service for users, and the
//! integration point for panels (`--json`).
//!
//! Exit codes: 0 done, 1 refused or failed, 2 usage, 3 daemon unreachable.

mod args;
mod commands;
mod connection;
mod doctor;
mod locks;
mod manpages;
mod output;
mod passwords;
mod policy;
mod prompt;
mod qr;
mod safe_file;
mod sessions;
mod stats;
mod twofactor;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    // These work without kauthd (doctor reports an unreachable one).
    match &cli.command {
        Command::Doctor(args) => return doctor::run(args, &out),
        Command::GenerateMan { dir } => return manpages::generate(dir),
        _ => {}
    }
    let result =
        connection::connect(&cli).and_then(|mut client| commands::run(&cli, &mut client, &out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => out.fail(failure),
    }
}
