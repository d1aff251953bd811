//! Per-user policy overrides (`kauthctl policy require|exempt|default`),
//! keyed by login name so that a system user needs no account for one.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreResult};

/// A per-user override of `[policy] require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    Require,
    Exempt,
}

impl Override {
    pub fn as_str(self) -> &'static str {
        match self {
            Override::Require => "require",
            Override::Exempt => "exempt",
        }
    }

    fn parse(text: &str) -> Option<Override> {
        match text {
            "require" => Some(Override::Require),
            "exempt" => Some(Override::Exempt),
            _ => None,
        }
    }
}

impl Store {
    pub fn policy_override(&self, name: &str) -> StoreResult<Option<Override>> {
        let rule: Option<String> = self
            .conn
            .prepare_cached("SELECT rule FROM policy_overrides WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?;
        Ok(rule.as_deref().and_then(Override::parse))
    }

    /// Sets (or with `None`, removes) a user's override.
    pub fn set_policy_override(&mut self, name: &str, rule: Option<Override>) -> StoreResult<()> {
        match rule {
            Some(rule) => self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO policy_overrides (name, rule) VALUES (?1, ?2)",
                )?
                .execute(params![name, rule.as_str()])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM policy_overrides WHERE name = ?1")?
                .execute(params![name])?,
        };
        Ok(())
    }

    pub fn policy_overrides(&self) -> StoreResult<Vec<(String, Override)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, rule FROM policy_overrides ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, rule) = row?;
            if let Some(rule) = Override::parse(&rule) {
                out.push((name, rule));
            }
        }
        Ok(out)
    }
}
