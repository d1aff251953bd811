//! Reading PAM files the way libpam reads them: lines, controls,
//! `include`, `substack` and Debian's `@include`, into one stack per
//! module type.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub(super) const MODULE: &str = "pam_kpanel.so";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Auth,
    Account,
    Session,
    Password,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        match word.to_ascii_lowercase().as_str() {
            "auth" => Some(Kind::Auth),
            "account" => Some(Kind::Account),
            "session" => Some(Kind::Session),
            "password" => Some(Kind::Password),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Account => "account",
            Kind::Session => "session",
            Kind::Password => "password",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(usize),
}

/// What a line does for each module result: `value=action` pairs and a
/// default (libpam's default for values not named is `bad`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    pairs: Vec<(String, Action)>,
    default: Action,
}

impl Actions {
    pub(super) fn keyword(word: &str) -> Option<Actions> {
        let pairs = |success: Action| {
            vec![
                ("success".to_owned(), success),
                ("new_authtok_reqd".to_owned(), success),
                ("ignore".to_owned(), Action::Ignore),
            ]
        };
        let (pairs, default) = match word.to_ascii_lowercase().as_str() {
            "required" => (pairs(Action::Ok), Action::Bad),
            "requisite" => (pairs(Action::Ok), Action::Die),
            "sufficient" => (pairs(Action::Done), Action::Ignore),
            "optional" => (pairs(Action::Ok), Action::Ignore),
            _ => return None,
        };
        Some(Actions { pairs, default })
    }

    fn bracket(inner: &str) -> Result<Actions, String> {
        let mut pairs = Vec::new();
        let mut default = None;
        for item in inner.split_whitespace() {
            let (value, action) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not value=action"))?;
            let action = match action.to_ascii_lowercase().as_str() {
                "ignore" => Action::Ignore,
                "ok" => Action::Ok,
                "done" => Action::Done,
                "bad" => Action::Bad,
                "die" => Action::Die,
                "reset" => Action::Reset,
                n => Action::Jump(
                    n.parse()
                        .map_err(|_| format!("`{action}` is not an action"))?,
                ),
            };
            let value = value.to_ascii_lowercase();
            if value == "default" {
                default = Some(action);
            } else {
                pairs.push((value, action));
            }
        }
        Ok(Actions {
            pairs,
            default: default.unwrap_or(Action::Bad),
        })
    }

    pub(super) fn for_result(&self, result: &str) -> Action {
        self.pairs
            .iter()
            .find(|(value, _)| value == result)
            .map_or(self.default, |(_, action)| *action)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    Actions(Actions),
    Include(String),
    Substack(String),
}

/// One module line, where it came from, and what it does.
#[derive(Debug, Clone)]
pub struct ModuleLine {
    pub file: PathBuf,
    pub number: usize,
    pub text: String,
    pub kind: Kind,
    pub actions: Actions,
    pub control_text: String,
    pub module: String,
    pub args: Vec<String>,
}

impl ModuleLine {
    pub(super) fn is_kpanel(&self) -> bool {
        // `libpam_kpanel.so` is the name cargo builds it under.
        let name = module_name(&self.module);
        name == MODULE || name == "libpam_kpanel.so"
    }

    pub(super) fn name(&self) -> &str {
        module_name(&self.module)
    }
}

fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Debug, Clone)]
enum RawLine {
    /// Debian's `@include FILE`: every type's lines of FILE.
    IncludeAll { target: String },
    Line {
        number: usize,
        text: String,
        kind: Kind,
        control: Control,
        control_text: String,
        module: String,
        args: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub(super) enum Entry {
    Module { id: usize, line: Rc<ModuleLine> },
    Substack(Vec<Entry>),
}

/// Splits a PAM line into words, keeping `[ … ]` groups whole.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| "a `[` is never closed".to_owned())?;
            out.push(format!("[{}]", &after[..end]));
            rest = after[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// Parses one PAM file. Lines libpam could not use are returned as errors
/// with their line numbers.
fn parse_file(text: &str) -> (Vec<RawLine>, Vec<(usize, String)>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut pending = String::new();
    let mut first_number = 0;
    for (index, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            first_number = index + 1;
        }
        if let Some(cont) = raw.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let full = std::mem::take(&mut pending);
        let text = full.split('#').next().unwrap_or("").trim().to_owned();
        if text.is_empty() {
            continue;
        }
        match parse_line(&text, first_number) {
            Ok(line) => lines.push(line),
            Err(why) => errors.push((first_number, why)),
        }
    }
    (lines, errors)
}

fn parse_line(text: &str, number: usize) -> Result<RawLine, String> {
    let w = words(text)?;
    let first = w.first().map(String::as_str).unwrap_or("");
    if first == "@include" {
        let target = w
            .get(1)
            .ok_or_else(|| "@include names no file".to_owned())?;
        return Ok(RawLine::IncludeAll {
            target: target.clone(),
        });
    }
    let kind_word = first.strip_prefix('-').unwrap_or(first);
    let kind = Kind::parse(kind_word).ok_or_else(|| format!("`{first}` is not a module type"))?;
    let control_text = w
        .get(1)
        .ok_or_else(|| "the line has no control field".to_owned())?
        .clone();
    let module = w
        .get(2)
        .ok_or_else(|| "the line names no module".to_owned())?
        .clone();
    let control = if let Some(inner) = control_text
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
    {
        Control::Actions(Actions::bracket(inner)?)
    } else {
        match control_text.to_ascii_lowercase().as_str() {
            "include" => Control::Include(module.clone()),
            "substack" => Control::Substack(module.clone()),
            word => Control::Actions(
                Actions::keyword(word)
                    .ok_or_else(|| format!("`{control_text}` is not a control"))?,
            ),
        }
    };
    Ok(RawLine::Line {
        number,
        text: text.to_owned(),
        kind,
        control,
        control_text,
        module,
        args: w.get(3..).map(<[String]>::to_vec).unwrap_or_default(),
    })
}

/// Reads files once and builds stacks, numbering module lines.
pub(super) struct Loader<'a> {
    dir: &'a Path,
    files: HashMap<PathBuf, Result<Rc<Vec<RawLine>>, String>>,
    /// Lines or files libpam could not use, per file: (line, why).
    pub(super) errors: HashMap<PathBuf, BTreeSet<(usize, String)>>,
    /// The files read since the last `visited.clear()`.
    pub(super) visited: BTreeSet<PathBuf>,
    next_id: usize,
}

const MAX_DEPTH: usize = 8;

impl<'a> Loader<'a> {
    pub(super) fn new(dir: &'a Path) -> Loader<'a> {
        Loader {
            dir,
            files: HashMap::new(),
            errors: HashMap::new(),
            visited: BTreeSet::new(),
            next_id: 0,
        }
    }

    fn resolve(&self, name: &str) -> PathBuf {
        if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            self.dir.join(name)
        }
    }

    fn error(&mut self, path: &Path, line: usize, why: String) {
        self.errors
            .entry(path.to_owned())
            .or_default()
            .insert((line, why));
    }

    fn file(&mut self, path: &Path) -> Option<Rc<Vec<RawLine>>> {
        self.visited.insert(path.to_owned());
        if !self.files.contains_key(path) {
            let loaded = match fs::read_to_string(path) {
                Ok(text) => {
                    let (lines, errors) = parse_file(&text);
                    for (number, why) in errors {
                        self.error(path, number, why);
                    }
                    Ok(Rc::new(lines))
                }
                Err(e) => {
                    self.error(path, 0, format!("cannot read it: {e}"));
                    Err(e.to_string())
                }
            };
            self.files.insert(path.to_owned(), loaded);
        }
        match self.files.get(path) {
            Some(Ok(lines)) => Some(Rc::clone(lines)),
            _ => None,
        }
    }

    pub(super) fn stack(&mut self, path: &Path, kind: Kind, depth: usize) -> Vec<Entry> {
        let mut entries = Vec::new();
        if depth > MAX_DEPTH {
            self.error(path, 0, "includes nest too deep (a loop?)".to_owned());
            return entries;
        }
        let Some(lines) = self.file(path) else {
            return entries;
        };
        for line in lines.iter() {
            match line {
                RawLine::IncludeAll { target } => {
                    let target = self.resolve(target);
                    entries.extend(self.stack(&target, kind, depth + 1));
                }
                RawLine::Line {
                    number,
                    text,
                    kind: line_kind,
                    control,
                    control_text,
                    module,
                    args,
                } if *line_kind == kind => match control {
                    Control::Include(target) => {
                        let target = self.resolve(target);
                        entries.extend(self.stack(&target, kind, depth + 1));
                    }
                    Control::Substack(target) => {
                        let target = self.resolve(target);
                        entries.push(Entry::Substack(self.stack(&target, kind, depth + 1)));
                    }
                    Control::Actions(actions) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        entries.push(Entry::Module {
                            id,
                            line: Rc::new(ModuleLine {
                                file: path.to_owned(),
                                number: *number,
                                text: text.clone(),
                                kind,
                                actions: actions.clone(),
                                control_text: control_text.clone(),
                                module: module.clone(),
                                args: args.clone(),
                            }),
                        });
                    }
                },
                RawLine::Line { .. } => {}
            }
        }
        entries
    }
}

pub(super) fn modules(entries: &[Entry], out: &mut Vec<Rc<ModuleLine>>) {
    for entry in entries {
        match entry {
            Entry::Module { line, .. } => out.push(Rc::clone(line)),
            Entry::Substack(inner) => modules(inner, out),
        }
    }
}

pub(super) fn module_ids(entries: &[Entry], out: &mut Vec<(usize, Rc<ModuleLine>)>) {
    for entry in entries {
        match entry {
            Entry::Module { id, line } => out.push((*id, Rc::clone(line))),
            Entry::Substack(inner) => module_ids(inner, out),
        }
    }
}

pub(super) fn contains_kpanel(entries: &[Entry]) -> bool {
    entries.iter().any(|e| match e {
        Entry::Module { line, .. } => line.is_kpanel(),
        Entry::Substack(inner) => contains_kpanel(inner),
    })
}

/// The `kind` stack of `service`, built from `files` written to a
/// temporary directory.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(super) fn stack_of(files: &[(&str, &str)], service: &str, kind: Kind) -> Vec<Entry> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let mut loader = Loader::new(dir.path());
    let entries = loader.stack(&dir.path().join(service), kind, 0);
    assert!(loader.errors.is_empty(), "{:?}", loader.errors);
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[test]
    fn parses_brackets_continuations_and_comments() {
        let (lines, errors) = parse_file(
            "# comment\n-auth [success=1 default=ignore]   pam_x.so a \\\n b # trailing\nbogus line here\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        match lines.first() {
            Some(RawLine::Line {
                number,
                args,
                control,
                ..
            }) => {
                assert_eq!(*number, 2);
                assert_eq!(args, &["a".to_owned(), "b".to_owned()]);
                match control {
                    Control::Actions(a) => {
                        assert_eq!(a.for_result("success"), Action::Jump(1));
                        assert_eq!(a.for_result("auth_err"), Action::Ignore);
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
