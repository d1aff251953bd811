//! Printing results: text for people, one JSON document with `--json`.

use std::process::ExitCode;

use kauth_proto::Response;
use serde_json::{json, Value};

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
            println!("{}", Value::Object(doc));
        } else if !text.is_empty() {
            println!("{text}");
        }
    }

    pub fn fail(&self, failure: Failure) -> ExitCode {
        if failure.message.is_empty() {
            return ExitCode::from(failure.exit);
        }
        if self.json {
            println!(
                "{}",
                json!({"ok": false, "error": failure.code, "message": failure.message})
            );
        } else {
            eprintln!("kauthctl: {}", failure.message);
        }
        ExitCode::from(failure.exit)
    }
}
