//! `kauthd [--config PATH] [--check-config]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use kauthd::config::{Config, DEFAULT_CONFIG};
use kauthd::server::{self, Options};

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
    /// the bad key if not.
    #[arg(long)]
    check_config: bool,
    /// Log more detail (never secrets).
    #[arg(long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    // Files kauthd creates (database, WAL) are owner-only from the start.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    kauthd::logging::init(args.debug);
    match server::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
