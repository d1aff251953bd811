//! Fleet mode (`--fleet`): logins per second with many PAM clients spread
//! over three kauthd on one PostgreSQL (issue 15), next to one kauthd on
//! SQLite, in the same run, through the real libpam.

use kauth_tests::daemon::TestDaemon;
use kauth_tests::pam::PamConfDir;
use kauth_tests::postgres::PgCluster;

use crate::driver::{self, Answer, Target, Throughput};
use crate::{rate, secs, setup, totp};

const SQLITE_SERVICE: &str = "bench-kauthd-sqlite";
const FLEET_SERVICES: [&str; 3] = ["bench-fleet-a", "bench-fleet-b", "bench-fleet-c"];
const HOST_NAMES: [&str; 3] = ["host-a", "host-b", "host-c"];

/// Runs the comparison; false when a login ended otherwise than expected.
pub fn run(users: usize, clients: usize) -> bool {
    let secrets = totp::random_secrets(users);
    let pg = PgCluster::start_durable();
    let sqlite = TestDaemon::start("");
    let store = pg.store_config();
    let config = |host: &str| format!("host_name = \"{host}\"\n{store}");
    let first = TestDaemon::start(&config(HOST_NAMES[0]));
    let hosts = [
        TestDaemon::start_with_key(&config(HOST_NAMES[1]), &first.key_file()),
        TestDaemon::start_with_key(&config(HOST_NAMES[2]), &first.key_file()),
    ];
    let fleet = [&first, &hosts[0], &hosts[1]];

    let conf = PamConfDir::new();
    setup::write_kauthd_service(&conf, SQLITE_SERVICE, &sqlite.socket, "otp_only");
    for (service, host) in FLEET_SERVICES.iter().zip(fleet) {
        setup::write_kauthd_service(&conf, service, &host.socket, "otp_only");
    }
    let took = setup::enroll_kauthd(&sqlite, "u", 0, &secrets, None);
    println!("kauthd on SQLite: enrolled {users} users in {}", secs(took));
    let took = setup::enroll_kauthd(&first, "u", 0, &secrets, None);
    println!(
        "kauthd fleet on PostgreSQL: enrolled {users} users through host-a in {}",
        secs(took)
    );

    let on_sqlite = Target::new(conf.path(), SQLITE_SERVICE, "u", secrets.clone(), None);
    let on_fleet: Vec<Target> = FLEET_SERVICES
        .iter()
        .map(|service| Target::new(conf.path(), service, "u", secrets.clone(), None))
        .collect();
    let fleet_targets: Vec<&Target> = on_fleet.iter().collect();
    let all: Vec<usize> = (0..users).collect();

    println!("{clients} clients at once, {users} users, one kauthd on SQLite…");
    let single = driver::concurrent(&on_sqlite, &all, Answer::Valid, clients);
    println!("{clients} clients at once, {users} users, spread over three kauthd on PostgreSQL…");
    let spread = driver::concurrent_spread(&fleet_targets, &all, Answer::Valid, clients);
    print_table(users, clients, &single, &spread)
}

fn print_table(users: usize, clients: usize, single: &Throughput, spread: &Throughput) -> bool {
    println!();
    println!("| measurement | logins/s |");
    println!("| --- | --- |");
    println!(
        "| {clients} PAM clients, {users} users, valid codes: one kauthd on SQLite | {} |",
        rate(single.per_second())
    );
    println!(
        "| {clients} PAM clients, {users} users, valid codes: three kauthd on one PostgreSQL (round robin) | {} |",
        rate(spread.per_second())
    );
    println!(
        "| ratio fleet ÷ SQLite | {:.2} |",
        spread.per_second() / single.per_second()
    );
    println!();
    driver::report_problems([("SQLite", single.problems()), ("fleet", spread.problems())])
}
