//! `kauthd [--config PATH] [--check-config]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kauthd::config::{Config, DEFAULT_CONFIG};
use kauthd::server::listener::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "kauthd",
    version,
    about = "The kauthd two-factor authentication daemon"
)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check the configuration file and exit: 0 if it is usable, 1 naming
    /// the bad key (or saying the file has no setting at all) if not.
    #[arg(long)]
    check_config: bool,
    /// Log more detail (never secrets).
    #[arg(long)]
    debug: bool,
    /// Write the manual page kauthd.8 into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    generate_man: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.generate_man {
        return generate_man(dir);
    }
    let options = Options {
        config_explicit: args.config.is_some(),
        config_path: args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
    };
    if args.check_config {
        return match Config::load(&options.config_path, options.config_explicit) {
            Ok(_) => {
                println!("{}: configuration is valid", options.config_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kauthd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Before any thread starts: a flood of connections must not leave
    // memory behind in per-thread malloc arenas.
    let malloc_limited = kauthd::malloc::limit_retained_memory();
    // Files kauthd creates (database, WAL) are owner-only from the start.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    kauthd::logging::init(args.debug);
    if !malloc_limited {
        log::warn!("the C library refused the malloc limits; memory may grow under load");
    }
    match listener::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

const LONG_ABOUT: &str = "kauthd owns every two-factor secret on this server (argon2id password hashes, TOTP secrets, hashed recovery codes) and makes every login decision: pam_kpanel(8) relays PAM conversations to it, kauthctl(1) administers it. It decides who may ask what from the socket peer's credentials (SO_PEERCRED): root may do everything, the uids in [access] pam_callers may run logins and sessions, anyone else only self-service on their own account. Every change that matters is durable before the answer goes out. It never calls NSS: it reads /etc/passwd and /etc/group itself.";

/// `kauthd --generate-man DIR`: the manual page, from these definitions.
fn generate_man(dir: &std::path::Path) -> ExitCode {
    use kauthd::manpage::{self, Para, Section};
    let extra = [
        Section {
            heading: "SIGNALS",
            paras: &[
                Para::Item(
                    "SIGHUP",
                    "Reload the configuration file. A file that cannot be used (including one with no setting in it) is logged and the configuration in force is kept. daemon.socket and daemon.state_dir change only at a restart. systemctl reload kauthd sends it.",
                ),
                Para::Item("SIGTERM, SIGINT", "Stop cleanly and remove the socket."),
            ],
        },
        Section {
            heading: "FILES",
            paras: &[
                Para::Item(
                    "/etc/kauthd/kauthd.toml",
                    "The configuration; every key is documented, with its default, in the installed file.",
                ),
                Para::Item(
                    "/run/kauthd/kauthd.sock",
                    "The socket pam_kpanel(8), kauthctl(1) and panels connect to. Who may do what is decided from the peer's credentials.",
                ),
                Para::Item(
                    "/var/lib/kauthd/kauthd.sqlite",
                    "The database: accounts, password hashes, TOTP secrets (encrypted), hashed recovery codes, sessions, activity. The directory is 0700 and the file 0600, owned by root. kauthd holds it exclusively while it runs.",
                ),
                Para::Item(
                    "/etc/kauthd/secret.key",
                    "The key that encrypts the TOTP secrets in the database (daemon.secret_key_file), created at the first start, mode 0400. Back it up apart from the database, which is useless without it; replace it with kauthctl rekey.",
                ),
            ],
        },
        Section {
            heading: "LOGGING",
            paras: &[Para::Text(
                "kauthd runs in the foreground and logs to syslog (facility authpriv) and to standard error. When standard error is the journal (JOURNAL_STREAM, as systemd sets it), it logs to the journal alone, natively, each line once, with the fields KAUTH_EVENT, KAUTH_USER, KAUTH_SERVICE and KAUTH_RHOST on activity events (journalctl -u kauthd KAUTH_USER=ann). Failures and lockouts are written EVENT: user=USER service=SERVICE rhost=RHOST DETAIL, a stable format that the shipped fail2ban filter reads. No log line contains a secret.",
            )],
        },
        Section {
            heading: "SEE ALSO",
            paras: &[Para::Text(
                "kauthctl(1), pam_kpanel(8), pam.conf(5), sshd_config(5); /usr/share/doc/kauthd/ (README, PROTOCOL.md and example PAM and sshd files)",
            )],
        },
    ];
    let written = manpage::prepare_dir(dir).and_then(|()| {
        manpage::write_page(Args::command().long_about(LONG_ABOUT), "8", &extra, dir)
    });
    match written {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "kauthd: cannot write the manual page into {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
