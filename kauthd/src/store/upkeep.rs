//! Keeping the database files small: the WAL is checkpointed often enough,
//! and truncated, so a small state filesystem does not fill up.

use rusqlite::Connection;

use super::db::Db;
use super::Store;

/// Pages (4 KiB each) the WAL may grow to before SQLite copies it into
/// the database; SQLite's default of 1,000 would make a 4 MiB WAL.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 256;

/// Bytes a WAL is cut back to after a checkpoint has emptied it.
const JOURNAL_SIZE_LIMIT_BYTES: u32 = 1024 * 1024;

/// Bounds the WAL on this connection.
pub(super) fn limit_wal(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}; \
         PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES};"
    ))
}

impl Store {
    /// Copies the WAL into the database and truncates it to nothing. A
    /// failure is logged: the WAL then stays as it was and the next
    /// checkpoint tries again.
    pub fn checkpoint(&self) {
        // On a full filesystem they stay held (whoever hit that said so);
        // the checkpoint below frees the WAL's space.
        if let Err(e) = self.write_behind_now() {
            if !e.is_disk_full() {
                log::error!("could not write the failed attempts held in memory: {e}");
            }
        }
        // PostgreSQL checkpoints by itself.
        let Db::Sqlite(conn) = &self.db else {
            return;
        };
        // The result row says (busy, WAL pages, pages copied); with the
        // exclusive lock nothing else can hold the WAL.
        let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        match done {
            Ok(0) => {}
            Ok(_) => log::warn!("the WAL checkpoint could not finish; the next one will retry"),
            Err(e) => log::error!("the WAL checkpoint failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{test_store, DATABASE_FILE};

    #[test]
    fn a_checkpoint_truncates_the_wal() {
        let (dir, store) = test_store();
        let crate::store::Db::Sqlite(conn) = &store.db else {
            unreachable!()
        };
        conn.execute_batch(
            "CREATE TABLE filler (x BLOB); INSERT INTO filler VALUES (zeroblob(100000));",
        )
        .unwrap();
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        store.checkpoint();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    }
}
