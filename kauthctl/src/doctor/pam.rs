//! The PAM stacks that use pam_kpanel, read the way libpam reads them
//! (`include`, `substack`, Debian's `@include`, `[value=action]`
//! controls, `-type` lines) and evaluated the way libpam evaluates them,
//! to answer one question: can a login pass while pam_kpanel says no?
//!
//! Every other module is assumed able to succeed or fail (each
//! combination is tried), except `pam_deny` (always fails), `pam_permit`
//! (always succeeds) and `pam_rootok` (taken as failing: it only lets root
//! skip what root could change anyway).
//!
//! `parse` reads the files into stacks, `simulate` evaluates a stack,
//! `findings` runs the checks and words what they find.

mod findings;
mod parse;
mod simulate;

pub use findings::{check, SshdStack};
