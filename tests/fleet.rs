//! Issue 15: a fleet of kauthd processes on one PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kauth_tests::postgres::PgCluster;

/// The test cluster itself: the kauthd role logs in with the password from
/// the file and not without it, a standby follows the primary, and a
/// promoted standby accepts writes.
#[test]
#[ignore = "needs root"]
fn postgres_cluster_standby_and_promotion_work() {
    let mut primary = PgCluster::start();
    primary.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let password = std::fs::read_to_string(primary.password_file()).unwrap();
    let psql = |url: &str, password: Option<&str>| {
        let mut cmd = std::process::Command::new("psql");
        cmd.args([url, "-X", "-A", "-t", "-c", "SELECT current_user"]);
        cmd.env_remove("PGPASSWORD");
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p.trim());
        }
        cmd.output().unwrap()
    };
    let with = psql(&primary.url(), Some(&password));
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with.stdout).trim(), "kauthd");
    let tcp = psql(&primary.tcp_url(), Some(&password));
    assert!(
        tcp.status.success(),
        "{}",
        String::from_utf8_lossy(&tcp.stderr)
    );
    let without = psql(&primary.url(), Some("wrong"));
    assert!(!without.status.success(), "a wrong password was accepted");

    let standby = PgCluster::standby_of(&primary);
    primary.sql("INSERT INTO t VALUES (2);");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while standby.sql("SELECT count(*) FROM t") != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby did not follow"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    primary.stop();
    standby.promote();
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "f");
    standby.sql("INSERT INTO t VALUES (3);");
    let both = PgCluster::failover_url(&[&primary, &standby]);
    let after = psql(&both, Some(&password));
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}
