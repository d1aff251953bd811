//! `kauthctl generate-man DIR` (hidden): kauthctl(1) and a page for each
//! subcommand, from the clap definitions, for the packages.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use kauthd::manpage::{self, Para, Section};

use crate::args::Cli;

/// The EXAMPLES of kauthctl(1): the tasks people come to the manual for.
const EXAMPLES: &[Para<'static>] = &[
    Para::Example(
        "Set up two-factor authentication for yourself: scan the QR code (or type the setup key) into an authenticator app, type the code it shows, and keep the recovery codes somewhere safe.",
        "kauthctl 2fa enroll\nkauthctl 2fa status",
    ),
    Para::Example(
        "Lost phone. The user logs in with a recovery code at the \"Verification code\" prompt, then sets up the new phone (the recovery code is the proof); a user without recovery codes asks root, who turns 2FA off (the next login then sets up a new code, or is refused: [policy] enroll_at_login) and lifts any lock.",
        "kauthctl 2fa enroll\nkauthctl 2fa disable --user ann --force      # root\nkauthctl user unlock ann                  # root",
    ),
    Para::Example(
        "Roll out 2FA to everyone: in /etc/kauthd/kauthd.toml set [policy] require = \"all\" and a deadline = \"YYYY-MM-DD\" (until then users are reminded at login), reload kauthd, check what it means for a user, exempt a service account, and follow who has enrolled.",
        "systemctl reload kauthd\nkauthctl policy show --user ann\nkauthctl policy exempt --user backup\nkauthctl 2fa list",
    ),
    Para::Example(
        "Sign out everywhere: every session of yours, this one included (kauthctl asks first; --yes for scripts); root for a user; one session by the first 8 characters of its id.",
        "kauthctl sessions sign-out --all\nkauthctl sessions sign-out --all --user ann --yes\nkauthctl sessions sign-out 3f2a9c1e",
    ),
    Para::Example(
        "A user is refused after too many failed attempts: list the locks, then lift the account's and those of the hosts it failed from, or one host's.",
        "kauthctl locks\nkauthctl user unlock ann\nkauthctl locks clear --host 203.0.113.7",
    ),
];

pub fn generate(dir: &Path) -> ExitCode {
    let extra = [
        Section {
            heading: "EXIT STATUS",
            paras: &[
                Para::Item("0", "Done (doctor: no problem found)."),
                Para::Item("1", "Refused or failed (doctor: at least one problem found; an unreachable kauthd is one)."),
                Para::Item("2", "Usage error."),
                Para::Item("3", "kauthd is not running or not reachable."),
            ],
        },
        Section {
            heading: "EXAMPLES",
            paras: EXAMPLES,
        },
        Section {
            heading: "ENVIRONMENT",
            paras: &[Para::Item(
                "KAUTHD_SOCKET",
                "kauthd's socket, when --socket is not given (default /run/kauthd/kauthd.sock).",
            )],
        },
        Section {
            heading: "JSON",
            paras: &[Para::Text(
                "With --json every command prints exactly one JSON document on standard output, with \"ok\": true or false; on failure also \"error\" (a code) and \"message\". Panels should use this form.",
            )],
        },
        Section {
            heading: "SEE ALSO",
            paras: &[Para::Text(
                "kauthd(8), pam_kpanel(8); the kauthctl-COMMAND(1) pages; /usr/share/doc/kauthd/",
            )],
        },
    ];
    let cmd = Cli::command().disable_help_subcommand(true).long_about(
        "kauthctl talks to kauthd(8) over its socket: administration for root (accounts, policy, two-factor setups of any user, sessions, activity, doctor), self-service for every user on their own account (enroll, recovery codes, password, sessions), and the integration point for panels (--json). Root may add --user NAME to a self-service command to act for that user. Each command has its own page: kauthctl-COMMAND(1), e.g. kauthctl-2fa-enroll(1).",
    );
    let written = manpage::prepare_dir(dir)
        .and_then(|()| manpage::write_page(cmd.clone(), "1", &extra, dir))
        .and_then(|main| {
            let mut all = vec![main];
            all.extend(manpage::write_subcommand_pages(&cmd, "1", dir)?);
            Ok(all)
        });
    match written {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "kauthctl: cannot write the manual pages into {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
