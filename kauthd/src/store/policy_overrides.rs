//! Per-user policy overrides (`kauthctl policy require|exempt|default`),
//! keyed by login name so that a system user needs no account for one.

use super::db::values;

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
        let row = self.db.run(|c| {
            c.query_opt(
                "SELECT rule FROM policy_overrides WHERE name = ?1",
                values![name],
            )
        })?;
        let rule: Option<String> = row.map(|r| r.get(0)).transpose()?;
        Ok(rule.as_deref().and_then(Override::parse))
    }

    pub fn set_policy_override(&mut self, name: &str, rule: Option<Override>) -> StoreResult<()> {
        self.db.run(|c| match rule {
            Some(rule) => c.execute(
                "INSERT INTO policy_overrides (name, rule) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET rule = excluded.rule",
                values![name, rule.as_str()],
            ),
            None => c.execute(
                "DELETE FROM policy_overrides WHERE name = ?1",
                values![name],
            ),
        })?;
        Ok(())
    }

    pub fn policy_overrides(&self) -> StoreResult<Vec<(String, Override)>> {
        let rows = self
            .db
            .run(|c| c.query("SELECT name, rule FROM policy_overrides ORDER BY name", &[]))?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row.get(0)?;
            let rule: String = row.get(1)?;
            if let Some(rule) = Override::parse(&rule) {
                out.push((name, rule));
            }
        }
        Ok(out)
    }
}
