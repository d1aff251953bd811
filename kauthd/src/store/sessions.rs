//! Recorded PAM sessions.

use kauth_proto::SessionInfo;
use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreResult};
use crate::sessions::SessionState;

/// A session as stored, with what is needed to recognise its process.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub info: SessionInfo,
    /// `info.state`, typed.
    pub state: SessionState,
    pub pid_start: Option<u64>,
}

/// What `SessionOpen` records.
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

/// Where a session sits in the oldest-first order: a page cursor.
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
    "id, user, service, rhost, tty, pid, started, state, ended, pid_start, client, last_active";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let pid_start: Option<i64> = r.get(9)?;
    let name: String = r.get(7)?;
    // A state kauthd never writes is a damaged row.
    let state = SessionState::from_name(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            7,
            rusqlite::types::Type::Text,
            format!("unknown session state {name:?}").into(),
        )
    })?;
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
        },
        state,
        pid_start: pid_start.and_then(|v| u64::try_from(v).ok()),
    })
}

impl Store {
    pub fn add_session(&mut self, s: &NewSession<'_>, now: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (id, user, service, rhost, tty, pid, pid_start, started, client)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                s.id,
                s.user,
                s.service,
                s.rhost,
                s.tty,
                s.pid,
                s.pid_start.and_then(|v| i64::try_from(v).ok()),
                now,
                s.client
            ])?;
        Ok(())
    }

    /// Notes that an open session was active at `now`.
    pub fn touch_session(&mut self, id: &str, now: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE sessions SET last_active = ?2 WHERE id = ?1 AND state = ?3")?
            .execute(params![id, now, SessionState::Open.as_str()])?;
        Ok(())
    }

    pub fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id], from_row)
            .optional()?)
    }

    /// Open sessions, of one user or of everyone, oldest first.
    pub fn open_sessions(&self, user: Option<&str>) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE state = ?2 AND (?1 IS NULL OR user = ?1) ORDER BY started, id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user, SessionState::Open.as_str()], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One page of open sessions, of one user or of everyone, oldest
    /// first: at most `limit` of those after `from` (the last session of
    /// the previous page), over the `(state, started, id)` index.
    pub fn open_sessions_page(
        &self,
        user: Option<&str>,
        from: Option<&SessionPosition>,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>> {
        let (started, id) = from.map_or((i64::MIN, ""), |p| (p.started, p.id.as_str()));
        let who = if user.is_some() { "AND user = ?5" } else { "" };
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE state = ?1 {who} AND (started, id) > (?2, ?3)
             ORDER BY started, id LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let open = SessionState::Open.as_str();
        let rows = match user {
            Some(user) => stmt.query_map(params![open, started, id, limit, user], from_row)?,
            None => stmt.query_map(params![open, started, id, limit], from_row)?,
        };
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` open sessions whose id starts with `prefix` (lower
    /// case hex digits), by id: a range of the id index, as every id that
    /// starts with the prefix sorts before the prefix followed by `g`.
    pub fn open_sessions_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE id >= ?1 AND id < ?1 || 'g' AND state = ?2
             ORDER BY id LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![prefix, SessionState::Open.as_str(), limit],
            from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves an open session to `closed` or `revoked`. False if it was not open.
    pub fn end_session(&mut self, id: &str, state: SessionState, now: i64) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE sessions SET state = ?2, ended = ?3 WHERE id = ?1 AND state = ?4",
            )?
            .execute(params![
                id,
                state.as_str(),
                now,
                SessionState::Open.as_str()
            ])?;
        Ok(n == 1)
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
}
