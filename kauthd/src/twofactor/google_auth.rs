//! Reading `~/.google_authenticator` files so existing
//! google-authenticator-libpam users can move to kauthd without
//! re-enrolling their phones.
//!
//! The format: line 1 is the base32 secret; lines starting with `"` are
//! options (`" TOTP_AUTH`, `" STEP_SIZE 30`, `" WINDOW_SIZE 3`,
//! `" DISALLOW_REUSE 5712345 ...`, `" RATE_LIMIT 3 30 ...`, ...); every
//! other non-empty line is an 8-digit scratch code.
//!
//! Only time-based (TOTP) files are imported. A file is taken as
//! counter-based (HOTP) when it has a `HOTP_COUNTER` option or lacks
//! `TOTP_AUTH`; the google-authenticator tool always writes `TOTP_AUTH`
//! for time-based setups, so a file without it cannot be trusted to be
//! TOTP.

use std::fmt;

use kauth_proto::Secret;
use zeroize::Zeroizing;

use crate::escape;
use crate::twofactor::totp::{self, TotpError};

/// libpam's limit for WINDOW_SIZE.
const MAX_WINDOW_SIZE: u32 = 100;

/// google-authenticator writes at most 10 scratch codes; more than this
/// is not one of its files, and each code costs a hash at import.
pub const MAX_SCRATCH_CODES: usize = 100;

/// The largest file accepted. Real ones are a few hundred bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Why a google-authenticator file could not be imported. Messages name
/// lines and options but never repeat the secret or a scratch code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleAuthError {
    /// There is no secret line at all.
    Empty,
    /// The text is over [`MAX_FILE_BYTES`].
    TooLarge,
    /// Line 1 is not a usable base32 secret.
    BadSecret(TotpError),
    /// The file is set up for counter-based codes.
    CounterBased,
    /// STEP_SIZE is something other than 30 or 60.
    UnsupportedStepSize(u64),
    /// An option we rely on has a value we cannot read.
    BadOption { line: usize, name: String },
    /// A line that should be a scratch code is not 8 digits.
    BadScratchCode { line: usize },
    /// More than [`MAX_SCRATCH_CODES`] scratch codes; `line` holds the
    /// first one too many.
    TooManyScratchCodes { line: usize },
}

impl fmt::Display for GoogleAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoogleAuthError::Empty => {
                f.write_str("the google-authenticator file is empty (no secret on line 1)")
            }
            GoogleAuthError::TooLarge => write!(
                f,
                "the google-authenticator file is larger than {} KiB, so it is not one",
                MAX_FILE_BYTES / 1024
            ),
            GoogleAuthError::BadSecret(reason) => {
                write!(f, "the secret on line 1 cannot be used: {reason}")
            }
            GoogleAuthError::CounterBased => f.write_str(
                "this google-authenticator file is counter-based (HOTP), or does not say it is \
                 time-based (no TOTP_AUTH line); counter-based files cannot be imported, \
                 so re-enroll the user with time-based (TOTP) codes",
            ),
            GoogleAuthError::UnsupportedStepSize(step) => write!(
                f,
                "STEP_SIZE {step} is not supported; kauthd supports 30 or 60 second steps"
            ),
            GoogleAuthError::BadOption { line, name } => {
                write!(
                    f,
                    "line {line}: the {name} option has a value that cannot be read"
                )
            }
            GoogleAuthError::BadScratchCode { line } => {
                write!(f, "line {line} is not a valid 8-digit scratch code")
            }
            GoogleAuthError::TooManyScratchCodes { line } => write!(
                f,
                "line {line}: the file has more than {MAX_SCRATCH_CODES} scratch codes \
                 (google-authenticator writes at most 10); remove the extra ones"
            ),
        }
    }
}

impl std::error::Error for GoogleAuthError {}

/// What an imported file contributes to a kauthd enrolment.
pub struct GoogleAuthFile {
    pub secret: Zeroizing<Vec<u8>>,
    /// Seconds per code: 30 or 60.
    pub step_size: u64,
    /// google-authenticator's WINDOW_SIZE: how many codes are valid at
    /// once in total (3 = the current one and one either side). See
    /// [`GoogleAuthFile::skew_steps`].
    pub window_size: u32,
    pub disallow_reuse: bool,
    /// `(logins, seconds)`: at most that many logins per that many seconds.
    pub rate_limit: Option<(u32, u32)>,
    /// Unused 8-digit emergency codes, to be kept as recovery codes.
    pub scratch_codes: Vec<Secret>,
    /// Names of options we do not carry over (e.g. `TIME_SKEW`), so the
    /// importer can tell the admin what was dropped.
    pub ignored_options: Vec<String>,
}

impl GoogleAuthFile {
    /// The window as steps either side of now, which is how kauthd
    /// expresses it: WINDOW_SIZE 3 → 1, 17 → 8.
    pub fn skew_steps(&self) -> u32 {
        self.window_size.saturating_sub(1) / 2
    }
}

impl fmt::Debug for GoogleAuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuthFile")
            .field("secret", &"<redacted>")
            .field("step_size", &self.step_size)
            .field("window_size", &self.window_size)
            .field("disallow_reuse", &self.disallow_reuse)
            .field("rate_limit", &self.rate_limit)
            .field("scratch_codes", &self.scratch_codes.len())
            .field("ignored_options", &self.ignored_options)
            .finish()
    }
}

/// Option lines start with a double quote; the name is the first word
/// after it.
fn option_words(line: &str) -> Option<std::str::SplitWhitespace<'_>> {
    line.strip_prefix('"').map(str::split_whitespace)
}

fn parse_number<T: std::str::FromStr>(
    value: Option<&str>,
    line: usize,
    name: &str,
) -> Result<T, GoogleAuthError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| GoogleAuthError::BadOption {
            line,
            name: name.to_string(),
        })
}

/// Parses the contents of a `~/.google_authenticator` file.
pub fn parse(text: &str) -> Result<GoogleAuthFile, GoogleAuthError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(GoogleAuthError::TooLarge);
    }
    // Line numbers are 1-based, as an admin would count them in an editor.
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .collect();

    let secret_line = lines.first().map(|(_, l)| l.trim()).unwrap_or("");
    if secret_line.is_empty() {
        return Err(GoogleAuthError::Empty);
    }
    let rest = lines.get(1..).unwrap_or(&[]);

    // Decide TOTP vs HOTP before anything else: for an HOTP file that is
    // the one thing the admin needs to hear.
    let mut time_based = false;
    let mut counter_based = false;
    for (_, line) in rest {
        if let Some(mut words) = option_words(line) {
            match words.next() {
                Some("TOTP_AUTH") => time_based = true,
                Some("HOTP_COUNTER") => counter_based = true,
                _ => {}
            }
        }
    }
    if counter_based || !time_based {
        return Err(GoogleAuthError::CounterBased);
    }

    let secret = totp::decode_secret(secret_line).map_err(GoogleAuthError::BadSecret)?;

    let mut file = GoogleAuthFile {
        secret,
        step_size: 30,
        window_size: 3,
        disallow_reuse: false,
        rate_limit: None,
        scratch_codes: Vec::new(),
        ignored_options: Vec::new(),
    };

    for &(number, line) in rest {
        if let Some(mut words) = option_words(line) {
            let Some(name) = words.next() else {
                continue;
            };
            match name {
                "TOTP_AUTH" => {}
                "STEP_SIZE" => {
                    let step: u64 = parse_number(words.next(), number, name)?;
                    if step != 30 && step != 60 {
                        return Err(GoogleAuthError::UnsupportedStepSize(step));
                    }
                    file.step_size = step;
                }
                "WINDOW_SIZE" => {
                    let size: u32 = parse_number(words.next(), number, name)?;
                    if !(1..=MAX_WINDOW_SIZE).contains(&size) {
                        return Err(GoogleAuthError::BadOption {
                            line: number,
                            name: name.to_string(),
                        });
                    }
                    file.window_size = size;
                }
                // The timestamps after it are recently used codes; kauthd
                // keeps its own replay state.
                "DISALLOW_REUSE" => file.disallow_reuse = true,
                // The timestamps after the two numbers are recent logins.
                "RATE_LIMIT" => {
                    let logins: u32 = parse_number(words.next(), number, name)?;
                    let seconds: u32 = parse_number(words.next(), number, name)?;
                    if logins == 0 || seconds == 0 {
                        return Err(GoogleAuthError::BadOption {
                            line: number,
                            name: name.to_string(),
                        });
                    }
                    file.rate_limit = Some((logins, seconds));
                }
                other => {
                    // The name is shown to the admin: escape anything in it
                    // that could drive a terminal.
                    let name = escape::escape(other).into_owned();
                    if !file.ignored_options.contains(&name) {
                        file.ignored_options.push(name);
                    }
                }
            }
            continue;
        }

        let code = line.trim();
        if code.is_empty() {
            continue;
        }
        if code.len() != 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GoogleAuthError::BadScratchCode { line: number });
        }
        if file.scratch_codes.len() == MAX_SCRATCH_CODES {
            return Err(GoogleAuthError::TooManyScratchCodes { line: number });
        }
        file.scratch_codes.push(Secret::new(code.to_string()));
    }

    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twofactor::totp::TotpParams;
    use std::process::Command;

    const SECRET: &str = "JDA6UFXTD3WL3CE352WY2YOUL4";

    fn codes(file: &GoogleAuthFile) -> Vec<&str> {
        file.scratch_codes.iter().map(|c| c.expose()).collect()
    }

    #[test]
    fn typical_file_is_read() {
        let text = format!(
            "{SECRET}\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\
             \" DISALLOW_REUSE 56666666 56666667\n\" TOTP_AUTH\n80413595\n55061124\n"
        );
        let Ok(file) = parse(&text) else {
            panic!("should parse")
        };
        assert_eq!(file.secret.len(), 16);
        assert_eq!(totp::encode_secret(&file.secret), SECRET);
        assert_eq!(file.step_size, 30);
        assert_eq!(file.window_size, 17);
        assert_eq!(file.skew_steps(), 8);
        assert!(file.disallow_reuse);
        assert_eq!(file.rate_limit, Some((3, 30)));
        assert_eq!(codes(&file), ["80413595", "55061124"]);
        assert!(file.ignored_options.is_empty());
    }

    #[test]
    fn defaults_apply_when_options_are_absent() {
        let Ok(file) = parse(&format!("{SECRET}\n\" TOTP_AUTH\n")) else {
            panic!("should parse")
        };
        assert_eq!(file.step_size, 30);
        assert_eq!(file.window_size, 3);
        assert_eq!(file.skew_steps(), 1);
        assert!(!file.disallow_reuse);
        assert_eq!(file.rate_limit, None);
        assert!(file.scratch_codes.is_empty());
    }

    #[test]
    fn windows_line_endings_and_blank_lines_are_tolerated() {
        let text = format!("{SECRET}\r\n\" STEP_SIZE 60\r\n\r\n\" TOTP_AUTH\r\n12345678\r\n");
        let Ok(file) = parse(&text) else {
            panic!("should parse")
        };
        assert_eq!(file.step_size, 60);
        assert_eq!(codes(&file), ["12345678"]);
    }

    #[test]
    fn hotp_file_is_refused_with_advice_to_reenroll() {
        let with_counter = format!("{SECRET}\n\" HOTP_COUNTER 4\n12345678\n");
        let without_marker = format!("{SECRET}\n\" WINDOW_SIZE 3\n12345678\n");
        let both = format!("{SECRET}\n\" HOTP_COUNTER 1\n\" TOTP_AUTH\n");
        for text in [with_counter, without_marker, both] {
            let err = parse(&text).err();
            assert_eq!(err, Some(GoogleAuthError::CounterBased));
        }
        let message = GoogleAuthError::CounterBased.to_string();
        assert!(message.contains("HOTP") && message.contains("re-enroll"));
    }

    #[test]
    fn bad_secret_is_refused_without_echoing_it() {
        let text = "NOT*BASE32*AT*ALL!!\n\" TOTP_AUTH\n";
        let Err(err) = parse(text) else {
            panic!("should fail")
        };
        assert!(matches!(err, GoogleAuthError::BadSecret(_)));
        assert!(!err.to_string().contains("NOT*BASE32"));

        let short = "JBSWY3DP\n\" TOTP_AUTH\n";
        assert!(matches!(
            parse(short),
            Err(GoogleAuthError::BadSecret(TotpError::SecretTooShort { .. }))
        ));
        assert_eq!(parse("").err(), Some(GoogleAuthError::Empty));
        assert_eq!(
            parse("\n\" TOTP_AUTH\n").err(),
            Some(GoogleAuthError::Empty)
        );
    }

    #[test]
    fn unknown_options_are_listed_by_name() {
        let text = format!(
            "{SECRET}\n\" TOTP_AUTH\n\" TIME_SKEW -2\n\" RESETTING_TIME_SKEW 1 2 3\n\
             \" TIME_SKEW 4\n"
        );
        let Ok(file) = parse(&text) else {
            panic!("should parse")
        };
        assert_eq!(file.ignored_options, ["TIME_SKEW", "RESETTING_TIME_SKEW"]);
    }

    #[test]
    fn unsupported_step_size_is_refused() {
        let text = format!("{SECRET}\n\" STEP_SIZE 45\n\" TOTP_AUTH\n");
        let err = parse(&text).err();
        assert_eq!(err, Some(GoogleAuthError::UnsupportedStepSize(45)));
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("30 or 60"));
    }

    #[test]
    fn unreadable_option_values_name_the_line() {
        let text = format!("{SECRET}\n\" TOTP_AUTH\n\" WINDOW_SIZE lots\n");
        assert_eq!(
            parse(&text).err(),
            Some(GoogleAuthError::BadOption {
                line: 3,
                name: "WINDOW_SIZE".to_string()
            })
        );
        let text = format!("{SECRET}\n\" TOTP_AUTH\n\" RATE_LIMIT 3\n");
        assert_eq!(
            parse(&text).err(),
            Some(GoogleAuthError::BadOption {
                line: 3,
                name: "RATE_LIMIT".to_string()
            })
        );
    }

    #[test]
    fn malformed_scratch_code_names_the_line_not_the_content() {
        let text = format!("{SECRET}\n\" TOTP_AUTH\n12345678\n1234x678\n");
        let err = parse(&text).err();
        assert_eq!(err, Some(GoogleAuthError::BadScratchCode { line: 4 }));
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("line 4") && !message.contains("1234x678"));
        let text = format!("{SECRET}\n\" TOTP_AUTH\n123456789\n");
        assert_eq!(
            parse(&text).err(),
            Some(GoogleAuthError::BadScratchCode { line: 3 })
        );
    }

    #[test]
    fn more_than_100_scratch_codes_are_refused() {
        let with_codes = |n: usize| {
            let mut text = format!("{SECRET}\n\" TOTP_AUTH\n");
            for i in 0..n {
                text.push_str(&format!("{}\n", 10_000_000 + i));
            }
            text
        };
        let Ok(file) = parse(&with_codes(MAX_SCRATCH_CODES)) else {
            panic!("100 codes should parse")
        };
        assert_eq!(file.scratch_codes.len(), MAX_SCRATCH_CODES);
        let err = parse(&with_codes(MAX_SCRATCH_CODES + 1)).err();
        assert_eq!(
            err,
            Some(GoogleAuthError::TooManyScratchCodes { line: 103 })
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("more than 100 scratch codes"), "{message}");
    }

    #[test]
    fn text_over_64_kib_is_refused() {
        let mut text = format!("{SECRET}\n\" TOTP_AUTH\n");
        text.push_str(&"\n".repeat(MAX_FILE_BYTES - text.len()));
        assert!(parse(&text).is_ok());
        text.push('\n');
        assert_eq!(parse(&text).err(), Some(GoogleAuthError::TooLarge));
    }

    #[test]
    fn a_secret_over_64_bytes_is_refused() {
        // 104 base32 characters: 65 bytes.
        let text = format!("{}\n\" TOTP_AUTH\n", "JBSWY3DP".repeat(13));
        assert_eq!(
            parse(&text).err(),
            Some(GoogleAuthError::BadSecret(TotpError::SecretTooLong {
                bits: 520
            }))
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let Ok(file) = parse(&format!("{SECRET}\n\" TOTP_AUTH\n80413595\n")) else {
            panic!("should parse")
        };
        let shown = format!("{file:?}");
        assert!(!shown.contains("80413595"));
        assert!(shown.contains("<redacted>"));
    }

    fn oathtool_code(secret_b32: &str, step: u64, time: u64) -> String {
        let output = Command::new("oathtool")
            .arg("--totp")
            .arg(format!("--time-step-size={step}s"))
            .arg(format!("--now=@{time}"))
            .arg("-b")
            .arg(secret_b32)
            .output();
        match output {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().into(),
            Ok(out) => panic!("oathtool failed: {out:?}"),
            Err(e) => panic!("could not run oathtool ({e}); install Debian's oathtool"),
        }
    }

    fn run_google_authenticator(dir: &std::path::Path, extra: &[&str]) -> String {
        let path = dir.join("google_authenticator");
        let status = Command::new("google-authenticator")
            .env("HOME", dir)
            .args(["-t", "-d", "-f", "-r", "3", "-R", "30", "-w", "3"])
            .args(["-Q", "NONE", "-C", "-q"])
            .args(extra)
            .arg("-s")
            .arg(&path)
            .output();
        match status {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("google-authenticator failed: {out:?}"),
            Err(e) => panic!(
                "could not run google-authenticator ({e}); \
                 install Debian's libpam-google-authenticator to run this test"
            ),
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => panic!("google-authenticator wrote no file: {e}"),
        }
    }

    #[test]
    fn file_written_by_google_authenticator_is_imported() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory")
        };
        let text = run_google_authenticator(dir.path(), &[]);
        let file = match parse(&text) {
            Ok(file) => file,
            Err(e) => panic!("real file did not parse: {e}"),
        };
        assert_eq!(file.step_size, 30);
        assert_eq!(file.window_size, 3);
        assert!(file.disallow_reuse);
        assert_eq!(file.rate_limit, Some((3, 30)));
        assert_eq!(file.scratch_codes.len(), 5);
        assert!(
            file.ignored_options.is_empty(),
            "{:?}",
            file.ignored_options
        );

        let secret_line = text.lines().next().unwrap_or_default();
        let time = 1_700_000_000;
        let ours = totp::code_at(&file.secret, &TotpParams::default(), time);
        assert_eq!(ours, oathtool_code(secret_line, 30, time));
    }

    #[test]
    fn sixty_second_file_from_google_authenticator_is_imported() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory")
        };
        let text = run_google_authenticator(dir.path(), &["-S", "60", "-e", "2"]);
        let file = match parse(&text) {
            Ok(file) => file,
            Err(e) => panic!("real file did not parse: {e}"),
        };
        assert_eq!(file.step_size, 60);
        assert_eq!(file.scratch_codes.len(), 2);
        let params = TotpParams {
            period: 60,
            ..TotpParams::default()
        };
        let secret_line = text.lines().next().unwrap_or_default();
        let time = 1_700_000_000;
        let ours = totp::code_at(&file.secret, &params, time);
        assert_eq!(ours, oathtool_code(secret_line, 60, time));
    }
}
