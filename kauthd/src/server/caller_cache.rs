//! Who each recent uid is, so that a flood of connections from one uid
//! costs one read of `/etc/passwd` (and `/etc/group`) per
//! [`LIFETIME`], not one per connection. A new configuration (a changed
//! `[access] pam_callers`) starts afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kauth_proto::peer::PeerCred;

use crate::config::Config;
use crate::server::access::{self, Caller};

/// How long a uid's answer is reused.
pub const LIFETIME: Duration = Duration::from_secs(5);
/// The most uids remembered; past this the cache starts afresh.
pub const MAX_UIDS: usize = 4096;

#[derive(Debug, Default)]
pub struct CallerCache {
    /// The configuration the entries were made with.
    config: Option<Arc<Config>>,
    /// By (uid, gid): a group named in `pam_callers` is matched by gid too.
    entries: HashMap<(u32, u32), (Caller, Instant)>,
}

impl CallerCache {
    /// The caller at the other end of a connection (its pid is this
    /// connection's, whatever the cache holds).
    pub fn classify(&mut self, cred: PeerCred, config: &Arc<Config>, now: Instant) -> Caller {
        if !self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config))
            || self.entries.len() >= MAX_UIDS
        {
            self.entries.clear();
            self.config = Some(Arc::clone(config));
        }
        let key = (cred.uid, cred.gid);
        if let Some((caller, made)) = self.entries.get(&key) {
            if now.saturating_duration_since(*made) < LIFETIME {
                return Caller {
                    pid: cred.pid,
                    ..caller.clone()
                };
            }
        }
        let caller = access::classify(cred, config);
        self.entries.insert(key, (caller.clone(), now));
        caller
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::access::Role;

    fn cred(uid: u32, pid: i32) -> PeerCred {
        PeerCred { pid, uid, gid: uid }
    }

    #[test]
    fn a_uid_is_looked_up_again_after_a_reload_or_its_lifetime() {
        let mut cache = CallerCache::default();
        let now = Instant::now();
        let plain = Arc::new(Config::default());
        let first = cache.classify(cred(4242, 10), &plain, now);
        assert_eq!((first.role, first.pid), (Role::User, 10));
        let again = cache.classify(cred(4242, 11), &plain, now);
        assert_eq!((again.role, again.pid), (Role::User, 11));

        let listed = Arc::new(Config::parse("[access]\npam_callers = [4242]\n").unwrap());
        assert_eq!(
            cache.classify(cred(4242, 12), &listed, now).role,
            Role::PamCaller
        );
        assert_eq!(cache.classify(cred(4242, 12), &plain, now).role, Role::User);
    }

    #[test]
    fn entries_expire() {
        let mut cache = CallerCache::default();
        let now = Instant::now();
        let config = Arc::new(Config::default());
        cache.classify(cred(4242, 1), &config, now);
        assert_eq!(cache.entries.len(), 1);
        let later = now + LIFETIME;
        cache.classify(cred(4242, 1), &config, later);
        assert_eq!(cache.entries[&(4242, 4242)].1, later);
    }
}
