//! The two database backends behind one small interface: the record
//! modules write each query once, in SQLite's placeholder style (`?1`,
//! `?2`, ...), pass [`Value`]s and read [`Row`]s of owned [`Cell`]s. On
//! PostgreSQL the placeholders become `$1`, `$2`, ... and each pooled
//! connection keeps its statements prepared. Where the dialects differ the
//! switch is made here (or in `schema`), nowhere else.

use std::collections::HashMap;

use rusqlite::types::{ToSqlOutput, ValueRef};
use zeroize::Zeroizing;

use super::postgres::{PgConn, PgPool};
use super::{StoreError, StoreResult};

/// A query parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The parameters of one query: `values![a, b, c]`.
macro_rules! values {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::db::Value::from($v)),*]
    };
}
pub(crate) use values;

/// One column of a result row, owned. Blobs are wiped when dropped (a
/// legacy row may hold a plaintext secret).
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Zeroizing<Vec<u8>>),
}

/// A result row.
#[derive(Debug, Clone)]
pub struct Row(pub(super) Vec<Cell>);

impl Row {
    /// Column `index` as `T`; a damaged or unexpected value is an error,
    /// never a silent default.
    pub fn get<T: FromCell>(&self, index: usize) -> StoreResult<T> {
        let cell = self.0.get(index).unwrap_or(&Cell::Null);
        T::from_cell(cell).ok_or_else(|| {
            StoreError::BadRow(format!(
                "column {index} holds {cell:?} where a {} was expected",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A Rust value read from a [`Cell`].
pub trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromCell for i32 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).and_then(|v| i32::try_from(v).ok())
    }
}

impl FromCell for u32 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).and_then(|v| u32::try_from(v).ok())
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).map(|v| v != 0)
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Blob(v) => Some(v.to_vec()),
            _ => None,
        }
    }
}

impl FromCell for Zeroizing<Vec<u8>> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Blob(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// Runs queries: a connection, or a transaction on one.
pub trait Exec {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<usize>;
    /// Runs a query; returns all its rows.
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<Vec<Row>>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; none is an error.
    fn query_one(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::BadRow("the query returned no row".to_owned()))
    }
}

/// Which engine holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The open database.
#[derive(Debug)]
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgPool>),
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f` on a connection, outside any transaction (each statement
    /// commits on its own).
    pub fn run<T>(&self, f: impl FnOnce(&mut dyn Exec) -> StoreResult<T>) -> StoreResult<T> {
        match self {
            Db::Sqlite(conn) => f(&mut SqliteExec(conn)),
            Db::Postgres(pool) => {
                let mut conn = pool.get()?;
                let PgConn {
                    client, statements, ..
                } = &mut *conn;
                let result = f(&mut PgExec { client, statements });
                pool.note_result(&result);
                result
            }
        }
    }

    /// Runs `f` in one transaction, committed when `f` returns `Ok` and
    /// rolled back when it returns an error.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut dyn Exec) -> StoreResult<T>,
    ) -> StoreResult<T> {
        match self {
            Db::Sqlite(conn) => {
                let tx = conn.unchecked_transaction()?;
                let value = f(&mut SqliteExec(&tx))?;
                tx.commit()?;
                Ok(value)
            }
            Db::Postgres(pool) => {
                let mut conn = pool.get()?;
                let PgConn {
                    client, statements, ..
                } = &mut *conn;
                let result = (|| {
                    let mut tx = client.transaction()?;
                    let value = f(&mut PgExec {
                        client: &mut tx,
                        statements,
                    })?;
                    tx.commit()?;
                    Ok(value)
                })();
                pool.note_result(&result);
                result
            }
        }
    }

    /// Changes made through this connection so far (SQLite; the durability
    /// module's measure of "this request wrote"). PostgreSQL commits each
    /// write durably itself, so it reports none.
    pub fn total_changes(&self) -> u64 {
        match self {
            Db::Sqlite(conn) => conn.total_changes(),
            Db::Postgres(_) => 0,
        }
    }
}

/// SQLite through rusqlite, statements cached by the connection.
struct SqliteExec<'a>(&'a rusqlite::Connection);

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl Exec for SqliteExec<'_> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<usize> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))?)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    // No column is a float; a REAL here is a damaged row.
                    ValueRef::Real(v) => {
                        return Err(StoreError::BadRow(format!("column {i} holds a float {v}")))
                    }
                    ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Cell::Blob(Zeroizing::new(v.to_vec())),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }
}

/// PostgreSQL: a pooled connection or a transaction on one, with the
/// connection's prepared statements.
struct PgExec<'a, C: postgres::GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> PgExec<'_, C> {
    fn statement(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&dollar_placeholders(sql))?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

impl<C: postgres::GenericClient> Exec for PgExec<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<usize> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let n = self.client.execute(&stmt, &params)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client.query(&stmt, &params)?;
        rows.iter().map(super::postgres::row_from).collect()
    }
}

/// `?1` becomes `$1`: SQLite's numbered placeholders in PostgreSQL's
/// style. No query of the store has a `?` anywhere else.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_the_postgres_way() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c > ?12"),
            "SELECT a FROM t WHERE b = $1 AND c > $12"
        );
    }
}
