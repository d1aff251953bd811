//! Resumable logins for panels: a conversation parked at a secret prompt,
//! waiting for the answer on a later connection. Each is found by the
//! SHA-256 of its continuation token (the token itself is never kept),
//! belongs to the uid that parked it, is taken out at its first use and
//! expires after `[daemon] idle_timeout`.
//!
//! They live in memory only: a kauthd restart forgets them, and the
//! person signs in again. One caller uid holds at most
//! [`MAX_PER_UID`]; parking one more drops its oldest. Expired ones are
//! dropped whenever a login is parked.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Conversation;

/// Parked logins per caller uid.
pub const MAX_PER_UID: usize = 1000;

/// What a continuation token's digest finds.
pub type TokenDigest = [u8; 32];

#[derive(Debug)]
struct Entry {
    uid: u32,
    expires: Instant,
    conversation: Conversation,
}

/// Every parked login.
#[derive(Debug, Default)]
pub struct ParkedLogins {
    entries: HashMap<TokenDigest, Entry>,
    /// Each uid's tokens, oldest first.
    by_uid: HashMap<u32, VecDeque<TokenDigest>>,
}

/// Why a token does not continue a login. The caller is told the same for
/// each; the log says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    OtherUid,
}

impl ParkedLogins {
    /// Parks `conversation` for `uid` until `now + lifetime`.
    pub(super) fn park(
        &mut self,
        digest: TokenDigest,
        uid: u32,
        conversation: Conversation,
        now: Instant,
        lifetime: Duration,
    ) {
        self.forget_expired(now);
        let queue = self.by_uid.entry(uid).or_default();
        while queue.len() >= MAX_PER_UID {
            let Some(oldest) = queue.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        queue.push_back(digest);
        self.entries.insert(
            digest,
            Entry {
                uid,
                expires: now + lifetime,
                conversation,
            },
        );
    }

    /// Takes the login parked under `digest` out, for `uid`. A token is
    /// spent by any presentation, even a refused one.
    pub(super) fn take(
        &mut self,
        digest: &TokenDigest,
        uid: u32,
        now: Instant,
    ) -> Result<Conversation, Refusal> {
        let entry = self.entries.remove(digest).ok_or(Refusal::Unknown)?;
        if let Some(queue) = self.by_uid.get_mut(&entry.uid) {
            queue.retain(|d| d != digest);
            if queue.is_empty() {
                self.by_uid.remove(&entry.uid);
            }
        }
        if entry.expires <= now {
            return Err(Refusal::Expired);
        }
        if entry.uid != uid {
            return Err(Refusal::OtherUid);
        }
        Ok(entry.conversation)
    }

    /// Drops expired logins, each uid's from its oldest on (they are
    /// parked in time order): the work is one look per uid beyond what it
    /// drops.
    fn forget_expired(&mut self, now: Instant) {
        let entries = &mut self.entries;
        self.by_uid.retain(|_, queue| {
            while let Some(oldest) = queue.front() {
                match entries.get(oldest) {
                    Some(entry) if entry.expires > now => break,
                    _ => {
                        entries.remove(oldest);
                        queue.pop_front();
                    }
                }
            }
            !queue.is_empty()
        });
    }

    /// How many logins are parked for `uid`.
    #[cfg(test)]
    pub fn count(&self, uid: u32) -> usize {
        self.by_uid.get(&uid).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Stage;
    use super::*;

    fn conversation(uid: u32) -> Conversation {
        Conversation {
            user: "ann".to_owned(),
            service: "kpanel".to_owned(),
            rhost: None,
            pid: 1,
            uid,
            stage: Stage::AwaitCode,
            first_factor_ok: true,
            first_factor_vouched: true,
            change: None,
            enroll: None,
            resumable: true,
            is_login: true,
            busy: Duration::ZERO,
        }
    }

    const LIFE: Duration = Duration::from_secs(120);

    fn digest(n: u32) -> TokenDigest {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&n.to_be_bytes());
        d
    }

    #[test]
    fn a_token_works_once_and_only_for_its_uid_before_it_expires() {
        let mut parked = ParkedLogins::default();
        let now = Instant::now();
        parked.park(digest(1), 33, conversation(33), now, LIFE);
        assert!(parked.take(&digest(1), 33, now).is_ok());
        assert_eq!(
            parked.take(&digest(1), 33, now).unwrap_err(),
            Refusal::Unknown
        );

        parked.park(digest(2), 33, conversation(33), now, LIFE);
        assert_eq!(
            parked.take(&digest(2), 34, now).unwrap_err(),
            Refusal::OtherUid
        );
        // Presented by another uid, it is spent for its own uid too.
        assert_eq!(
            parked.take(&digest(2), 33, now).unwrap_err(),
            Refusal::Unknown
        );

        parked.park(digest(3), 33, conversation(33), now, LIFE);
        assert_eq!(
            parked.take(&digest(3), 33, now + LIFE).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(parked.count(33), 0);
    }

    #[test]
    fn one_uid_holds_a_bounded_number_and_loses_its_oldest_first() {
        let mut parked = ParkedLogins::default();
        let now = Instant::now();
        parked.park(digest(0), 40, conversation(40), now, LIFE);
        for n in 1..=MAX_PER_UID as u32 {
            parked.park(digest(n), 33, conversation(33), now, LIFE);
        }
        assert_eq!(parked.count(33), MAX_PER_UID);
        parked.park(digest(5000), 33, conversation(33), now, LIFE);
        assert_eq!(parked.count(33), MAX_PER_UID);
        assert_eq!(
            parked.take(&digest(1), 33, now).unwrap_err(),
            Refusal::Unknown
        );
        assert!(parked.take(&digest(2), 33, now).is_ok());
        assert!(parked.take(&digest(5000), 33, now).is_ok());
        // Another uid's login is not pushed out.
        assert!(parked.take(&digest(0), 40, now).is_ok());
    }

    #[test]
    fn expired_logins_are_forgotten_when_any_login_is_parked() {
        let mut parked = ParkedLogins::default();
        let now = Instant::now();
        parked.park(digest(1), 33, conversation(33), now, LIFE);
        parked.park(digest(2), 40, conversation(40), now, LIFE);
        parked.park(digest(3), 33, conversation(33), now + LIFE, LIFE);
        assert_eq!(parked.count(33), 1);
        assert_eq!(parked.count(40), 0);
        assert_eq!(parked.entries.len(), 1);
        assert!(parked.take(&digest(3), 33, now + LIFE).is_ok());
    }
}
