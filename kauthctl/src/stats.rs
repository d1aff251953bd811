//! `kauthctl stats`: kauthd's counters as text, JSON (`--json`) or the
//! Prometheus text exposition format (`--prometheus`, for the node
//! exporter's textfile collector: `kauthctl stats --prometheus >
//! DIR/kauthd.prom.$$ && mv DIR/kauthd.prom.$$ DIR/kauthd.prom`).

use std::fmt::Write as _;

use kauth_proto::{Client, LoginCounts, Request, Response, StatsPeriod, StatsReport};

use crate::connection::call;
use crate::output::{cell, Failure, Output};

pub fn run(prometheus: bool, client: &mut Client, out: &Output) -> Result<(), Failure> {
    if prometheus && out.is_json() {
        return Err(Failure::usage(
            "give --json or --prometheus, not both".to_owned(),
        ));
    }
    let report = match call(client, &Request::Stats)? {
        Response::Stats(report) => report,
        other => return Err(Failure::from_response(other)),
    };
    if prometheus {
        print!("{}", exposition(&report));
        return Ok(());
    }
    let fields = serde_json::to_value(&report)
        .map_err(|e| Failure::failed("internal", format!("cannot write the statistics: {e}")))?;
    out.success(&text(&report), fields);
    Ok(())
}

fn latency(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
}

fn outcomes(counts: &LoginCounts) -> String {
    format!(
        "{} succeeded, {} denied, {} locked",
        counts.success, counts.denied, counts.locked
    )
}

fn period_text(title: &str, period: &StatsPeriod) -> String {
    let mut text = format!("{title}:\n  logins: {}\n", outcomes(&period.logins));
    for service in &period.services {
        let _ = writeln!(
            text,
            "    {}: {}",
            cell(&service.service),
            outcomes(&service.logins)
        );
    }
    let refused = &period.codes_refused;
    let _ = writeln!(
        text,
        "  codes refused: {} wrong, {} replayed, {} while locked\n  recovery codes used: {}\n  login latency (kauthd's time): p50 {}, p99 {}",
        refused.wrong,
        refused.replayed,
        refused.locked,
        period.recovery_codes_used,
        latency(period.latency_ms.p50),
        latency(period.latency_ms.p99)
    );
    text
}

fn text(report: &StatsReport) -> String {
    let mut text = format!("kauthd up {} s\n", report.uptime_seconds);
    text.push_str(&period_text("Since start", &report.since_start));
    text.push_str(&period_text("Last minute", &report.last_minute));
    let c = &report.connections;
    let _ = write!(
        text,
        "Now:\n  locks in force: {} accounts, {} hosts\n  connections in use: {} root, {} PAM callers, {} users\n  argon2 runs waiting: {}",
        report.locks.accounts, report.locks.hosts, c.root, c.pam_callers, c.users, report.argon2_queue
    );
    text
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    fn logins(&mut self, name: &str, period: &StatsPeriod) {
        for service in &period.services {
            let counts = service.logins;
            for (outcome, n) in [
                ("success", counts.success),
                ("denied", counts.denied),
                ("locked", counts.locked),
            ] {
                self.sample(
                    name,
                    &[("service", &service.service), ("outcome", outcome)],
                    n,
                );
            }
        }
    }
}

fn exposition(report: &StatsReport) -> String {
    let mut m = Metrics(String::new());
    let start = &report.since_start;
    let minute = &report.last_minute;
    m.family(
        "kauthd_uptime_seconds",
        "gauge",
        "Seconds since kauthd started.",
    );
    m.sample("kauthd_uptime_seconds", &[], report.uptime_seconds);
    m.family(
        "kauthd_logins_total",
        "counter",
        "Logins ended since kauthd started, by PAM service and outcome.",
    );
    m.logins("kauthd_logins_total", start);
    m.family(
        "kauthd_logins_last_minute",
        "gauge",
        "Logins ended over the last minute, by PAM service and outcome.",
    );
    m.logins("kauthd_logins_last_minute", minute);
    m.family(
        "kauthd_codes_refused_total",
        "counter",
        "Codes refused at logins since kauthd started, by reason.",
    );
    for (reason, n) in [
        ("wrong", start.codes_refused.wrong),
        ("replayed", start.codes_refused.replayed),
        ("locked", start.codes_refused.locked),
    ] {
        m.sample("kauthd_codes_refused_total", &[("reason", reason)], n);
    }
    m.family(
        "kauthd_codes_refused_last_minute",
        "gauge",
        "Codes refused at logins over the last minute, by reason.",
    );
    for (reason, n) in [
        ("wrong", minute.codes_refused.wrong),
        ("replayed", minute.codes_refused.replayed),
        ("locked", minute.codes_refused.locked),
    ] {
        m.sample("kauthd_codes_refused_last_minute", &[("reason", reason)], n);
    }
    m.family(
        "kauthd_recovery_codes_used_total",
        "counter",
        "Logins with a recovery code since kauthd started.",
    );
    m.sample(
        "kauthd_recovery_codes_used_total",
        &[],
        start.recovery_codes_used,
    );
    m.family(
        "kauthd_login_latency_seconds",
        "gauge",
        "Time kauthd spent on a login, by quantile, since start and over the last minute.",
    );
    for (window, period) in [("since_start", start), ("last_minute", minute)] {
        for (quantile, ms) in [
            ("0.5", period.latency_ms.p50),
            ("0.99", period.latency_ms.p99),
        ] {
            if let Some(ms) = ms {
                m.sample(
                    "kauthd_login_latency_seconds",
                    &[("window", window), ("quantile", quantile)],
                    ms / 1000.0,
                );
            }
        }
    }
    m.family("kauthd_locks", "gauge", "Locks in force, by kind.");
    m.sample(
        "kauthd_locks",
        &[("kind", "account")],
        report.locks.accounts,
    );
    m.sample("kauthd_locks", &[("kind", "host")], report.locks.hosts);
    m.family(
        "kauthd_connections",
        "gauge",
        "Connections in use, by class of caller.",
    );
    let c = &report.connections;
    m.sample("kauthd_connections", &[("class", "root")], c.root);
    m.sample(
        "kauthd_connections",
        &[("class", "pam_caller")],
        c.pam_callers,
    );
    m.sample("kauthd_connections", &[("class", "user")], c.users);
    m.family(
        "kauthd_argon2_queue",
        "gauge",
        "argon2 runs waiting for their turn.",
    );
    m.sample("kauthd_argon2_queue", &[], report.argon2_queue);
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
