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
}

const COLUMNS: &str = "id, user, service, rhost, tty, pid, started, state, ended, pid_start";

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
        },
        state,
        pid_start: pid_start.and_then(|v| u64::try_from(v).ok()),
    })
}

impl Store {
    pub fn add_session(&mut self, s: &NewSession<'_>, now: i64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO sessions (id, user, service, rhost, tty, pid, pid_start, started)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                s.id,
                s.user,
                s.service,
                s.rhost,
                s.tty,
                s.pid,
                s.pid_start.and_then(|v| i64::try_from(v).ok()),
                now
            ],
        )?;
        Ok(())
    }

    pub fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1");
        Ok(self
            .conn
            .query_row(&sql, params![id], from_row)
            .optional()?)
    }

    /// Open sessions, of one user or of everyone, oldest first.
    pub fn open_sessions(&self, user: Option<&str>) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE state = ?2 AND (?1 IS NULL OR user = ?1) ORDER BY started, id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![user, SessionState::Open.as_str()], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves an open session to `closed` or `revoked`. False if it was not open.
    pub fn end_session(&mut self, id: &str, state: SessionState, now: i64) -> StoreResult<bool> {
        let n = self.conn.execute(
            "UPDATE sessions SET state = ?2, ended = ?3 WHERE id = ?1 AND state = ?4",
            params![id, state.as_str(), now, SessionState::Open.as_str()],
        )?;
        Ok(n == 1)
    }
}
