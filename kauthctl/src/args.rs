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
    /// The two-factor policy and per-user overrides (root).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List sessions; sign out one or all; check one (panels).
    Sessions {
        /// Another user's sessions (root; without it root sees everyone's).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(subcommand)]
        action: Option<SessionsAction>,
    },
    /// Recent activity, newest first: logins, enrollments, sign-outs…
    Activity {
        /// Only events since WHEN: a date (2026-11-01), a date and time
        /// (2026-11-01 14:00), a Unix time, or an age (30m, 12h, 7d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Another user's activity (root; without it root sees everyone's).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Check this server's setup for anything that bypasses or breaks 2FA (root).
    ///
    /// Checks the clock (the kernel's synchronisation state and the skew
    /// kauthd saw in users' codes), the permissions of the state directory,
    /// database, config and socket, that kauthd answers, the PAM stacks in
    /// /etc/pam.d that use pam_kpanel, and sshd's settings. Each finding says
    /// what is wrong, why it matters and the line to change. The socket and
    /// state directory come from --config (--socket is not used). Works with
    /// kauthd stopped. Exit status: 0 no problem (warnings allowed), 1 at
    /// least one problem (an unreachable kauthd is one).
    Doctor(crate::doctor::DoctorArgs),
    /// Change your password: the current one, then the new one twice. With
    /// --reset-token, set a new one with a reset token instead.
    Passwd(PasswdArgs),
    /// Make a single-use password reset token for a user's "forgot your
    /// password?" mail; valid [password] reset_token_seconds (1 h) (root, panels).
    ResetToken {
        /// The user the token resets the password of.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Write the manual pages into DIR (for packaging).
    #[command(hide = true)]
    GenerateMan {
        /// The directory to write the pages into (created if needed).
        dir: PathBuf,
    },
    /// Account and host locks in force, until when; lift a host's lock (root).
    ///
    /// An account is locked by root (`user lock`) or after too many failed
    /// attempts on its name; a remote host after too many failed attempts
    /// from it, whatever the names. `user unlock NAME` lifts the account's
    /// locks and those of the hosts NAME failed from.
    Locks {
        #[command(subcommand)]
        action: Option<LocksAction>,
    },
    /// Replace the key that encrypts TOTP secrets (root).
    ///
    /// kauthd writes a new key file ([daemon] secret_key_file, KEY.new
    /// first), re-encrypts every TOTP secret with it in one transaction,
    /// then renames it over the old one; a crash in between is settled at
    /// the next start. Back up the new key file afterwards: the database
    /// cannot be used without it.
    Rekey,
    /// kauthd's health at a glance (root): logins by outcome and service,
    /// codes refused by reason, recovery codes used and login latency
    /// (since start and over the last minute); locks, connections and
    /// argon2 runs waiting now.
    Stats {
        /// Print the Prometheus text exposition format (for the node
        /// exporter's textfile collector) instead of text.
        #[arg(long)]
        prometheus: bool,
    },
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
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Set up two-factor authentication: QR code, setup key, confirm with a
    /// code, recovery codes.
    Enroll {
        /// Enroll another user (root and panels); yourself by default.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Only start: print the secret and QR code (non-interactive step 1).
        #[arg(long, conflicts_with = "confirm")]
        begin: bool,
        /// Only confirm a begun enrollment with a current code (step 2).
        #[arg(long, value_name = "CODE")]
        confirm: Option<String>,
        /// Also write the recovery codes to FILE (mode 0600; replaced if it
        /// exists, refused if it is a symbolic link).
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
        /// Turn it off even where the policy requires it, without asking
        /// (for scripts); the user's next login then sets up a new code or
        /// is refused (see [policy] enroll_at_login).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Show how many recovery codes are left, or make a new set.
    RecoveryCodes {
        /// Another user's recovery codes (root and panels); yours by default.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Replace all recovery codes with a new set, shown once.
        #[arg(long)]
        regenerate: bool,
        /// Also write the new codes to FILE (mode 0600; replaced if it
        /// exists, refused if it is a symbolic link).
        #[arg(long, value_name = "FILE")]
        save_codes: Option<PathBuf>,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Who has two-factor authentication, since when, codes left, last use (root).
    List,
    /// Migrate a known TOTP secret; two-factor authentication is on at once (root).
    Import {
        /// The user whose secret it is (an account is made if needed).
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The secret, base32 (10 to 64 bytes once decoded).
        #[arg(long)]
        secret: String,
        /// SHA1, SHA256 or SHA512.
        #[arg(long, default_value = "SHA1")]
        algorithm: String,
        /// Digits in a code (6 to 8).
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// Seconds each code is valid (the time step).
        #[arg(long, default_value_t = 30)]
        period: u64,
    },
    /// Repair a replay guard left in the future by a server clock that ran ahead (root).
    ///
    /// kauthd refuses a code whose time step is not after the last one it
    /// accepted for the user. If the server clock once ran ahead (booted a
    /// day in the future, say) and accepted a code, every real code of that
    /// user is refused until the clock catches up: kauthd logs an error
    /// naming the user and `kauthctl doctor` lists them. This puts the guard
    /// back to the end of the user's current window: codes used up to now
    /// stay spent, and the user's codes work again once that window has
    /// passed (about a minute with the default settings).
    /// A login with a recovery code repairs it too. Codes typed while the
    /// clock was ahead become valid again when their time comes.
    ResetGuard {
        /// The user whose guard is ahead (`kauthctl doctor` names them).
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The policy in force; with --user, what it means for that user on
    /// each service and which rule decided. Users see their own.
    Show {
        /// The user whose policy to explain (root; users may name only
        /// themselves).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Require two-factor authentication of this user, whatever [policy] says.
    Require {
        /// A system user or a kauthd account.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Exempt this user from the requirement (a user with 2FA on is still asked).
    Exempt {
        /// A system user or a kauthd account.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Remove the user's override: [policy] decides again.
    Default {
        /// The user whose override to remove.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// End a session (an SSH connection is closed; a panel session revoked).
    SignOut {
        /// The session id (see `kauthctl sessions`), or its first 8 or more
        /// hex digits when no other session starts the same way.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every session of the user ("sign out everywhere"), the one this
        /// command runs in included: asks first, unless --yes.
        #[arg(long)]
        all: bool,
        /// Sign out without asking (for scripts).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Whose sessions (root); yours by default.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Is this session still valid? Exit 0 if yes, 1 if not (for panels).
    Check {
        /// The session id (a panel's KAUTH_SESSION_ID).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocksAction {
    /// Lift the lock on a remote host (and forget its failed attempts).
    Clear {
        /// The host's address, as `kauthctl locks` shows it.
        #[arg(long, value_name = "ADDR")]
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Migrate a user's ~/.google_authenticator file: secret, step size,
    /// window, and its scratch codes as recovery codes.
    GoogleAuthenticator {
        /// The user the file belongs to (an account is made if needed).
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The file: a regular file of at most 64 KiB (not a symbolic link).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        /// The account's name (a login name).
        name: String,
        /// Read the account's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Bind the account to this local uid (for self-service from a shell).
        #[arg(long)]
        uid: Option<u32>,
    },
    /// Delete an account and everything kauthd holds for it.
    Del {
        /// The account to delete.
        name: String,
    },
    /// List accounts.
    List,
    /// Lock an account: every login is refused until it is unlocked.
    Lock {
        /// The account to lock.
        name: String,
    },
    /// Unlock an account: root's lock, the lock from too many failures, and
    /// the locks of the remote hosts NAME failed from (it says which).
    Unlock {
        /// The account (or system user) to unlock.
        name: String,
    },
    /// Set an account's password; the current one is not needed.
    Passwd {
        /// The account whose password to set.
        name: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Also sign out all the account's sessions.
        #[arg(long)]
        sign_out: bool,
    },
}

/// `kauthctl passwd`.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    /// Whose password: yours by default. Root and panels may name anyone,
    /// and still give that user's current password (`user passwd` needs none).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the passwords from standard input, one per line: the current
    /// password, then the new one (with --reset-token: only the new one).
    #[arg(long)]
    pub password_stdin: bool,
    /// Also sign out your other sessions; the session this command runs in
    /// stays signed in.
    #[arg(long)]
    pub sign_out_others: bool,
    /// Set a new password with this reset token instead of the current
    /// password (needs --user). `-` reads the token from the first line of
    /// standard input, out of sight of `ps`.
    #[arg(long, value_name = "TOKEN", conflicts_with = "sign_out_others")]
    pub reset_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument and option of every command, as `command path: --name`,
    /// that has no help text.
    fn without_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path}: {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            without_help(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_argument_and_option_has_help() {
        let cmd = Cli::command();
        let mut missing = Vec::new();
        without_help(&cmd, "kauthctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
