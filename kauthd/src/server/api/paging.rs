//! Pages of list answers (accounts, 2FA users, sessions, activity). A page
//! is bounded by a row count and by its encoded size, so it always fits in
//! one frame; its `next` cursor tells the client where the following page
//! starts (the client sends it back as `after`).

use std::io;

use kauth_proto::{ErrorCode, Response, MAX_FRAME};
use serde::Serialize;

use super::error;

/// The most rows one page holds.
pub const MAX_ROWS: u32 = 500;

/// What the rows of one page may take, encoded: the frame less room for the
/// envelope (the type, the field names and a `next` cursor, which is at
/// most a name or a time and a session id).
const ROW_BYTES: usize = MAX_FRAME - 2048;

/// The rows of this page: the client's `limit` (or `default`), at least
/// one and at most [`MAX_ROWS`].
pub fn page_size(limit: Option<u32>, default: u32) -> u32 {
    limit.unwrap_or(default).clamp(1, MAX_ROWS)
}

/// Keeps the first rows that fit in a frame, at most `size` of them, and
/// gives the cursor of the last one kept when any row is left out. The
/// caller fetches `size + 1` rows, so one more row says that more follow.
/// The first row is always kept, so that paging moves on.
pub fn fit<T: Serialize>(
    mut rows: Vec<T>,
    size: u32,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut used = 0usize;
    let mut kept = 0;
    for row in rows.iter().take(size) {
        // Each row after the first is preceded by a comma.
        used = used.saturating_add(encoded_len(row)).saturating_add(1);
        if kept > 0 && used > ROW_BYTES {
            break;
        }
        kept += 1;
    }
    let more = rows.len() > kept;
    rows.truncate(kept);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}

/// A cursor for lists ordered by a number and then a key: `NUMBER:KEY`.
pub fn position_cursor(number: i64, key: impl std::fmt::Display) -> String {
    format!("{number}:{key}")
}

/// The number and key of a [`position_cursor`]; a cursor kauthd did not
/// make gets `invalid` (without repeating it).
pub fn parse_position(cursor: &str) -> Result<(i64, &str), Response> {
    cursor
        .split_once(':')
        .and_then(|(number, key)| Some((number.parse().ok()?, key)))
        .ok_or_else(bad_cursor)
}

/// The refusal of an `after` that is not a `next` kauthd gave.
pub fn bad_cursor() -> Response {
    error(
        ErrorCode::Invalid,
        "`after` is not a `next` cursor kauthd gave out; list again from the first page (without `after`)",
    )
}

/// The length of a row's JSON, without building it.
fn encoded_len<T: Serialize>(row: &T) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, row) {
        Ok(()) => counter.0,
        // Cannot be encoded: let the frame writer report it.
        Err(_) => usize::MAX,
    }
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kauth_proto::UserSummary;

    fn user(name: String) -> UserSummary {
        UserSummary {
            name,
            uid: Some(4_000_000_000),
            has_password: true,
            locked: false,
            two_factor: true,
            created: 1_795_459_787,
        }
    }

    #[test]
    fn a_page_stops_at_its_size_and_points_past_its_last_row() {
        let rows: Vec<_> = (0..4).map(|n| user(format!("u{n}"))).collect();
        let (page, next) = fit(rows.clone(), 3, |u| u.name.clone());
        assert_eq!(page.len(), 3);
        assert_eq!(next.as_deref(), Some("u2"));
        let (page, next) = fit(rows[..3].to_vec(), 3, |u| u.name.clone());
        assert_eq!(page.len(), 3);
        assert_eq!(next, None, "the last page has no next");
    }

    #[test]
    fn a_page_of_the_longest_rows_fits_in_a_frame() {
        // Names of 254 bytes (the longest allowed), as many as a page holds.
        let rows: Vec<_> = (0..=MAX_ROWS).map(|n| user(format!("{n:0>254}"))).collect();
        let (page, next) = fit(rows, MAX_ROWS, |u| u.name.clone());
        assert!(page.len() < MAX_ROWS as usize, "bounded by size, not count");
        let next = next.unwrap();
        let response = Response::Users {
            users: page,
            next: Some(next),
        };
        let body = serde_json::to_vec(&response).unwrap();
        assert!(body.len() <= MAX_FRAME, "{} bytes", body.len());
        assert!(body.len() > MAX_FRAME - 4096, "the page is nearly full");
    }

    #[test]
    fn one_row_too_large_for_a_page_is_still_sent() {
        let rows = vec![user("x".repeat(MAX_FRAME)), user("y".to_owned())];
        let (page, next) = fit(rows, 10, |u| u.name.clone());
        assert_eq!(page.len(), 1);
        assert!(next.is_some());
    }

    #[test]
    fn position_cursors_round_trip_and_strangers_are_refused() {
        let cursor = position_cursor(-5, "ab:cd");
        assert_eq!(parse_position(&cursor).unwrap(), (-5, "ab:cd"));
        for bad in ["", "12", "x:1", ":"] {
            assert!(parse_position(bad).is_err(), "{bad:?}");
        }
    }
}
