//! Everything the module needs from libpam, behind one small trait, so the
//! logic runs against a scripted fake in unit tests and against the real
//! handle (`libpam.rs`) in production.

use pam::constants::PamResultCode;
use zeroize::Zeroizing;

/// A PAM item the module reads (all strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Service,
    Rhost,
    Tty,
    Ruser,
}

/// How a text is shown to the user by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A question whose answer is not echoed (passwords, codes).
    PromptEchoOff,
    /// A question whose answer is echoed.
    PromptEchoOn,
    /// An informational text (PAM_TEXT_INFO).
    Info,
    /// An error text (PAM_ERROR_MSG).
    Error,
}

impl Style {
    pub fn is_prompt(self) -> bool {
        matches!(self, Style::PromptEchoOff | Style::PromptEchoOn)
    }
}

/// A syslog priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// Bytes that are wiped when dropped: an answer or a PAM_AUTHTOK.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// The module's view of one PAM handle.
pub trait PamIo {
    /// PAM_USER as raw bytes, asking the application for it if unset.
    fn user(&mut self) -> Result<Vec<u8>, PamResultCode>;

    /// A string item, `None` when unset. Invalid UTF-8 is replaced.
    fn item(&self, item: Item) -> Option<String>;

    /// PAM_AUTHTOK, set by an earlier module; `None` when unset.
    fn authtok(&self) -> Option<SecretBytes>;

    /// Shows `text` to the user. For prompts, `Ok(None)` means the
    /// application gave no answer at all.
    fn converse(&mut self, style: Style, text: &str) -> Result<Option<SecretBytes>, PamResultCode>;

    /// Sets `name=value` in the PAM environment.
    fn putenv(&mut self, name: &str, value: &str) -> Result<(), PamResultCode>;

    /// Reads `name` from the PAM environment.
    fn getenv(&self, name: &str) -> Option<String>;

    /// Writes one line to syslog. Callers never pass a secret.
    fn log(&self, level: Level, text: &str);

    /// Logs at debug level when the `debug` option is on.
    fn debug(&self, enabled: bool, text: &str) {
        if enabled {
            self.log(Level::Debug, text);
        }
    }
}
