//! Recorded PAM sessions.

use kauth_proto::SessionInfo;

use super::db::{values, Row};
use super::{Store, StoreError, StoreResult};
use crate::sessions::SessionState;

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub info: SessionInfo,
    pub state: SessionState,
    pub pid_start: Option<u64>,
    /// Another server asked for this session to be signed out, and this
    /// one (its own) has not ended it yet.
    pub signout_requested: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub tty: Option<&'a str>,
    pub pid: i32,
    pub pid_start: Option<u64>,
    /// What the session runs in (a browser's user agent), already cleaned.
    pub client: Option<&'a str>,
}

/// Where a page of sessions starts: after this (started, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPosition {
    pub started: i64,
    pub id: String,
}

impl SessionPosition {
    pub fn of(info: &SessionInfo) -> SessionPosition {
        SessionPosition {
            started: info.started,
            id: info.id.clone(),
        }
    }
}

const COLUMNS: &str =
    "id, \"user\", service, rhost, tty, pid, started, state, ended, pid_start, client, last_active, \
     host, signout_requested";

/// A session row; `here` names a row without a host (from before the
/// fleet, so recorded by this server).
fn from_row(r: &Row, here: &str) -> StoreResult<SessionRecord> {
    let pid_start: Option<i64> = r.get(9)?;
    let name: String = r.get(7)?;
    let state = SessionState::from_name(&name)
        .ok_or_else(|| StoreError::BadRow(format!("unknown session state {name:?}")))?;
    Ok(SessionRecord {
        info: SessionInfo {
            id: r.get(0)?,
            user: r.get(1)?,
            service: r.get(2)?,
            rhost: r.get(3)?,
            tty: r.get(4)?,
            pid: r.get(5)?,
            started: r.get(6)?,
            state: state.as_str().to_owned(),
            ended: r.get(8)?,
            client: r.get(10)?,
            last_active: r.get(11)?,
            host: r
                .get::<Option<String>>(12)?
                .unwrap_or_else(|| here.to_owned()),
        },
        state,
        pid_start: pid_start.and_then(|v| u64::try_from(v).ok()),
        signout_requested: r.get(13)?,
    })
}

impl Store {
    fn sessions_from(&self, rows: &[Row]) -> StoreResult<Vec<SessionRecord>> {
        rows.iter().map(|r| from_row(r, &self.host_name)).collect()
    }

    pub fn add_session(&mut self, s: &NewSession<'_>, now: i64) -> StoreResult<()> {
        let host = self.host_name.as_str();
        self.db.run(|c| {
            c.execute(
                "INSERT INTO sessions (id, \"user\", service, rhost, tty, pid, pid_start, started,
                                       client, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                values![
                    s.id,
                    s.user,
                    s.service,
                    s.rhost,
                    s.tty,
                    s.pid,
                    s.pid_start.and_then(|v| i64::try_from(v).ok()),
                    now,
                    s.client,
                    host
                ],
            )
        })?;
        Ok(())
    }

    /// Notes that an open session was active at `now`.
    pub fn touch_session(&mut self, id: &str, now: i64) -> StoreResult<()> {
        self.db.run(|c| {
            c.execute(
                "UPDATE sessions SET last_active = ?2 WHERE id = ?1 AND state = ?3",
                values![id, now, SessionState::Open.as_str()],
            )
        })?;
        Ok(())
    }

    pub fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1");
        let row = self.db.run(|c| c.query_opt(&sql, values![id]))?;
        row.map(|r| from_row(&r, &self.host_name)).transpose()
    }

    /// The open sessions of every server (of `user`, if given).
    pub fn open_sessions(&self, user: Option<&str>) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions
             WHERE state = ?2 AND (CAST(?1 AS TEXT) IS NULL OR \"user\" = ?1)
             ORDER BY started, id"
        );
        let rows = self
            .db
            .run(|c| c.query(&sql, values![user, SessionState::Open.as_str()]))?;
        self.sessions_from(&rows)
    }

    /// The open sessions of this server (of `user`, if given): those whose
    /// processes this server can see and end. In a database of its own
    /// (SQLite) that is every session; in a shared one, those naming this
    /// server, and those without a host (from before the fleet).
    pub fn open_sessions_here(&self, user: Option<&str>) -> StoreResult<Vec<SessionRecord>> {
        if self.dialect() == super::Dialect::Sqlite {
            return self.open_sessions(user);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions
             WHERE state = ?2 AND (CAST(?1 AS TEXT) IS NULL OR \"user\" = ?1)
               AND (host = ?3 OR host IS NULL)
             ORDER BY started, id"
        );
        let open = SessionState::Open.as_str();
        let rows = self
            .db
            .run(|c| c.query(&sql, values![user, open, self.host_name.as_str()]))?;
        self.sessions_from(&rows)
    }

    pub fn open_sessions_page(
        &self,
        user: Option<&str>,
        from: Option<&SessionPosition>,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>> {
        let (started, id) = from.map_or((i64::MIN, ""), |p| (p.started, p.id.as_str()));
        let who = if user.is_some() {
            "AND \"user\" = ?5"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE state = ?1 {who} AND (started, id) > (?2, ?3)
             ORDER BY started, id LIMIT ?4"
        );
        let open = SessionState::Open.as_str();
        let rows = self.db.run(|c| match user {
            Some(user) => c.query(&sql, values![open, started, id, limit, user]),
            None => c.query(&sql, values![open, started, id, limit]),
        })?;
        self.sessions_from(&rows)
    }

    pub fn open_sessions_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE id >= ?1 AND id < ?1 || 'g' AND state = ?2
             ORDER BY id LIMIT ?3"
        );
        let open = SessionState::Open.as_str();
        let rows = self
            .db
            .run(|c| c.query(&sql, values![prefix, open, limit]))?;
        self.sessions_from(&rows)
    }

    pub fn end_session(&mut self, id: &str, state: SessionState, now: i64) -> StoreResult<bool> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE sessions SET state = ?2, ended = ?3 WHERE id = ?1 AND state = ?4",
                values![id, state.as_str(), now, SessionState::Open.as_str()],
            )
        })?;
        Ok(n == 1)
    }

    /// Asks the server that owns an open session to sign it out (it ends
    /// its own process, see `sessions::end_requested`). False if the
    /// session is not open.
    pub fn request_sign_out(&mut self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self.db.run(|c| {
            c.execute(
                "UPDATE sessions SET signout_requested = ?2
                 WHERE id = ?1 AND state = ?3 AND signout_requested IS NULL",
                values![id, now, SessionState::Open.as_str()],
            )
        })?;
        Ok(n == 1)
    }

    /// This server's open sessions that another server asked to sign out.
    pub fn sign_outs_requested_here(&self) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions
             WHERE host = ?1 AND state = ?2 AND signout_requested IS NOT NULL ORDER BY id"
        );
        let open = SessionState::Open.as_str();
        let rows = self
            .db
            .run(|c| c.query(&sql, values![self.host_name.as_str(), open]))?;
        self.sessions_from(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn pages_of_open_sessions_follow_each_other_oldest_first() {
        let (_dir, mut store) = test_store();
        for (n, started) in [3, 1, 1, 2, 1].into_iter().enumerate() {
            let id = format!("s{n}");
            let s = NewSession {
                id: &id,
                user: if n % 2 == 0 { "ann" } else { "bob" },
                service: "sshd",
                rhost: None,
                tty: None,
                pid: 1,
                pid_start: None,
                client: None,
            };
            store.add_session(&s, started).unwrap();
        }
        store.end_session("s3", SessionState::Closed, 9).unwrap();
        for (user, expected) in [
            (None, ["s1", "s2", "s4", "s0"].as_slice()),
            (Some("ann"), &["s2", "s4", "s0"]),
        ] {
            let mut ids = Vec::new();
            let mut from = None;
            loop {
                let page = store.open_sessions_page(user, from.as_ref(), 2).unwrap();
                let Some(last) = page.last() else { break };
                from = Some(SessionPosition::of(&last.info));
                ids.extend(page.into_iter().map(|r| r.info.id));
            }
            assert_eq!(ids, expected);
        }
    }

    #[test]
    fn a_session_carries_its_servers_name_and_a_sign_out_request_is_noted_once() {
        let (_dir, mut store) = test_store();
        store.set_host_name("web1");
        let s = NewSession {
            id: "s1",
            user: "ann",
            service: "sshd",
            rhost: None,
            tty: None,
            pid: 1,
            pid_start: None,
            client: None,
        };
        store.add_session(&s, 1).unwrap();
        assert_eq!(store.session("s1").unwrap().unwrap().info.host, "web1");
        assert!(store.sign_outs_requested_here().unwrap().is_empty());
        assert!(store.request_sign_out("s1", 2).unwrap());
        assert!(!store.request_sign_out("s1", 3).unwrap(), "noted once");
        let asked = store.sign_outs_requested_here().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].signout_requested, Some(2));
        // A database of its own holds only this server's sessions, whatever
        // name they were recorded under.
        store.set_host_name("renamed");
        assert_eq!(store.open_sessions_here(None).unwrap().len(), 1);
    }
}
