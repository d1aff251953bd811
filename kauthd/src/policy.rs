//! The two-factor policy: for a user and a service, whether a code is
//! asked, skipped, or the login refused — and which rule decided. The same
//! answer serves SSH, the panel and every other PAM service, and the PAM
//! `account` step.

use crate::clock;
use crate::clock::Date;
use crate::config::{PolicyConfig, Require};
use crate::daemon::Daemon;
use crate::store::{Account, Override, StoreError};
use crate::twofactor::code_check;
use crate::unix_users;

/// What the policy says for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ask for a verification code.
    AskCode { rule: String },
    /// Let the login through without a code; `notice` is shown to the user.
    Skip {
        rule: String,
        notice: Option<String>,
    },
    /// Refuse: the user must have 2FA and does not.
    Deny { rule: String, message: String },
}

impl Decision {
    pub fn rule(&self) -> &str {
        match self {
            Decision::AskCode { rule }
            | Decision::Skip { rule, .. }
            | Decision::Deny { rule, .. } => rule,
        }
    }
}

/// Facts about the user the policy needs.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub name: &'a str,
    pub enrolled: bool,
    pub user_override: Option<Override>,
}

/// Whether the user must have 2FA at all, and why.
pub fn required(policy: &PolicyConfig, subject: &Subject<'_>) -> (bool, String) {
    match subject.user_override {
        Some(Override::Exempt) => return (false, "per-user override: exempt".to_owned()),
        Some(Override::Require) => return (true, "per-user override: require".to_owned()),
        None => {}
    }
    match policy.require {
        Require::All => (true, "[policy] require = \"all\"".to_owned()),
        Require::Listed => {
            if policy.require_users.iter().any(|u| u == subject.name) {
                return (true, "listed in [policy] require_users".to_owned());
            }
            let user = unix_users::user_by_name(subject.name);
            for group_name in &policy.require_groups {
                let Some(group) = unix_users::group_by_name(group_name) else {
                    continue;
                };
                let member = match &user {
                    Some(user) => unix_users::is_member(user, &group),
                    None => group.members.iter().any(|m| m == subject.name),
                };
                if member {
                    return (
                        true,
                        format!("member of group {group_name} in [policy] require_groups"),
                    );
                }
            }
            (
                false,
                "[policy] require = \"listed\" and the user is not listed".to_owned(),
            )
        }
        Require::None => (false, "[policy] require = \"none\"".to_owned()),
    }
}

/// The decision for one login of `subject` on `service` at `now`.
pub fn decide(policy: &PolicyConfig, subject: &Subject<'_>, service: &str, now: i64) -> Decision {
    if !policy.enabled {
        return Decision::Skip {
            rule: "[policy] enabled = false: two-factor checks are off on this server".to_owned(),
            notice: None,
        };
    }
    if policy.exempt_services.iter().any(|s| s == service) {
        return Decision::Skip {
            rule: format!("service {service} is in [policy] exempt_services"),
            notice: None,
        };
    }
    if subject.enrolled {
        return Decision::AskCode {
            rule: "the user has two-factor authentication on".to_owned(),
        };
    }
    let (must, why) = required(policy, subject);
    if !must {
        return Decision::Skip {
            rule: why,
            notice: None,
        };
    }
    let deadline = policy.deadline.map(Date::start);
    match deadline {
        Some(day) if now < day => Decision::Skip {
            rule: format!("{why}, but the deadline {} has not come", clock::format_date(day)),
            notice: Some(format!(
                "Two-factor authentication will be required for this account from {}. Set it up now with `kauthctl 2fa enroll`.",
                clock::format_date(day)
            )),
        },
        _ => Decision::Deny {
            rule: match deadline {
                Some(day) => format!("{why}, and the deadline {} has passed", clock::format_date(day)),
                None => format!("{why}, with no deadline"),
            },
            message: "Two-factor authentication is required for this account and it is not set up. Set it up with `kauthctl 2fa enroll`, or ask the administrator.".to_owned(),
        },
    }
}

/// Whether a required user without 2FA sets it up inside a login on
/// `service` (instead of the `Deny` being final): `[policy]
/// enroll_at_login`, on a service that can show texts.
pub fn enrolls_at_login(policy: &PolicyConfig, service: &str) -> bool {
    policy.enroll_at_login && !policy.prompt_only_services.iter().any(|s| s == service)
}

/// Whether a code could be asked on `service` at all (the policy is on and
/// the service is not exempt), whoever logs in.
pub fn may_ask_code(policy: &PolicyConfig, service: &str) -> bool {
    policy.enabled && !policy.exempt_services.iter().any(|s| s == service)
}

/// The policy's decision for `name` on `service` now, with the user's
/// facts read from the store.
pub fn decide_for(
    daemon: &Daemon,
    name: &str,
    account: Option<&Account>,
    service: &str,
) -> Result<Decision, StoreError> {
    let config = daemon.config();
    let store = daemon.store();
    let enrolled = match account {
        Some(account) => store.has_totp(account.id)?,
        None => false,
    };
    let user_override = store.policy_override(name)?;
    drop(store);
    let subject = Subject {
        name,
        enrolled,
        user_override,
    };
    Ok(decide(&config.policy, &subject, service, clock::now()))
}

/// What the PAM `account` step answers for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountVerdict {
    /// The login may go on.
    Allow,
    /// Root locked the account.
    LockedByRoot,
    /// A rate-limit lock holds on the name, until then.
    RateLocked { until: i64 },
    /// The user must have 2FA and does not (after the deadline).
    Deny { rule: String, message: String },
    /// A code is required and the login's process (`pid`) gave none.
    NoCodeGiven,
}

/// The PAM `account` step: locked accounts and users who must have 2FA but
/// have none (after the deadline) are refused; a user who must give a code
/// is refused if the login's process `pid` did not give one.
pub fn account_verdict(
    daemon: &Daemon,
    pid: i32,
    user: &str,
    service: &str,
) -> Result<AccountVerdict, StoreError> {
    let account = daemon.store().account(user)?;
    if account.as_ref().is_some_and(|a| a.locked) {
        return Ok(AccountVerdict::LockedByRoot);
    }
    if let Some(until) = code_check::current_lock(daemon, user, None)? {
        return Ok(AccountVerdict::RateLocked { until });
    }
    Ok(match decide_for(daemon, user, account.as_ref(), service)? {
        Decision::Deny { rule, message } => AccountVerdict::Deny { rule, message },
        Decision::AskCode { .. } if !daemon.code_given_recently(pid, user) => {
            AccountVerdict::NoCodeGiven
        }
        Decision::AskCode { .. } | Decision::Skip { .. } => AccountVerdict::Allow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> PolicyConfig {
        crate::config::Config::parse(&format!("[policy]\n{text}"))
            .unwrap()
            .policy
    }

    fn subject(name: &str, enrolled: bool, user_override: Option<Override>) -> Subject<'_> {
        Subject {
            name,
            enrolled,
            user_override,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn enrolled_user_is_always_asked() {
        let d = decide(
            &policy("require = \"none\""),
            &subject("ann", true, None),
            "sshd",
            NOW,
        );
        assert!(matches!(d, Decision::AskCode { .. }));
    }

    #[test]
    fn exempt_service_never_asks() {
        let p = policy("exempt_services = [\"kpanel-api\"]");
        let d = decide(&p, &subject("ann", true, None), "kpanel-api", NOW);
        assert!(matches!(d, Decision::Skip { .. }), "{d:?}");
    }

    #[test]
    fn disabled_policy_asks_nobody() {
        let d = decide(
            &policy("enabled = false"),
            &subject("ann", true, None),
            "sshd",
            NOW,
        );
        assert!(matches!(d, Decision::Skip { .. }));
    }

    #[test]
    fn unenrolled_required_user_is_denied_without_deadline() {
        let d = decide(&policy(""), &subject("ann", false, None), "sshd", NOW);
        assert!(matches!(d, Decision::Deny { .. }));
    }

    #[test]
    fn before_the_deadline_the_user_is_told_the_date() {
        let p = policy("deadline = \"2030-01-01\"");
        match decide(&p, &subject("ann", false, None), "sshd", NOW) {
            Decision::Skip {
                notice: Some(n), ..
            } => assert!(n.contains("2030-01-01"), "{n}"),
            other => panic!("{other:?}"),
        }
        let p = policy("deadline = \"2020-01-01\"");
        assert!(matches!(
            decide(&p, &subject("ann", false, None), "sshd", NOW),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn per_user_exempt_beats_require_all() {
        let d = decide(
            &policy(""),
            &subject("ann", false, Some(Override::Exempt)),
            "sshd",
            NOW,
        );
        assert!(matches!(d, Decision::Skip { .. }));
        assert!(d.rule().contains("override"));
    }

    #[test]
    fn listed_requires_only_listed_users() {
        let p = policy("require = \"listed\"\nrequire_users = [\"bob\"]");
        assert!(matches!(
            decide(&p, &subject("bob", false, None), "sshd", NOW),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide(&p, &subject("ann", false, None), "sshd", NOW),
            Decision::Skip { .. }
        ));
    }
}
