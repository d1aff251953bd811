//! Issue 15: a fleet of kauthd processes on one PostgreSQL. Three daemons
//! (`host-a`, `host-b`, `host-c`: their own sockets, state dirs and host
//! names, one secret key) share one database: an enrollment, the replay
//! guard, locks and sessions span them; a stopped database fails logins
//! closed and a started one brings them back without a restart; a promoted
//! standby takes over.
//!
//! Needs root (the database runs as an unprivileged user; the SSH test
//! starts sshd), as CI runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use kauth_proto::{LoginMode, Outcome, Request, Response, Secret};
use kauth_tests::daemon::{json, running_as_root, stderr, TestDaemon};
use kauth_tests::login::{
    begin, connect, login_code, oathtool_at_step, step_with_margin, wrong_code_near, LoginResult,
};
use kauth_tests::pam::{Harness, HarnessRun, PamConfDir};
use kauth_tests::postgres::{store_config, PgCluster};
use kauth_tests::sshd::{
    example_lines, example_pam_stack, require_root_and_openssh, SshLogin, SshdSetup, SystemUser,
    TestSshd,
};
use serde_json::Value;

const HARNESS: &str = env!("CARGO_BIN_EXE_kauth-pam-harness");
const SERVICE: &str = "kauth-fleet";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const HOST_NAMES: [&str; 3] = ["host-a", "host-b", "host-c"];
/// The module's `timeout=` in these tests, in seconds.
const MODULE_TIMEOUT: u64 = 10;
const UNIX_PASSWORD: &str = "Heron-basalt-ochre-7302";
/// How long a host may take to serve logins again once the database is
/// back, in seconds.
const RECOVERY_SECONDS: u64 = 10;

/// A small pool: three daemons per test, tests in parallel.
const STORE_SETTINGS: &str = "pool_size = 4\n";

/// Three kauthd on the database `url`, with `extra` configuration. A
/// creates the secret key; B and C get copies of it.
fn fleet(url: &str, password_file: &std::path::Path, extra: &str) -> Vec<TestDaemon> {
    assert!(running_as_root(), "run as root (tests/run does)");
    let store = format!("{}{STORE_SETTINGS}", store_config(url, password_file));
    let config = |host: &str| format!("host_name = \"{host}\"\n{store}\n{extra}\n");
    let a = TestDaemon::start(&config(HOST_NAMES[0]));
    let b = TestDaemon::start_with_key(&config(HOST_NAMES[1]), &a.key_file());
    let c = TestDaemon::start_with_key(&config(HOST_NAMES[2]), &a.key_file());
    vec![a, b, c]
}

fn fleet_on(pg: &PgCluster, extra: &str) -> Vec<TestDaemon> {
    fleet(&pg.url(), &pg.password_file(), extra)
}

/// A PAM configuration whose service runs pam_kpanel (otp_only) against
/// `daemon`'s socket.
fn pam_conf(daemon: &TestDaemon) -> PamConfDir {
    let conf = PamConfDir::new();
    conf.kpanel_service(
        SERVICE,
        &daemon.socket,
        &format!("otp_only timeout={MODULE_TIMEOUT}"),
    );
    conf
}

/// A code-only login of `user` through the real libpam and the module on
/// `daemon`.
fn pam_login(daemon: &TestDaemon, user: &str, code: &str) -> HarnessRun {
    let conf = pam_conf(daemon);
    let run = Harness::new(HARNESS, &conf, SERVICE)
        .user(user)
        .answer(code)
        .run();
    run.assert_completed();
    run
}

fn assert_pam_success(run: &HarnessRun, host: &str) {
    assert_eq!(
        run.code("auth"),
        Some("PAM_SUCCESS"),
        "login through {host}: {}",
        run.stdout
    );
}

fn assert_pam_refused(run: &HarnessRun, host: &str) {
    let code = run.code("auth").unwrap_or("none");
    assert_ne!(code, "PAM_SUCCESS", "login through {host}: {}", run.stdout);
}

fn code(step: u64) -> String {
    oathtool_at_step(SECRET, step)
}

/// Starts an enrollment of `user` through `daemon` and confirms it with
/// the code of `step`; returns the secret.
fn enroll(daemon: &TestDaemon, user: &str, step: u64) -> String {
    let secret = daemon.enroll_begin(user);
    daemon.enroll_confirm(user, &oathtool_at_step(&secret, step));
    secret
}

#[test]
#[ignore = "needs root"]
fn a_user_enrolled_through_a_logs_in_through_the_module_on_b_and_c() {
    let pg = PgCluster::start();
    let hosts = fleet_on(&pg, "");
    let step = step_with_margin(10);
    let ann = enroll(&hosts[0], "ann", step);
    let bob = enroll(&hosts[0], "bob", step);
    // The confirmation spent the code of `step`; the next one is in the
    // window and has not been used.
    let run = pam_login(&hosts[1], "ann", &oathtool_at_step(&ann, step + 1));
    assert_pam_success(&run, "host-b");
    let run = pam_login(&hosts[2], "bob", &oathtool_at_step(&bob, step + 1));
    assert_pam_success(&run, "host-c");
    // What B and C see of ann is what A enrolled.
    for host in &hosts[1..] {
        let doc = json(&host.ctl(&["--json", "2fa", "status", "--user", "ann"]));
        assert_eq!(doc["enabled"], true, "{doc}");
    }
}

#[test]
#[ignore = "needs root"]
fn a_code_accepted_on_a_is_refused_on_b_and_c() {
    let pg = PgCluster::start();
    let hosts = fleet_on(&pg, "");
    hosts[0].import_secret("ann", SECRET);
    let step = step_with_margin(8);
    let accepted = login_code(&hosts[0].socket, "ann", &code(step));
    assert!(accepted.succeeded(), "on host-a: {accepted:?}");
    for (host, name) in hosts[1..].iter().zip(&HOST_NAMES[1..]) {
        let run = pam_login(host, "ann", &code(step));
        assert_pam_refused(&run, name);
    }
}

/// Brings a code-only login of `user` on `daemon` to its code prompt.
fn at_code_prompt(daemon: &TestDaemon, user: &str) -> kauth_proto::Client {
    let mut client = connect(&daemon.socket);
    match client
        .call(&begin(user, LoginMode::OtpOnly, None))
        .expect("begin")
    {
        Response::Prompt { .. } => client,
        other => panic!("{user}: expected the code prompt, got {other:?}"),
    }
}

/// Answers the prompt; whether the login succeeded.
fn answer(client: &mut kauth_proto::Client, code: &str) -> bool {
    let mut response = client
        .call(&Request::Answer {
            text: Secret::from(code),
        })
        .expect("answer");
    for _ in 0..8 {
        response = match response {
            Response::Finished { outcome } => return outcome == Outcome::Success,
            Response::Message { .. } => client.call(&Request::Continue).expect("continue"),
            Response::Error { .. } | Response::Prompt { .. } => return false,
            other => panic!("unexpected answer {other:?}"),
        };
    }
    panic!("the login did not finish");
}

#[test]
#[ignore = "needs root"]
fn one_code_sent_to_a_and_b_at_the_same_moment_succeeds_once_in_each_of_20_rounds() {
    let pg = PgCluster::start();
    let hosts = fleet_on(&pg, "");
    let users: Vec<String> = (0..20).map(|i| format!("race{i}")).collect();
    for user in &users {
        hosts[0].import_secret(user, SECRET);
    }
    let step = step_with_margin(15);
    let code = code(step);
    for (round, user) in users.iter().enumerate() {
        let mut a = at_code_prompt(&hosts[0], user);
        let mut b = at_code_prompt(&hosts[1], user);
        let barrier = Barrier::new(2);
        let (on_a, on_b) = std::thread::scope(|scope| {
            let ta = scope.spawn(|| {
                barrier.wait();
                answer(&mut a, &code)
            });
            let tb = scope.spawn(|| {
                barrier.wait();
                answer(&mut b, &code)
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(
            on_a ^ on_b,
            "round {round}: host-a {on_a}, host-b {on_b}: one code must work exactly once\n\
             host-a: {}\nhost-b: {}",
            hosts[0].stderr(),
            hosts[1].stderr()
        );
    }
}

#[test]
#[ignore = "needs root"]
fn five_wrong_codes_spread_over_a_b_and_c_lock_the_account_on_all_three() {
    let pg = PgCluster::start();
    let hosts = fleet_on(&pg, "[ratelimit]\nmax_failures = 5\n");
    hosts[0].import_secret("ann", SECRET);
    let step = step_with_margin(10);
    let wrong = wrong_code_near(SECRET, step, 2);
    for i in 0..5 {
        let r = login_code(&hosts[i % 3].socket, "ann", &wrong);
        assert!(!r.succeeded(), "wrong code {i} accepted: {r:?}");
    }
    // The right code is refused everywhere: the lock is the fleet's.
    for (host, name) in hosts.iter().zip(HOST_NAMES) {
        let run = pam_login(host, "ann", &code(step));
        assert_pam_refused(&run, name);
        let doc = json(&host.ctl(&["--json", "locks"]));
        let locked = doc["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "account" && l["name"] == "ann");
        assert!(locked, "{name} does not list ann's lock: {doc}");
    }
}

#[test]
#[ignore = "needs root"]
fn sign_out_all_on_a_ends_an_ssh_session_opened_through_b_within_2_s() {
    require_root_and_openssh();
    let pg = PgCluster::start();
    let hosts = fleet_on(&pg, "[policy]\nrequire = \"none\"\n");
    let user = SystemUser::create("flt");
    user.set_unix_password(UNIX_PASSWORD);
    let args = format!("socket={} service=sshd", hosts[1].socket.display());
    let sshd = TestSshd::start(&SshdSetup {
        pam_stack: example_pam_stack("pam.d/sshd-unix-then-code", &args, &[]),
        config: example_lines("sshd_config.d/kauthd-unix-then-code.conf"),
    });
    let mut client = SshLogin::new(&sshd, &user)
        .password(UNIX_PASSWORD)
        .command("sleep 60")
        .spawn();

    // A lists the session B opened, with B's name.
    let deadline = Instant::now() + Duration::from_secs(20);
    let session = loop {
        let doc = json(&hosts[0].ctl(&["--json", "sessions", "--user", &user.name]));
        if let Some(s) = doc["sessions"].as_array().unwrap().first() {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "host-a lists no session of {}: {doc}\nhost-b: {}\nsshd: {}",
            user.name,
            hosts[1].stderr(),
            sshd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(session["host"], "host-b", "{session}");
    assert!(client.running(), "the ssh session is up");

    let out = hosts[0].ctl(&[
        "--json", "sessions", "sign-out", "--all", "--yes", "--user", &user.name,
    ]);
    let doc = json(&out);
    let signed_out = doc["signed_out"].as_array().map_or(0, Vec::len);
    assert_eq!(signed_out, 1, "{doc}");
    let start = Instant::now();
    assert!(
        client.wait_exit(Duration::from_secs(2)).is_some(),
        "ssh through host-b still connected 2 s after the sign-out on host-a\nhost-b: {}",
        hosts[1].stderr()
    );
    eprintln!(
        "host-b ended the connection {:?} after the sign-out on host-a",
        start.elapsed()
    );
}

/// Whether kauthd logged a line about the database after the first
/// `before` bytes of its log (stderr, which holds every log line).
fn logs_database_trouble(daemon: &TestDaemon, before: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = daemon.stderr();
        let new = text.get(before..).unwrap_or("").to_lowercase();
        if new.contains("database") || new.contains("postgres") {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn with_postgresql_stopped_logins_fail_closed_and_work_again_once_it_is_back() {
    let mut pg = PgCluster::start();
    let hosts = fleet_on(&pg, "");
    let users = ["ann", "bob", "carol"];
    for user in users {
        hosts[0].import_secret(user, SECRET);
    }
    let before: Vec<usize> = hosts.iter().map(|h| h.stderr().len()).collect();
    pg.stop();
    let step = step_with_margin(20);
    for (((host, name), user), before) in hosts.iter().zip(HOST_NAMES).zip(users).zip(before) {
        let run = pam_login(host, user, &code(step));
        assert_pam_refused(&run, name);
        assert_eq!(run.status, Some(1), "{}", run.stdout);
        assert!(
            run.elapsed < Duration::from_secs(MODULE_TIMEOUT + 2),
            "the refusal through {name} took {:?} (timeout={MODULE_TIMEOUT})",
            run.elapsed
        );
        assert!(
            logs_database_trouble(host, before),
            "{name} logged nothing about the database: {}",
            host.stderr()
        );
        let said: Vec<String> = run.errors().into_iter().chain(run.infos()).collect();
        assert!(
            !said.is_empty(),
            "{name}: the person was told nothing: {}",
            run.stdout
        );
    }

    // Back: each host serves logins again by itself, once it has seen the
    // database (it checks again within a second or two).
    pg.start_again();
    let started = Instant::now();
    for ((host, name), user) in hosts.iter().zip(HOST_NAMES).zip(users) {
        let run = loop {
            let run = pam_login(host, user, &code(step));
            if run.code("auth") == Some("PAM_SUCCESS")
                || started.elapsed() > Duration::from_secs(RECOVERY_SECONDS)
            {
                break run;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_pam_success(&run, name);
    }
    eprintln!(
        "all three hosts served logins {:?} after PostgreSQL started again",
        started.elapsed()
    );
}

/// Logs `user` in through `daemon` with `code` until it works; how long it took.
fn login_until_it_works(daemon: &TestDaemon, user: &str, code: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut last: Option<LoginResult> = None;
    while start.elapsed() < limit {
        let mut client = match kauth_proto::Client::connect(
            &daemon.socket,
            Duration::from_secs(10),
            &[0],
            "test",
        ) {
            Ok(client) => client,
            Err(_) => continue,
        };
        let result = kauth_tests::login::converse(
            &mut client,
            begin(user, LoginMode::OtpOnly, None),
            &[code],
        );
        if result.succeeded() {
            return start.elapsed();
        }
        last = Some(result);
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "{user} could not log in within {limit:?}: {last:?}\n{}",
        daemon.stderr()
    );
}

#[test]
#[ignore = "needs root"]
fn after_failover_to_a_promoted_standby_logins_resume_and_spent_codes_stay_spent() {
    let mut primary = PgCluster::start();
    let standby = PgCluster::standby_of(&primary);
    let url = PgCluster::failover_url(&[&primary, &standby]);
    let hosts = fleet(&url, &primary.password_file(), "");
    hosts[0].import_secret("ann", SECRET);
    hosts[0].import_secret("bob", SECRET);
    let step = step_with_margin(20);
    let spent = login_code(&hosts[0].socket, "ann", &code(step));
    assert!(spent.succeeded(), "{spent:?}");

    primary.stop();
    standby.promote();
    let took = login_until_it_works(&hosts[1], "bob", &code(step), Duration::from_secs(10));
    eprintln!("logins resumed {took:?} after the promotion");
    for (host, name) in hosts.iter().zip(HOST_NAMES) {
        let again = login_code(&host.socket, "ann", &code(step));
        assert!(
            !again.succeeded(),
            "the code ann spent before the failover worked again on {name}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn postgres_cluster_standby_and_promotion_work() {
    let mut primary = PgCluster::start();
    primary.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let password = std::fs::read_to_string(primary.password_file()).unwrap();
    let psql = |url: &str, password: &str| {
        std::process::Command::new("psql")
            .args([url, "-X", "-A", "-t", "-c", "SELECT current_user"])
            .env("PGPASSWORD", password.trim())
            .output()
            .unwrap()
    };
    let with = psql(&primary.url(), &password);
    assert!(with.status.success(), "{}", stderr(&with));
    assert_eq!(String::from_utf8_lossy(&with.stdout).trim(), "kauthd");
    let tcp = psql(&primary.tcp_url(), &password);
    assert!(tcp.status.success(), "{}", stderr(&tcp));
    assert!(
        !psql(&primary.url(), "wrong").status.success(),
        "a wrong password was accepted"
    );

    let standby = PgCluster::standby_of(&primary);
    primary.sql("INSERT INTO t VALUES (2);");
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby.sql("SELECT count(*) FROM t") != "2" {
        assert!(Instant::now() < deadline, "the standby did not follow");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    primary.stop();
    standby.promote();
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "f");
    standby.sql("INSERT INTO t VALUES (3);");
    let after = psql(&PgCluster::failover_url(&[&primary, &standby]), &password);
    assert!(after.status.success(), "{}", stderr(&after));
}

/// `count` random base32 TOTP secrets (20 bytes each).
fn random_secrets(count: usize) -> Vec<String> {
    use std::io::Read;
    let mut bytes = vec![0u8; 20 * count];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
        .chunks(20)
        .map(|c| data_encoding::BASE32_NOPAD.encode(c))
        .collect()
}

/// Imports `secrets[i]` for `{prefix}{i}` over one connection.
fn import_all(daemon: &TestDaemon, prefix: &str, secrets: &[String]) {
    let mut client = connect(&daemon.socket);
    for (i, secret) in secrets.iter().enumerate() {
        let import = Request::TwoFactorImport {
            user: format!("{prefix}{i}"),
            secret: Secret::from(secret.as_str()),
            algorithm: None,
            digits: None,
            period: None,
        };
        match client.call(&import) {
            Ok(Response::Done) => {}
            other => panic!("importing {prefix}{i}: {other:?}"),
        }
    }
}

/// `kauthctl --json store migrate` from `local`'s state into `pg`, sealing
/// with `fleet_key`.
fn migrate(
    local: &TestDaemon,
    pg: &PgCluster,
    fleet_key: &std::path::Path,
    extra: &[&str],
) -> Value {
    let config = local.config_path.to_str().unwrap();
    let password = pg.password_file();
    let url = pg.url();
    let mut args = vec![
        "--json",
        "store",
        "migrate",
        "--to",
        &url,
        "--config",
        config,
        "--password-file",
        password.to_str().unwrap(),
        "--key-file",
        fleet_key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    json(&local.ctl(&args))
}

fn names(doc: &Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {doc}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn store_migrate_moves_1000_enrolled_users_and_a_name_on_both_sides_is_reported() {
    const USERS: usize = 1000;
    let pg = PgCluster::start();
    let mut local = TestDaemon::start("");
    let secrets = random_secrets(USERS + 2);
    let (clash_local, clash_shared) = (&secrets[USERS], &secrets[USERS + 1]);
    import_all(&local, "u", &secrets[..USERS]);
    local.import_secret("clash", clash_local);
    assert!(local
        .ctl(&["policy", "exempt", "--user", "u0"])
        .status
        .success());
    // A fleet host with its own key (the fleet's) already knows "clash".
    let shared = fleet_on(&pg, "").remove(0);
    shared.import_secret("clash", clash_shared);

    // Not while this server's kauthd holds its database.
    let refused = local.ctl(&[
        "store",
        "migrate",
        "--to",
        &pg.url(),
        "--config",
        local.config_path.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("stop it first"),
        "{}",
        stderr(&refused)
    );
    local.stop();

    let started = Instant::now();
    let doc = migrate(&local, &pg, &shared.key_file(), &[]);
    eprintln!("migrated {USERS} users in {:?}", started.elapsed());
    assert_eq!(names(&doc, "copied").len(), USERS, "{doc}");
    assert_eq!(names(&doc, "conflicts"), vec!["clash"], "{doc}");
    assert_eq!(doc["policy_copied"], 1, "{doc}");

    let step = step_with_margin(20);
    let clash = login_code(
        &shared.socket,
        "clash",
        &oathtool_at_step(clash_shared, step),
    );
    assert!(
        clash.succeeded(),
        "the shared clash was replaced: {clash:?}"
    );
    // Every migrated user logs in with an oathtool code through a daemon
    // on the shared database.
    let failed: Vec<usize> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (shared, secrets) = (&shared, &secrets);
                scope.spawn(move || {
                    (w..USERS)
                        .step_by(4)
                        .filter(|&i| {
                            let code = oathtool_at_step(&secrets[i], step);
                            !login_code(&shared.socket, &format!("u{i}"), &code).succeeded()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(failed.is_empty(), "users whose codes failed: {failed:?}");
    let doc = json(&shared.ctl(&["--json", "policy", "show", "--user", "u0"]));
    assert!(doc.to_string().contains("exempt"), "{doc}");

    // Again, preferring this server's records: "clash" is replaced, the
    // others were copied already, and the shared guard still holds.
    let doc = migrate(&local, &pg, &shared.key_file(), &["--prefer", "local"]);
    assert_eq!(names(&doc, "overwritten"), vec!["clash"], "{doc}");
    assert_eq!(names(&doc, "already_there").len(), USERS, "{doc}");
    let spent = login_code(
        &shared.socket,
        "clash",
        &oathtool_at_step(clash_local, step),
    );
    assert!(
        !spent.succeeded(),
        "a step the shared record spent worked again"
    );
    let now_local = login_code(
        &shared.socket,
        "clash",
        &oathtool_at_step(clash_local, step + 1),
    );
    assert!(
        now_local.succeeded(),
        "this server's clash does not log in: {now_local:?}"
    );
}
