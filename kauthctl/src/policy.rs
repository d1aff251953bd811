//! `kauthctl policy …`

use kauth_proto::{Client, Request, Response};

use crate::args::PolicyCommand;
use crate::connection::{call, expect_done};
use crate::output::{Failure, Output};

pub fn run(command: &PolicyCommand, client: &mut Client, out: &Output) -> Result<(), Failure> {
    let (user, rule, text) = match command {
        PolicyCommand::Show { user } => return show(client, out, user.clone()),
        PolicyCommand::Require { user } => (user, Some("require"), "2FA is now required of"),
        PolicyCommand::Exempt { user } => (user, Some("exempt"), "2FA is now not required of"),
        PolicyCommand::Default { user } => (user, None, "the server-wide rules now decide for"),
    };
    let request = Request::PolicySet {
        user: user.clone(),
        rule: rule.map(str::to_owned),
    };
    expect_done(client, &request, out, &format!("{text} {user}"))
}

fn show(client: &mut Client, out: &Output, user: Option<String>) -> Result<(), Failure> {
    let response = call(client, &Request::PolicyShow { user })?;
    let Response::Policy(report) = &response else {
        return Err(Failure::from_response(response));
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            items.join(", ")
        }
    };
    let mut text = format!(
        "two-factor checks: {}\nrequired of: {}{}\ndeadline: {}\nexempt services: {}",
        if report.enabled {
            "on"
        } else {
            "off ([policy] enabled = false)"
        },
        report.require,
        match report.require.as_str() {
            "listed" => format!(
                " (users: {}; groups: {})",
                list(&report.require_users),
                list(&report.require_groups)
            ),
            _ => String::new(),
        },
        report
            .deadline
            .as_deref()
            .unwrap_or("none (required users without 2FA are refused now)"),
        list(&report.exempt_services),
    );
    if !report.overrides.is_empty() {
        text.push_str("\nper-user overrides:");
        for (name, rule) in &report.overrides {
            text.push_str(&format!("\n  {name}: {rule}"));
        }
    }
    if let Some(user) = &report.user {
        text.push_str(&format!(
            "\n\nuser {}: 2FA {}, {} ({})",
            user.name,
            if user.enrolled { "on" } else { "off" },
            if user.required {
                "required"
            } else {
                "not required"
            },
            user.rule
        ));
        for s in &user.services {
            let what = match s.decision.as_str() {
                "ask_code" => "asked for a code",
                "skip" => "no code asked",
                "enroll" => "asked to set up 2FA during the login",
                _ => "refused",
            };
            text.push_str(&format!("\n  {:<16} {what}: {}", s.service, s.rule));
        }
    }
    let mut fields = serde_json::to_value(&response).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut fields {
        map.remove("type");
    }
    out.success(&text, fields);
    Ok(())
}
