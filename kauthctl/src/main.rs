//! `kauthctl`: administration for root, self-service for users, and the
//! integration point for panels (`--json`).
//!
//! Exit codes: 0 done, 1 refused or failed, 2 usage, 3 daemon unreachable.

mod args;
mod commands;
mod doctor;
mod manpages;
mod output;
mod passwords;
mod policy;
mod prompt;
mod qr;
mod safe_file;
mod sessions;
mod twofactor;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kauth_proto::{Client, ClientError};

use args::{Cli, Command};
use output::{Failure, Output};

const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    // These work without kauthd (doctor reports an unreachable one).
    match &cli.command {
        Command::Doctor(args) => return doctor::run(args, &out),
        Command::GenerateMan { dir } => return manpages::generate(dir),
        _ => {}
    }
    let result = connect(&cli).and_then(|mut client| commands::run(&cli, &mut client, &out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => out.fail(failure),
    }
}

/// Who may be listening: root, ourselves (a daemon we started), and the
/// `[access] daemon_user` of the system's kauthd.toml when readable.
fn trusted_uids() -> Vec<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut uids = vec![0, me];
    let default = std::path::Path::new(kauthd::config::DEFAULT_CONFIG);
    if let Ok(config) = kauthd::config::Config::load(default, false) {
        let user = &config.access.daemon_user;
        match user.parse::<u32>() {
            Ok(uid) => uids.push(uid),
            Err(_) => uids.extend(kauthd::unix_users::user_by_name(user).map(|u| u.uid)),
        }
    }
    uids
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    Client::connect(&cli.socket, TIMEOUT, &trusted_uids(), "kauthctl").map_err(|e| match e {
        ClientError::Unreachable(why) => Failure::unreachable(format!(
            "kauthd is not running or not reachable at {} ({why}). Start it (systemctl start kauthd) or point --socket / KAUTHD_SOCKET at its socket.",
            cli.socket.display()
        )),
        other => Failure::unreachable(other.to_string()),
    })
}
