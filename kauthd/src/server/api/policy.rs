//! `policy show` (root: everything; users: their own effective policy)
//! and per-user overrides (root only).

use kauth_proto::{ErrorCode, PolicyReport, Response, ServiceDecision, UserPolicy};

use super::{error, root_only, Reply};
use crate::activity;
use crate::activity::EventKind;
use crate::daemon::Daemon;
use crate::escape;
use crate::names;
use crate::policy::{self, Decision, Subject};
use crate::server::access::{own_name, Caller};
use crate::server::refusal_log;
use crate::store::Override;
use crate::unix_users;

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
        return show_own(daemon, caller, user);
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

/// `policy show` for anyone but root: the caller's own effective policy,
/// with no other user's name in it.
fn show_own(daemon: &Daemon, caller: &Caller, user: Option<&str>) -> Reply {
    let own = own_name(daemon, caller)?.ok_or_else(|| {
        error(
            ErrorCode::NotFound,
            format!("{} has no user name in /etc/passwd", caller.describe()),
        )
    })?;
    if let Some(other) = user.filter(|name| *name != own) {
        refusal_log::warn(
            caller,
            format_args!(
                "refused policy show of {} for {}: not their account",
                escape::for_log(other),
                caller.describe()
            ),
        );
        return Err(error(
            ErrorCode::Forbidden,
            format!(
                "you may only see the policy for your own account, not {other}'s; run `kauthctl policy show` without --user (root sees everyone's)"
            ),
        ));
    }
    let config = daemon.config();
    let overrides = daemon
        .store()
        .policy_override(&own)?
        .map(|rule| vec![(own.clone(), rule.as_str().to_owned())])
        .unwrap_or_default();
    let require_users = config
        .policy
        .require_users
        .iter()
        .filter(|name| **name == own)
        .cloned()
        .collect();
    let user = user_policy(daemon, &own)?;
    Ok(Response::Policy(PolicyReport {
        enabled: config.policy.enabled,
        require: config.policy.require.as_str().to_owned(),
        require_users,
        require_groups: config.policy.require_groups.clone(),
        deadline: config.policy.deadline.map(|day| day.to_string()),
        exempt_services: config.policy.exempt_services.clone(),
        overrides,
        user: Some(user),
    }))
}

/// What the policy means for `name`: required or not and why, from when,
/// and the decision on each service.
pub(super) fn user_policy(daemon: &Daemon, name: &str) -> Result<UserPolicy, Response> {
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
            Decision::Deny { .. } if policy::enrolls_at_login(&config.policy, &service) => "enroll",
            Decision::Deny { .. } => "deny",
        };
        services.push(ServiceDecision {
            service,
            decision: kind.to_owned(),
            rule: decision.rule().to_owned(),
        });
    }
    let required_from = config
        .policy
        .deadline
        .filter(|_| required)
        .map(|day| day.to_string());
    Ok(UserPolicy {
        name: name.to_owned(),
        enrolled,
        required,
        rule,
        services,
        required_from,
    })
}

pub fn set(daemon: &Daemon, caller: &Caller, user: &str, rule: Option<&str>) -> Response {
    if !caller.is_root() {
        return root_only(caller, "change the policy");
    }
    if let Err(why) = names::check_login_name(user) {
        return Response::from(why);
    }
    if rule.is_some() {
        if let Err(refusal) = known_user(daemon, user) {
            return refusal;
        }
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
                &format!("policy for the user set to {what} by {}", caller.by_whom()),
            );
            Response::Done
        }
        Err(e) => Response::from(e),
    }
}

/// Refuses a name that is neither a system user nor a kauthd account (a
/// typo would otherwise make an override nobody has).
fn known_user(daemon: &Daemon, name: &str) -> Result<(), Response> {
    if unix_users::user_by_name(name).is_some() || daemon.store().account(name)?.is_some() {
        return Ok(());
    }
    Err(error(
        ErrorCode::NotFound,
        format!(
            "there is no user {name}: not in /etc/passwd and no kauthd account; check the name (`kauthctl user list` shows the accounts)"
        ),
    ))
}
