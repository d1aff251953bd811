//! Making text from elsewhere safe to log or to print on a terminal: every
//! control character becomes a visible escape, so a value can neither
//! start a new log line nor send a sequence to a terminal. This module is
//! the one place that decides which characters those are.

use std::borrow::Cow;

/// Longest client-supplied string (a name, a host) a log line shows; the
/// rest is cut and its length said.
pub const MAX_LOGGED_CHARS: usize = 64;

/// Characters that must not reach a log or a terminal as they are: C0
/// (newline and ESC among them), DEL, C1, and the Unicode format and bidi
/// controls that reorder or hide what a reader sees.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}'                // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero widths, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'              // byte order mark
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// `text` with every unsafe character written as `\xNN` (up to U+00FF) or
/// `\u{NNNN}`. Borrowed when nothing needed escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_inner(text, false)
}

/// Like [`escape`], but keeps `\n`: for text made of several lines on
/// purpose (a table), whose values were escaped with [`escape`] already.
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_inner(text, true)
}

fn escape_inner(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if u32::from(c) <= 0xFF {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        }
    }
    Cow::Owned(out)
}

/// A client-supplied string for a log line: cut to [`MAX_LOGGED_CHARS`]
/// characters (saying how long it was) and escaped.
pub fn for_log(text: &str) -> String {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        None => escape(text).into_owned(),
        Some((cut, _)) => format!("{}…({} bytes)", escape(&text[..cut]), text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_left_alone() {
        assert!(matches!(escape("ann@example.org pts/0"), Cow::Borrowed(_)));
        assert_eq!(escape("café ünïcode"), "café ünïcode");
    }

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("a\nb"), "a\\x0ab");
        assert_eq!(escape("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(escape("del\u{7f}"), "del\\x7f");
        assert_eq!(escape("c1\u{9b}2J"), "c1\\x9b2J");
        assert_eq!(escape("bidi\u{202e}txt"), "bidi\\u{202e}txt");
        assert_eq!(escape("iso\u{2066}"), "iso\\u{2066}");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = escape("x\r\n\u{1b}]0;title\u{7}").into_owned();
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn newlines_can_be_kept_for_tables() {
        assert_eq!(escape_keeping_lines("a\nb\u{1b}"), "a\nb\\x1b");
    }

    #[test]
    fn long_values_are_cut_for_logs() {
        let long = "é".repeat(65_000);
        let logged = for_log(&long);
        assert!(logged.starts_with(&"é".repeat(MAX_LOGGED_CHARS)));
        assert!(logged.ends_with("…(130000 bytes)"), "{logged}");
        assert_eq!(for_log("ann\n"), "ann\\x0a");
    }
}
