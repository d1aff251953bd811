//! Who gets a connection slot. `[daemon] max_connections` bounds them all;
//! ordinary uids share all but the reserved ones
//! (`DaemonConfig::reserved`), each at most `max_connections_per_uid`; root
//! and `[access] pam_callers` may use every slot, so one user holding all
//! of theirs never locks out a login.

use std::collections::HashMap;

use crate::config::DaemonConfig;
use crate::server::access::{Caller, Role};
use crate::stats::{self, ConnectionClass};

/// The limits in force when a connection arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_uid: usize,
    pub reserved: usize,
}

impl Limits {
    pub fn from_config(daemon: &DaemonConfig) -> Limits {
        Limits {
            total: daemon.max_connections,
            per_uid: daemon.max_connections_per_uid,
            reserved: daemon.reserved(),
        }
    }

    /// The slots ordinary uids share.
    fn ordinary(&self) -> usize {
        self.total.saturating_sub(self.reserved)
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full { total: usize },
    /// The slots ordinary uids share are taken (the rest are reserved).
    OrdinaryFull { ordinary: usize },
    /// This uid holds its maximum.
    UidFull { per_uid: usize },
}

impl Refusal {
    /// The `busy` answer the client reads.
    pub fn answer(&self) -> String {
        match self {
            Refusal::Full { total } => {
                format!("kauthd is serving its maximum of {total} connections; try again")
            }
            Refusal::OrdinaryFull { ordinary } => format!(
                "kauthd is serving its maximum of {ordinary} connections for ordinary users; try again"
            ),
            Refusal::UidFull { per_uid } => format!(
                "your uid already holds its maximum of {per_uid} connections to kauthd; close one and try again"
            ),
        }
    }

    /// Why, for the log line that names the caller.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Full { total } => format!("all {total} connection slots are in use"),
            Refusal::OrdinaryFull { ordinary } => format!(
                "all {ordinary} connection slots open to ordinary users are in use (the rest are reserved for root and [access] pam_callers)"
            ),
            Refusal::UidFull { per_uid } => format!(
                "it already holds {per_uid} connections ([daemon] max_connections_per_uid)"
            ),
        }
    }
}

/// One admitted connection's slot; give it back with [`Admission::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct Slot {
    uid: u32,
    ordinary: bool,
    /// Counted in `stats` while the slot is held.
    class: ConnectionClass,
}

fn class_of(caller: &Caller) -> ConnectionClass {
    match caller.role {
        Role::Root => ConnectionClass::Root,
        Role::PamCaller => ConnectionClass::PamCaller,
        Role::User => ConnectionClass::User,
    }
}

/// The slots in use.
#[derive(Debug, Default)]
pub struct Admission {
    open: usize,
    ordinary: usize,
    /// Ordinary uids' slots; a uid with none has no entry.
    per_uid: HashMap<u32, usize>,
}

impl Admission {
    pub fn new() -> Admission {
        Admission::default()
    }

    /// Takes a slot for `caller`, or says why there is none.
    pub fn admit(&mut self, caller: &Caller, limits: Limits) -> Result<Slot, Refusal> {
        if self.open >= limits.total {
            return Err(Refusal::Full {
                total: limits.total,
            });
        }
        if caller.is_privileged() {
            self.open += 1;
            stats::connection_opened(class_of(caller));
            return Ok(Slot {
                uid: caller.uid,
                ordinary: false,
                class: class_of(caller),
            });
        }
        let held = self.per_uid.get(&caller.uid).copied().unwrap_or(0);
        if held >= limits.per_uid {
            return Err(Refusal::UidFull {
                per_uid: limits.per_uid,
            });
        }
        if self.ordinary >= limits.ordinary() {
            return Err(Refusal::OrdinaryFull {
                ordinary: limits.ordinary(),
            });
        }
        self.open += 1;
        self.ordinary += 1;
        *self.per_uid.entry(caller.uid).or_insert(0) += 1;
        stats::connection_opened(class_of(caller));
        Ok(Slot {
            uid: caller.uid,
            ordinary: true,
            class: class_of(caller),
        })
    }

    /// Gives a slot back.
    pub fn release(&mut self, slot: Slot) {
        self.open = self.open.saturating_sub(1);
        stats::connection_closed(slot.class);
        if !slot.ordinary {
            return;
        }
        self.ordinary = self.ordinary.saturating_sub(1);
        if let Some(held) = self.per_uid.get_mut(&slot.uid) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.per_uid.remove(&slot.uid);
            }
        }
    }

    /// Slots in use.
    pub fn open(&self) -> usize {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, role: Role) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: 1,
            role,
            name: None,
        }
    }

    const LIMITS: Limits = Limits {
        total: 10,
        per_uid: 3,
        reserved: 4,
    };

    #[test]
    fn an_ordinary_uid_gets_its_share_and_no_more() {
        let mut admission = Admission::new();
        let bob = caller(1000, Role::User);
        for _ in 0..3 {
            admission.admit(&bob, LIMITS).unwrap();
        }
        assert_eq!(
            admission.admit(&bob, LIMITS),
            Err(Refusal::UidFull { per_uid: 3 })
        );
        // Another ordinary uid still gets one.
        admission.admit(&caller(1001, Role::User), LIMITS).unwrap();
    }

    #[test]
    fn the_reserve_is_kept_for_root_and_pam_callers() {
        let mut admission = Admission::new();
        for uid in 1000..1006 {
            admission.admit(&caller(uid, Role::User), LIMITS).unwrap();
        }
        assert_eq!(
            admission.admit(&caller(2000, Role::User), LIMITS),
            Err(Refusal::OrdinaryFull { ordinary: 6 })
        );
        for _ in 0..2 {
            admission.admit(&caller(0, Role::Root), LIMITS).unwrap();
            admission
                .admit(&caller(33, Role::PamCaller), LIMITS)
                .unwrap();
        }
        assert_eq!(
            admission.admit(&caller(0, Role::Root), LIMITS),
            Err(Refusal::Full { total: 10 })
        );
        assert_eq!(admission.open(), 10);
    }

    #[test]
    fn privileged_callers_have_no_per_uid_limit() {
        let mut admission = Admission::new();
        for _ in 0..10 {
            admission.admit(&caller(0, Role::Root), LIMITS).unwrap();
        }
        assert_eq!(admission.open(), 10);
    }

    #[test]
    fn released_slots_can_be_taken_again() {
        let mut admission = Admission::new();
        let bob = caller(1000, Role::User);
        let slots: Vec<Slot> = (0..3)
            .map(|_| admission.admit(&bob, LIMITS).unwrap())
            .collect();
        assert!(admission.admit(&bob, LIMITS).is_err());
        for slot in slots {
            admission.release(slot);
        }
        assert_eq!(admission.open(), 0);
        assert!(admission.per_uid.is_empty());
        admission.admit(&bob, LIMITS).unwrap();
    }
}
