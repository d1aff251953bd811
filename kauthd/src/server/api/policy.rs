//! `policy show` and per-user overrides. Root only.

use kauth_proto::{ErrorCode, PolicyReport, Response, ServiceDecision, UserPolicy};

use super::{error, root_only, Reply};
use crate::activity;
use crate::activity::EventKind;
use crate::daemon::Daemon;
use crate::names;
use crate::policy::{self, Decision, Subject};
use crate::server::access::Caller;
use crate::store::Override;

/// Services whose decision `policy show --user` lists: sshd, the exempt
/// services, and any service the user's sessions came from.
fn services_for(daemon: &Daemon, user: &str) -> Vec<String> {
    let config = daemon.config();
    let mut services = vec!["sshd".to_owned()];
    services.extend(config.policy.exempt_services.iter().cloned());
    if let Ok(open) = daemon.store().open_sessions(Some(user)) {
        services.extend(open.into_iter().map(|s| s.info.service));
    }
    services.sort();
    services.dedup();
    services
}

pub fn show(daemon: &Daemon, caller: &Caller, user: Option<&str>) -> Reply {
    if !caller.is_root() {
        return Err(root_only(caller, "show the policy"));
    }
    let config = daemon.config();
    let overrides = daemon
        .store()
        .policy_overrides()?
        .into_iter()
        .map(|(name, rule)| (name, rule.as_str().to_owned()))
        .collect();
    let user = match user {
        Some(name) => Some(user_policy(daemon, name)?),
        None => None,
    };
    Ok(Response::Policy(PolicyReport {
        enabled: config.policy.enabled,
        require: config.policy.require.as_str().to_owned(),
        require_users: config.policy.require_users.clone(),
        require_groups: config.policy.require_groups.clone(),
        deadline: config.policy.deadline.map(|day| day.to_string()),
        exempt_services: config.policy.exempt_services.clone(),
        overrides,
        user,
    }))
}

fn user_policy(daemon: &Daemon, name: &str) -> Result<UserPolicy, Response> {
    names::check_login_name(name)?;
    let config = daemon.config();
    let account = daemon.store().account(name)?;
    let (enrolled, user_override) = {
        let store = daemon.store();
        let enrolled = match &account {
            Some(a) => store.has_totp(a.id)?,
            None => false,
        };
        (enrolled, store.policy_override(name)?)
    };
    let subject = Subject {
        name,
        enrolled,
        user_override,
    };
    let (required, rule) = policy::required(&config.policy, &subject);
    let mut services = Vec::new();
    for service in services_for(daemon, name) {
        let decision = policy::decide_for(daemon, name, account.as_ref(), &service)?;
        let kind = match decision {
            Decision::AskCode { .. } => "ask_code",
            Decision::Skip { .. } => "skip",
            Decision::Deny { .. } => "deny",
        };
        services.push(ServiceDecision {
            service,
            decision: kind.to_owned(),
            rule: decision.rule().to_owned(),
        });
    }
    Ok(UserPolicy {
        name: name.to_owned(),
        enrolled,
        required,
        rule,
        services,
    })
}

pub fn set(daemon: &Daemon, caller: &Caller, user: &str, rule: Option<&str>) -> Response {
    if !caller.is_root() {
        return root_only(caller, "change the policy");
    }
    if let Err(why) = names::check_login_name(user) {
        return Response::from(why);
    }
    let rule = match rule {
        None => None,
        Some("require") => Some(Override::Require),
        Some("exempt") => Some(Override::Exempt),
        Some(other) => {
            return error(
                ErrorCode::Invalid,
                format!("unknown rule {other:?}: use require, exempt, or none for the default"),
            )
        }
    };
    let result = daemon.store().set_policy_override(user, rule);
    match result {
        Ok(()) => {
            let what = rule.map_or("default (the [policy] rules)", Override::as_str);
            activity::event(
                daemon,
                Some(user),
                EventKind::Admin,
                &format!("policy for the user set to {what} by {}", caller.describe()),
            );
            Response::Done
        }
        Err(e) => Response::from(e),
    }
}
