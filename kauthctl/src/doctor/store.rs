//! The shared PostgreSQL database (`[store] backend = "postgres"`): it can
//! be reached with kauthd's settings, its schema version suits this kauthd,
//! and its clock agrees with this host's (TOTP steps and lock ends are
//! compared across servers).

use kauthd::config::{Config, StoreBackend};
use kauthd::store::{known_schema_version, postgres};

use super::{Finding, Report};

/// A clock difference worth a warning, in milliseconds.
const CLOCK_WARNING_MS: i64 = 3_000;
/// A clock difference that breaks logins (one TOTP step), in milliseconds.
const CLOCK_PROBLEM_MS: i64 = 30_000;

pub fn check(config: &Config, report: &mut Report) {
    if config.store.backend != StoreBackend::Postgres {
        report.ok("store", "records are in SQLite in the state directory");
        return;
    }
    let settings = match config.store.postgres_settings() {
        Ok(settings) => settings,
        Err(e) => {
            report.add(
                Finding::problem("store", format!("the [store] settings cannot be used: {e}"))
                    .why("kauthd cannot start without its database")
                    .fix("set [store] url (and password_file if the role needs a password) in the config"),
            );
            return;
        }
    };
    let probe = match postgres::probe(&settings) {
        Ok(probe) => probe,
        Err(e) => {
            report.add(
                Finding::problem("store", format!("the database cannot be used: {e}"))
                    .why("while kauthd cannot reach its database every code check and enrollment is refused")
                    .fix("check that PostgreSQL runs and accepts kauthd's role (pg_isready; psql with the same url), and [store] url and password_file"),
            );
            return;
        }
    };
    report.ok("store", format!("connected to {}", probe.target));
    if !probe.writable {
        report.add(
            Finding::problem("store", format!("{} is a read-only standby", probe.target))
                .why("kauthd writes at every login (the replay guard, failure counts): on a standby every login fails")
                .fix("name the primary in [store] url, or list every server with target_session_attrs=read-write"),
        );
    }
    let known = known_schema_version();
    match probe.schema_version {
        None => report.add(
            Finding::warning("store", "the database has no kauthd schema yet")
                .why("kauthd creates it at its first start on this database")
                .fix("start kauthd (systemctl start kauthd)"),
        ),
        Some(v) if v > known => report.add(
            Finding::problem(
                "store",
                format!("the database has schema version {v}, newer than this kauthd knows ({known})"),
            )
            .why("another server with a newer kauthd migrated the shared database; this kauthd refuses to start on it")
            .fix("upgrade kauthd on this server to the version the other servers run"),
        ),
        Some(v) if v < known => report.add(
            Finding::warning(
                "store",
                format!("the database has schema version {v}; this kauthd migrates it to {known} at its next start"),
            )
            .why("older kauthd on other servers may not read the new schema")
            .fix("upgrade every server of the fleet together"),
        ),
        Some(v) => report.ok("store", format!("schema version {v}")),
    }
    let offset = probe.clock_offset_ms;
    let text = format!(
        "the database server's clock differs from this host's by {:.1} s",
        offset as f64 / 1000.0
    );
    let finding = match offset.unsigned_abs() {
        d if d > CLOCK_PROBLEM_MS.unsigned_abs() => Finding::problem("store", text),
        d if d > CLOCK_WARNING_MS.unsigned_abs() => Finding::warning("store", text),
        _ => {
            report.ok("store", text);
            return;
        }
    };
    report.add(
        finding
            .why("codes and locks are judged by this host's clock and shared through the database: servers whose clocks differ accept different codes and end locks at different times")
            .fix("keep every server and the database host in sync (systemd-timesyncd or chrony)"),
    );
}
