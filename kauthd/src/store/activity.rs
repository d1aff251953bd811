//! The activity log: logins, enrollments, sign-outs, admin actions.

use kauth_proto::ActivityEvent;
use rusqlite::{params, Connection};

use super::{Store, StoreResult};
use crate::activity::EventKind;

/// One event to record. `detail` is for people and never holds a secret.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub user: Option<&'a str>,
    pub event: EventKind,
    pub service: Option<&'a str>,
    pub rhost: Option<&'a str>,
    pub detail: &'a str,
}

/// Stores one event.
pub(super) fn insert(conn: &Connection, event: &NewEvent<'_>, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO activity (at, user, event, service, rhost, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, event.user, event.event.as_str(), event.service, event.rhost, event.detail],
    )?;
    Ok(())
}

impl Store {
    pub fn record_activity(&mut self, event: &NewEvent<'_>, now: i64) -> StoreResult<()> {
        Ok(insert(&self.conn, event, now)?)
    }

    /// Events newest first, for one user or everyone.
    pub fn activity(
        &self,
        user: Option<&str>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<ActivityEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, user, event, service, rhost, detail FROM activity
             WHERE at >= ?1 AND (?2 IS NULL OR user = ?2)
             ORDER BY at DESC, id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![since, user, limit], |r| {
            Ok(ActivityEvent {
                at: r.get(0)?,
                user: r.get(1)?,
                event: r.get(2)?,
                service: r.get(3)?,
                rhost: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops events older than `before`.
    pub fn prune_activity(&mut self, before: i64) -> StoreResult<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM activity WHERE at < ?1", params![before])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn activity_is_listed_newest_first_and_filtered_by_user() {
        let (_dir, mut store) = test_store();
        for (t, user, event) in [
            (1, "ann", EventKind::LoginFailure),
            (2, "bob", EventKind::Enroll),
            (3, "ann", EventKind::LoginSuccess),
        ] {
            let e = NewEvent {
                user: Some(user),
                event,
                detail: "x",
                service: None,
                rhost: None,
            };
            store.record_activity(&e, t).unwrap();
        }
        let ann = store.activity(Some("ann"), 0, 100).unwrap();
        assert_eq!(
            ann.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            ["login_success", "login_failure"]
        );
        assert_eq!(store.activity(None, 2, 100).unwrap().len(), 2);
        assert_eq!(store.prune_activity(3).unwrap(), 2);
    }
}
