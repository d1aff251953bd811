//! Test doubles: a scripted [`PamIo`], module arguments, and (from
//! `kauth_proto::testing`) the fake kauthd.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};

pub use kauth_proto::testing::FakeDaemon;
use pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::pam_io::{Item, Level, PamIo, SecretBytes, Style};

/// What the fake application answers to the next prompt.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// The conversation succeeds but gives no answer (NULL response).
    Null,
    /// The conversation function fails.
    Fail,
}

/// A scripted PAM handle.
#[derive(Debug, Default)]
pub struct FakePam {
    pub user: Option<Vec<u8>>,
    pub items: HashMap<&'static str, String>,
    pub authtok: Option<Vec<u8>>,
    pub replies: VecDeque<Reply>,
    /// Everything shown or asked, in order.
    pub shown: Vec<(Style, String)>,
    pub env: HashMap<String, String>,
    /// Fail the conversation for info and error texts too.
    pub fail_texts: bool,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl FakePam {
    pub fn new(user: &str) -> Self {
        let mut items = HashMap::new();
        items.insert("service", "sshd".to_owned());
        items.insert("rhost", "192.0.2.7".to_owned());
        FakePam {
            user: Some(user.as_bytes().to_vec()),
            items,
            ..FakePam::default()
        }
    }

    pub fn reply(mut self, reply: Reply) -> Self {
        self.replies.push_back(reply);
        self
    }

    pub fn answer(self, text: &str) -> Self {
        self.reply(Reply::Text(text.to_owned()))
    }

    pub fn prompts(&self) -> Vec<String> {
        self.shown
            .iter()
            .filter(|(s, _)| s.is_prompt())
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub fn logged(&self, level: Level) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(l, t)| format!("{l:?}: {t}\n"))
            .collect()
    }
}

impl PamIo for FakePam {
    fn user(&mut self) -> Result<Vec<u8>, PamResultCode> {
        self.user.clone().ok_or(PamResultCode::PAM_USER_UNKNOWN)
    }

    fn item(&self, item: Item) -> Option<String> {
        let key = match item {
            Item::Service => "service",
            Item::Rhost => "rhost",
            Item::Tty => "tty",
            Item::Ruser => "ruser",
        };
        self.items.get(key).cloned()
    }

    fn authtok(&self) -> Option<SecretBytes> {
        self.authtok.clone().map(Zeroizing::new)
    }

    fn converse(&mut self, style: Style, text: &str) -> Result<Option<SecretBytes>, PamResultCode> {
        self.shown.push((style, text.to_owned()));
        if !style.is_prompt() {
            if self.fail_texts {
                return Err(PamResultCode::PAM_CONV_ERR);
            }
            return Ok(None);
        }
        match self.replies.pop_front() {
            Some(Reply::Text(t)) => Ok(Some(Zeroizing::new(t.into_bytes()))),
            Some(Reply::Null) => Ok(None),
            Some(Reply::Fail) | None => Err(PamResultCode::PAM_CONV_ERR),
        }
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), PamResultCode> {
        self.env.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    fn getenv(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn log(&self, level: Level, text: &str) {
        self.logs.borrow_mut().push((level, text.to_owned()));
    }
}

/// Module arguments as the hooks receive them.
pub struct Args(Vec<CString>);

impl Args {
    pub fn new(args: &[&str]) -> Self {
        Args(args.iter().map(|a| CString::new(*a).unwrap()).collect())
    }

    pub fn for_socket(daemon_socket: &std::path::Path, extra: &[&str]) -> Self {
        let mut all = vec![format!("socket={}", daemon_socket.display())];
        all.extend(extra.iter().map(|s| s.to_string()));
        Args(all.into_iter().map(|a| CString::new(a).unwrap()).collect())
    }

    pub fn as_refs(&self) -> Vec<&CStr> {
        self.0.iter().map(|c| c.as_c_str()).collect()
    }
}
