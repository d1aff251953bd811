//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Two-factor authentication: status, enroll, disable, recovery codes.
    #[command(subcommand, name = "2fa")]
    TwoFa(TwoFaCommand),
    /// Migrate existing two-factor setups (root).
    #[command(subcommand)]
    Import(ImportCommand),
}

/// What a user gives for a sensitive change: the password (if the account
/// has one) and a current code or a recovery code. Asked for interactively
/// when needed and not given.
#[derive(Debug, Clone, Args)]
pub struct ProofArgs {
    /// A current verification code or a recovery code.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Read your password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum TwoFaCommand {
    /// On or off, method, enrolled when, recovery codes left.
    Status {
        /// Another user's status (root and panels).
        #[arg(long)]
        user: Option<String>,
    },
    /// Set up two-factor authentication: QR code, setup key, confirm with a
    /// code, recovery codes.
    Enroll {
        #[arg(long)]
        user: Option<String>,
        /// Only start: print the secret and QR code (non-interactive step 1).
        #[arg(long, conflicts_with = "confirm")]
        begin: bool,
        /// Only confirm a begun enrollment with a current code (step 2).
        #[arg(long, value_name = "CODE")]
        confirm: Option<String>,
        /// Also write the recovery codes to FILE (mode 0600).
        #[arg(long, value_name = "FILE")]
        save_codes: Option<PathBuf>,
        /// Write the QR code as a PNG image (mode 0600: it holds the secret).
        #[arg(long, value_name = "FILE")]
        qr_png: Option<PathBuf>,
        /// Write the QR code as an SVG image (mode 0600).
        #[arg(long, value_name = "FILE")]
        qr_svg: Option<PathBuf>,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Turn two-factor authentication off (root: for one or several users).
    Disable {
        /// The user (repeat for several; root only).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Show how many recovery codes are left, or make a new set.
    RecoveryCodes {
        #[arg(long)]
        user: Option<String>,
        /// Replace all recovery codes with a new set, shown once.
        #[arg(long)]
        regenerate: bool,
        /// Also write the new codes to FILE (mode 0600).
        #[arg(long, value_name = "FILE")]
        save_codes: Option<PathBuf>,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Who has two-factor authentication, since when, codes left, last use (root).
    List,
    /// Migrate a known TOTP secret; two-factor authentication is on at once (root).
    Import {
        #[arg(long)]
        user: String,
        /// The secret, base32.
        #[arg(long)]
        secret: String,
        /// SHA1, SHA256 or SHA512.
        #[arg(long, default_value = "SHA1")]
        algorithm: String,
        #[arg(long, default_value_t = 6)]
        digits: u32,
        #[arg(long, default_value_t = 30)]
        period: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Migrate a user's ~/.google_authenticator file: secret, step size,
    /// window, and its scratch codes as recovery codes.
    GoogleAuthenticator {
        #[arg(long)]
        user: String,
        file: PathBuf,
    },
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
