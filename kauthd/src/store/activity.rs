//! The activity log: logins, enrollments, sign-outs, admin actions.

use super::db::{values, Exec, Row};
use super::{Store, StoreResult};
use crate::activity::EventKind;
use kauth_proto::ActivityEvent;

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
pub(super) fn insert(
    conn: &mut dyn Exec,
    event: &NewEvent<'_>,
    host: &str,
    now: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO activity (at, \"user\", event, service, rhost, detail, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        values![
            now,
            event.user,
            event.event.as_str(),
            event.service,
            event.rhost,
            event.detail,
            host
        ],
    )?;
    Ok(())
}

/// Where an event sits in the newest-first order: a page cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityPosition {
    pub at: i64,
    pub id: i64,
}

/// An event and its place in the list; encoded, only the event.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct ActivityRow {
    #[serde(skip)]
    pub position: ActivityPosition,
    pub event: ActivityEvent,
}

impl Store {
    /// Stores an event now (after the failures held in memory, so that
    /// the events keep their order).
    pub fn record_activity(&mut self, event: &NewEvent<'_>, now: i64) -> StoreResult<()> {
        self.write_behind_now()?;
        let host = self.host_name.as_str();
        self.db.run(|c| insert(c, event, host, now))
    }

    pub fn activity(
        &self,
        user: Option<&str>,
        since: i64,
        from: Option<ActivityPosition>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>> {
        self.write_behind_now()?;
        let from = from.unwrap_or(ActivityPosition {
            at: i64::MAX,
            id: i64::MAX,
        });
        let who = if user.is_some() {
            "\"user\" = ?5 AND"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id, at, \"user\", event, service, rhost, detail, host FROM activity
             WHERE {who} at >= ?1 AND (at, id) < (?2, ?3)
             ORDER BY at DESC, id DESC LIMIT ?4"
        );
        let rows = self.db.run(|c| match user {
            Some(user) => c.query(&sql, values![since, from.at, from.id, limit, user]),
            None => c.query(&sql, values![since, from.at, from.id, limit]),
        })?;
        rows.iter().map(activity_row).collect()
    }

    pub fn prune_activity(&mut self, before: i64) -> StoreResult<usize> {
        self.db
            .run(|c| c.execute("DELETE FROM activity WHERE at < ?1", values![before]))
    }
}

fn activity_row(r: &Row) -> StoreResult<ActivityRow> {
    Ok(ActivityRow {
        position: ActivityPosition {
            at: r.get(1)?,
            id: r.get(0)?,
        },
        event: ActivityEvent {
            at: r.get(1)?,
            user: r.get(2)?,
            event: r.get(3)?,
            service: r.get(4)?,
            rhost: r.get(5)?,
            detail: r.get(6)?,
            host: r.get(7)?,
        },
    })
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
        let ann = store.activity(Some("ann"), 0, None, 100).unwrap();
        assert_eq!(
            ann.iter()
                .map(|r| r.event.event.as_str())
                .collect::<Vec<_>>(),
            ["login_success", "login_failure"]
        );
        assert_eq!(store.activity(None, 2, None, 100).unwrap().len(), 2);
        assert_eq!(store.prune_activity(3).unwrap(), 2);
    }

    #[test]
    fn pages_of_activity_follow_each_other_without_gaps_or_repeats() {
        let (_dir, mut store) = test_store();
        // Several events in the same second: the id orders them.
        for t in [1, 2, 2, 2, 3, 4, 4] {
            let e = NewEvent {
                user: Some(if t % 2 == 0 { "ann" } else { "bob" }),
                event: EventKind::Admin,
                detail: "x",
                service: None,
                rhost: None,
            };
            store.record_activity(&e, t).unwrap();
        }
        for user in [None, Some("ann")] {
            let all = store.activity(user, 0, None, 100).unwrap();
            let mut paged = Vec::new();
            let mut from = None;
            loop {
                let page = store.activity(user, 0, from, 2).unwrap();
                let Some(last) = page.last() else { break };
                from = Some(last.position);
                paged.extend(page.into_iter().map(|r| r.position));
            }
            let all: Vec<_> = all.into_iter().map(|r| r.position).collect();
            assert_eq!(paged, all);
            assert_eq!(all.len(), if user.is_some() { 5 } else { 7 });
        }
    }
}
