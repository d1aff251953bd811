//! Evaluating a stack the way libpam does, with pam_kpanel failing and
//! every combination of the other modules' results, to find a way a login
//! still passes.

use std::collections::HashMap;
use std::rc::Rc;

use super::parse::{contains_kpanel, module_ids, Action, Entry, Kind, ModuleLine};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impression {
    Undef,
    Positive,
    Negative,
}

/// One evaluation of a stack with a given result for every module.
struct Run<'a> {
    results: &'a HashMap<usize, &'static str>,
    impression: Impression,
    success: bool,
    kpanel_ran: Option<Rc<ModuleLine>>,
    /// The last line that ended the stack or jumped past pam_kpanel
    /// before it ran.
    skipper: Option<Rc<ModuleLine>>,
}

impl Run<'_> {
    /// Returns true when the stack (or substack) was decided.
    fn entries(&mut self, entries: &[Entry]) -> bool {
        let mut i = 0;
        while let Some(entry) = entries.get(i) {
            match entry {
                Entry::Substack(inner) => {
                    // done and die end only the substack.
                    self.entries(inner);
                }
                Entry::Module { id, line } => {
                    let result = self.results.get(id).copied().unwrap_or("success");
                    if line.is_kpanel() && self.kpanel_ran.is_none() {
                        self.kpanel_ran = Some(Rc::clone(line));
                    }
                    match line.actions.for_result(result) {
                        Action::Ignore => {}
                        Action::Reset => {
                            self.impression = Impression::Undef;
                            self.success = false;
                        }
                        action @ (Action::Ok | Action::Done) => {
                            if self.impression == Impression::Undef
                                || (self.impression == Impression::Positive && self.success)
                            {
                                self.impression = Impression::Positive;
                                self.success = result == "success";
                            }
                            if action == Action::Done && self.impression != Impression::Negative {
                                if self.kpanel_ran.is_none() {
                                    self.skipper = Some(Rc::clone(line));
                                }
                                return true;
                            }
                        }
                        action @ (Action::Bad | Action::Die) => {
                            if self.impression != Impression::Negative {
                                self.impression = Impression::Negative;
                                self.success = false;
                            }
                            if action == Action::Die {
                                return true;
                            }
                        }
                        Action::Jump(n) => {
                            let skipped = entries.get(i + 1..(i + 1 + n).min(entries.len()));
                            if self.kpanel_ran.is_none() && skipped.is_some_and(contains_kpanel) {
                                self.skipper = Some(Rc::clone(line));
                            }
                            i += n;
                        }
                    }
                }
            }
            i += 1;
        }
        false
    }
}

/// How a login gets through although pam_kpanel failed.
#[derive(Debug, Clone)]
pub enum Bypass {
    /// pam_kpanel ran and failed, and its own control ignored that.
    Control {
        line: Rc<ModuleLine>,
        result: &'static str,
    },
    /// pam_kpanel never ran: this line ended the stack or jumped past it.
    Skipped { by: Rc<ModuleLine> },
}

/// How many modules' results are varied; the rest are taken to succeed.
const MAX_VARIED: usize = 12;

/// Tries every combination of the other modules' results with pam_kpanel
/// failing, and returns a way the stack still succeeds, if there is one.
pub(super) fn find_bypass(entries: &[Entry], kind: Kind) -> Option<Bypass> {
    let (kpanel_failures, other_failure): (&[&'static str], &'static str) = match kind {
        Kind::Auth => (&["auth_err", "maxtries", "authinfo_unavail"], "auth_err"),
        Kind::Account => (&["perm_denied", "authinfo_unavail"], "perm_denied"),
        Kind::Session => (&["session_err"], "session_err"),
        Kind::Password => (&["authtok_err"], "authtok_err"),
    };
    let mut all = Vec::new();
    module_ids(entries, &mut all);
    let mut fixed: HashMap<usize, &'static str> = HashMap::new();
    let mut varied = Vec::new();
    for (id, line) in &all {
        match line.name() {
            "pam_deny.so" | "pam_rootok.so" => {
                fixed.insert(*id, other_failure);
            }
            "pam_permit.so" => {
                fixed.insert(*id, "success");
            }
            _ if line.is_kpanel() => {}
            _ if varied.len() < MAX_VARIED => varied.push(*id),
            _ => {
                fixed.insert(*id, "success");
            }
        }
    }
    let mut found: Option<Bypass> = None;
    for kpanel_result in kpanel_failures {
        let mut results = fixed.clone();
        for (id, line) in &all {
            if line.is_kpanel() {
                results.insert(*id, kpanel_result);
            }
        }
        for mask in 0u32..(1u32 << varied.len()) {
            for (bit, id) in varied.iter().enumerate() {
                let ok = mask & (1 << bit) != 0;
                results.insert(*id, if ok { "success" } else { other_failure });
            }
            let mut run = Run {
                results: &results,
                impression: Impression::Undef,
                success: false,
                kpanel_ran: None,
                skipper: None,
            };
            run.entries(entries);
            if !(run.impression == Impression::Positive && run.success) {
                continue;
            }
            match (run.kpanel_ran, run.skipper) {
                (Some(line), _) => {
                    return Some(Bypass::Control {
                        line,
                        result: kpanel_result,
                    })
                }
                (None, Some(by)) => {
                    found.get_or_insert(Bypass::Skipped { by });
                }
                (None, None) => {}
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::doctor::pam::parse::stack_of;

    fn bypass(text: &str, kind: Kind) -> Option<Bypass> {
        find_bypass(&stack_of(&[("svc", text)], "svc", kind), kind)
    }

    #[test]
    fn required_after_unix_holds() {
        let text = "auth required pam_unix.so\nauth required pam_kpanel.so otp_only\n";
        assert!(bypass(text, Kind::Auth).is_none());
        let text = "auth requisite pam_kpanel.so\n";
        assert!(bypass(text, Kind::Auth).is_none());
    }

    #[test]
    fn optional_and_sufficient_kpanel_are_bypasses() {
        for control in ["optional", "sufficient", "[success=ok default=ignore]"] {
            let text =
                format!("auth required pam_unix.so\nauth {control} pam_kpanel.so otp_only\n");
            match bypass(&text, Kind::Auth) {
                Some(Bypass::Control { line, .. }) => assert_eq!(line.number, 2),
                other => panic!("{control}: {other:?}"),
            }
        }
    }

    #[test]
    fn sufficient_module_before_kpanel_skips_it() {
        let text = "auth sufficient pam_unix.so\nauth required pam_kpanel.so\n";
        match bypass(text, Kind::Auth) {
            Some(Bypass::Skipped { by }) => assert_eq!(by.number, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debian_common_auth_pattern_holds() {
        let common = "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_kpanel.so otp_only\n";
        let files = [("common-auth", common), ("login", "@include common-auth\n")];
        assert!(find_bypass(&stack_of(&files, "login", Kind::Auth), Kind::Auth).is_none());
        // A jump over pam_kpanel is a way round it.
        let common = "auth [success=2 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_kpanel.so otp_only\nauth required pam_permit.so\n";
        let files = [
            ("common-auth", common),
            ("login", "auth include common-auth\n"),
        ];
        match find_bypass(&stack_of(&files, "login", Kind::Auth), Kind::Auth) {
            Some(Bypass::Skipped { by }) => assert_eq!(by.number, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rootok_is_not_counted() {
        let text = "auth sufficient pam_rootok.so\nauth required pam_unix.so\nauth required pam_kpanel.so otp_only\n";
        assert!(bypass(text, Kind::Auth).is_none());
    }

    #[test]
    fn substack_done_does_not_end_the_parent() {
        let files = [
            ("first", "auth sufficient pam_unix.so\n"),
            (
                "svc",
                "auth substack first\nauth required pam_kpanel.so otp_only\n",
            ),
        ];
        assert!(find_bypass(&stack_of(&files, "svc", Kind::Auth), Kind::Auth).is_none());
    }

    #[test]
    fn account_optional_is_a_bypass() {
        let text = "account required pam_unix.so\naccount optional pam_kpanel.so\n";
        assert!(matches!(
            bypass(text, Kind::Account),
            Some(Bypass::Control { .. })
        ));
    }
}
