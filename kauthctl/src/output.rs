//! Printing results: text for people, one JSON document with `--json`.
//! Everything printed goes through [`terminal_text`] or [`json_text`], so
//! a value from kauthd (a host, a tty, a detail) cannot send a control
//! sequence to the terminal.

use std::borrow::Cow;
use std::process::ExitCode;

use kauth_proto::Response;
use kauthd::escape;
use serde_json::{json, Value};

/// One value for a table cell or a line: every control character,
/// newlines included, shown as an escape.
pub fn cell(value: &str) -> Cow<'_, str> {
    escape::escape(value)
}

/// Text for the terminal: its own line breaks kept, every other control
/// character shown as an escape.
pub fn terminal_text(text: &str) -> Cow<'_, str> {
    escape::escape_keeping_lines(text)
}

/// A JSON document on one line. serde_json escapes C0 controls; DEL, C1
/// and the bidi controls are valid raw in JSON, so they are written as
/// `\uXXXX` escapes too (the same document for a parser, nothing for a
/// terminal to act on).
pub fn json_text(value: &Value) -> String {
    let text = value.to_string();
    if !text.chars().any(escape::is_unsafe) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape::is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a command did not succeed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub exit: u8,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn unreachable(message: String) -> Failure {
        Failure {
            exit: 3,
            code: "unreachable".to_owned(),
            message,
        }
    }

    /// A usage error (exit 2), found after parsing.
    pub fn usage(message: String) -> Failure {
        Failure {
            exit: 2,
            code: "usage".to_owned(),
            message,
        }
    }

    /// Exit 1 with nothing more printed (the output already said it).
    pub fn silent() -> Failure {
        Failure {
            exit: 1,
            code: String::new(),
            message: String::new(),
        }
    }

    pub fn failed(code: &str, message: String) -> Failure {
        Failure {
            exit: 1,
            code: code.to_owned(),
            message,
        }
    }

    /// An `Error` response, or anything that was not what the command expected.
    pub fn from_response(response: Response) -> Failure {
        match response {
            Response::Error { code, message } => {
                let code = serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "error".to_owned());
                Failure::failed(&code, message)
            }
            other => Failure::failed(
                "unexpected",
                format!("kauthd answered unexpectedly: {other:?}"),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints a success: `text` for people, `fields` (plus `"ok": true`) as JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn success(&self, text: &str, fields: Value) {
        if self.json {
            let mut doc = match fields {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            doc.insert("ok".to_owned(), Value::Bool(true));
            println!("{}", json_text(&Value::Object(doc)));
        } else if !text.is_empty() {
            println!("{}", terminal_text(text));
        }
    }

    pub fn fail(&self, failure: Failure) -> ExitCode {
        if failure.message.is_empty() {
            return ExitCode::from(failure.exit);
        }
        if self.json {
            let doc = json!({"ok": false, "error": failure.code, "message": failure.message});
            println!("{}", json_text(&doc));
        } else {
            eprintln!("kauthctl: {}", terminal_text(&failure.message));
        }
        ExitCode::from(failure.exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_its_lines_but_not_escapes() {
        assert_eq!(cell("1.2.3.4\n\u{1b}[2J"), "1.2.3.4\\x0a\\x1b[2J");
        assert_eq!(terminal_text("a\nb\u{1b}[2J"), "a\nb\\x1b[2J");
    }

    #[test]
    fn json_escapes_every_control_character_and_stays_the_same_document() {
        let doc = json!({"rhost": "h\u{1b}[31m\u{9b}2J\u{7f}\u{202e}"});
        let text = json_text(&doc);
        assert!(!text.chars().any(escape::is_unsafe), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
    }
}
