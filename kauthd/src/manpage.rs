//! Manual pages generated from the binaries' own command-line definitions
//! (clap_mangen), so the options in `man kauthd` and `man kauthctl` are
//! always the ones the binaries accept. The packaging build runs the
//! hidden `kauthd --generate-man DIR` and `kauthctl generate-man DIR`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// One paragraph of a hand-written section.
#[derive(Debug, Clone, Copy)]
pub enum Para<'a> {
    /// A plain paragraph.
    Text(&'a str),
    /// A tagged paragraph: the tag in bold, then its text indented.
    Item(&'a str, &'a str),
    /// An example: what it does, then its command lines as they are
    /// (indented, not filled).
    Example(&'a str, &'a str),
}

/// A section added after the generated ones (FILES, SIGNALS, SEE ALSO…).
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub heading: &'a str,
    pub paras: &'a [Para<'a>],
}

/// Writes `cmd`'s page for manual `section` into `dir` (as `NAME.SECTION`),
/// with `extra` sections before VERSION. Returns the file written.
pub fn write_page(
    cmd: clap::Command,
    section: &str,
    extra: &[Section<'_>],
    dir: &Path,
) -> io::Result<PathBuf> {
    let man = Man::new(cmd.clone())
        .section(section)
        .manual(if section == "8" {
            "System Administration"
        } else {
            "User Commands"
        })
        .source(format!("kauthd {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut w = BufWriter::new(File::create(&path)?);
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut w)?;
    }
    for s in extra {
        let mut roff = Roff::default();
        roff.control("SH", [s.heading]);
        for para in s.paras {
            match para {
                Para::Text(text) => {
                    roff.control("PP", []);
                    roff.text([roman(*text)]);
                }
                Para::Item(tag, text) => {
                    roff.control("TP", []);
                    roff.text([bold(*tag)]);
                    roff.text([roman(*text)]);
                }
                Para::Example(what, lines) => {
                    roff.control("PP", []);
                    roff.text([roman(*what)]);
                    roff.control("RS", ["4"]);
                    roff.control("nf", []);
                    for line in lines.lines() {
                        roff.text([roman(line)]);
                    }
                    roff.control("fi", []);
                    roff.control("RE", []);
                }
            }
        }
        roff.to_writer(&mut w)?;
    }
    // (clap_mangen's version section needs a version: subcommands have none.)
    if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
        man.render_version_section(&mut w)?;
    }
    w.flush()?;
    Ok(path)
}

/// Writes a page for every visible subcommand of `cmd`, recursively
/// (`kauthctl-2fa-enroll.1` …), in manual `section`. Returns the files.
pub fn write_subcommand_pages(
    cmd: &clap::Command,
    section: &str,
    dir: &Path,
) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    collect(&cmd, section, dir, &mut written)?;
    Ok(written)
}

fn collect(
    cmd: &clap::Command,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let see_also = [Section {
            heading: "SEE ALSO",
            paras: &[Para::Text("kauthctl(1), kauthd(8), pam_kpanel(8)")],
        }];
        written.push(write_page(sub.clone(), section, &see_also, dir)?);
        collect(sub, section, dir, written)?;
    }
    Ok(())
}

/// Makes `dir` (and its parents) for the pages.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}
