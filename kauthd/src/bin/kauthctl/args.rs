//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kauthctl",
    version,
    about = "Manage kauthd: accounts, two-factor authentication, policy and sessions",
    after_help = "Exit codes: 0 done, 1 refused or failed, 2 usage, 3 kauthd unreachable."
)]
pub struct Cli {
    /// kauthd's socket.
    #[arg(long, global = true, env = "KAUTHD_SOCKET", default_value = kauth_proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon version, uptime and number of accounts.
    Status,
    /// Accounts (root).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        name: String,
        /// Read the account's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Bind the account to this local uid (for self-service from a shell).
        #[arg(long)]
        uid: Option<u32>,
    },
    /// Delete an account and everything kauthd holds for it.
    Del { name: String },
    /// List accounts.
    List,
    /// Lock an account: every login is refused until it is unlocked.
    Lock { name: String },
    /// Unlock an account (an administrative lock or one from too many failures).
    Unlock { name: String },
}
