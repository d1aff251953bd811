//! Property-based fuzz tests of the parsers kauthd runs on text it did not
//! write: the config file, `~/.google_authenticator` files, base32
//! secrets, and the otpauth URIs built from names.
//!
//! Every property runs `KAUTH_FUZZ_CASES` cases (see `fuzz_support`);
//! `scripts/fuzz` runs them a million times each in release mode.
//!
//! They are written to stay true under the size caps being added
//! elsewhere: generated valid secrets are at most 64 bytes, files carry
//! at most 100 scratch codes, and generated configs are never empty.
//! What they found has plain regression tests in `fuzz_findings.rs`.

#[path = "../../proto/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use kauthd::config::{CallerSpec, Config};
use kauthd::twofactor::google_auth::{self, GoogleAuthError};
use kauthd::twofactor::totp::{self, Algorithm, TotpError, TotpParams, MIN_SECRET_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;

use fuzz_support::check;

/// The largest secret the properties generate as valid.
const MAX_SECRET_BYTES: usize = 64;
/// The most scratch codes a generated google-authenticator file holds.
const MAX_SCRATCH_CODES: usize = 100;

/// Any text, control characters included.
fn text(max: usize) -> BoxedStrategy<String> {
    vec(any::<char>(), 0..max)
        .prop_map(String::from_iter)
        .boxed()
}

fn secret_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES)
}

// ---- 3. Config parsing ----------------------------------------------------

/// Every key, by section. Unknown names are mixed in by the generators.
const KEYS: &[(&str, &[&str])] = &[
    (
        "daemon",
        &["socket", "state_dir", "max_connections", "idle_timeout"],
    ),
    ("access", &["pam_callers", "daemon_user"]),
    (
        "totp",
        &[
            "issuer",
            "algorithm",
            "digits",
            "period",
            "skew_steps",
            "learn_skew",
        ],
    ),
    ("recovery", &["codes"]),
    (
        "password",
        &[
            "min_length",
            "reject_common",
            "argon2_memory_kib",
            "argon2_iterations",
            "argon2_parallelism",
            "reset_token_seconds",
        ],
    ),
    (
        "ratelimit",
        &["max_failures", "window_seconds", "lock_seconds"],
    ),
    (
        "policy",
        &[
            "enabled",
            "require",
            "require_users",
            "require_groups",
            "deadline",
            "exempt_services",
        ],
    ),
    ("sessions", &["kill_services"]),
    ("activity", &["retention_days"]),
];

const UNKNOWN_NAMES: &[&str] = &["digitz", "polcy", "x", "socket_path", "enable"];

fn section_and_key() -> impl Strategy<Value = (String, String)> {
    let known = proptest::sample::select(KEYS).prop_flat_map(|(section, keys)| {
        let key = prop_oneof![
            8 => proptest::sample::select(keys).prop_map(str::to_owned),
            1 => proptest::sample::select(UNKNOWN_NAMES).prop_map(str::to_owned),
        ];
        (Just(section.to_owned()), key)
    });
    let unknown = (
        proptest::sample::select(UNKNOWN_NAMES).prop_map(str::to_owned),
        proptest::sample::select(UNKNOWN_NAMES).prop_map(str::to_owned),
    );
    prop_oneof![12 => known, 1 => unknown]
}

/// A TOML value of any type, with the edge values of each.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    use toml::Value;
    let int = prop_oneof![
        any::<i64>(),
        -2i64..130,
        Just(i64::from(u32::MAX)),
        Just(i64::from(u32::MAX) + 1),
        Just(i64::MAX),
        (0u32..63).prop_map(|shift| 1i64 << shift),
        proptest::sample::select(vec![6i64, 8, 30, 60, 604_800, 604_801]),
    ];
    let string = prop_oneof![
        text(12),
        proptest::sample::select(vec![
            "SHA1",
            "sha256",
            "Sha512",
            "md5",
            "all",
            "none",
            "listed",
            "some",
            "/run/x.sock",
            "relative/path",
            "2030-01-31",
            "2030-02-30",
            "1969-12-31",
            "",
            " ",
            "a:b",
        ])
        .prop_map(str::to_owned),
    ];
    let leaf = prop_oneof![
        int.prop_map(Value::Integer),
        string.prop_map(Value::String),
        any::<bool>().prop_map(Value::Boolean),
        any::<f64>().prop_map(Value::Float),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((proptest::sample::select(UNKNOWN_NAMES), inner), 0..3).prop_map(|fields| {
                Value::Table(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Renders `(section, key, value)` settings as a TOML file.
fn render(settings: &[(String, String, toml::Value)]) -> String {
    let mut file = toml::Table::new();
    for (section, key, value) in settings {
        let table = file
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(table) = table {
            table.insert(key.clone(), value.clone());
        }
    }
    toml::to_string(&file).unwrap_or_default()
}

/// Pieces of TOML, and of broken TOML, that the config parser may meet.
fn toml_token() -> BoxedStrategy<String> {
    let names: Vec<&str> = KEYS
        .iter()
        .flat_map(|(section, keys)| std::iter::once(*section).chain(keys.iter().copied()))
        .chain(UNKNOWN_NAMES.iter().copied())
        .collect();
    prop_oneof![
        proptest::sample::select(names).prop_map(str::to_owned),
        proptest::sample::select(vec![
            "[",
            "]",
            "[[",
            "]]",
            "=",
            " = ",
            "\n",
            "\r\n",
            ".",
            ",",
            "\"",
            "'",
            "\"\"\"",
            "#",
            "{",
            "}",
            "true",
            "false",
            "0",
            "-1",
            "1e999",
            "nan",
            "inf",
            "0x7fffffff",
            "9223372036854775808",
            "1979-05-27T07:32:00Z",
            "\\",
            "\\u0000",
            "\u{0}",
            "\t",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        text(6),
    ]
    .boxed()
}

#[test]
fn arbitrary_toml_text_never_panics_the_config_parser() {
    let input = prop_oneof![
        vec(toml_token(), 1..40).prop_map(|tokens| tokens.concat()),
        vec(any::<u8>(), 1..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    check(
        "arbitrary_toml_text_never_panics_the_config_parser",
        input,
        |text| {
            if let Err(message) = Config::parse(&text) {
                let message = message.to_string();
                prop_assert!(!message.trim().is_empty(), "an empty error message");
            }
            Ok(())
        },
    );
}

/// Whether a config error names this key: our own checks and the key
/// path name it as `section.key` (then `[n]` for an array item, or just
/// `section` for an unknown one); toml's messages name the key or the
/// section, or show the line that holds it.
fn names_key(message: &str, section: &str, key: &str) -> bool {
    let path = message
        .strip_prefix("key `")
        .and_then(|rest| rest.split('`').next());
    match path {
        Some(path) => {
            let mut names = path.split(['.', '[']);
            names.next() == Some(section) && names.next().is_none_or(|name| name == key)
        }
        None => message.contains(key) || message.contains(section),
    }
}

#[test]
fn config_errors_name_a_key_that_was_given() {
    let settings = vec((section_and_key(), toml_value()), 1..6).prop_map(|entries| {
        entries
            .into_iter()
            .map(|((section, key), value)| (section, key, value))
            .collect::<Vec<_>>()
    });
    check(
        "config_errors_name_a_key_that_was_given",
        settings,
        |settings| {
            let text = render(&settings);
            if let Err(message) = Config::parse(&text) {
                let message = message.to_string();
                // Our own checks name the key as `section.key`; toml's name
                // the key or show the line that holds it.
                let named = settings
                    .iter()
                    .any(|(section, key, _)| names_key(&message, section, key));
                prop_assert!(
                    named,
                    "the error names no key that was given: {}\nconfig:\n{}",
                    message,
                    text
                );
            }
            Ok(())
        },
    );
}

/// A valid value for every key.
fn valid_setting() -> impl Strategy<Value = (&'static str, &'static str, toml::Value)> {
    use toml::Value;
    fn int(range: std::ops::RangeInclusive<i64>) -> BoxedStrategy<Value> {
        range.prop_map(Value::Integer).boxed()
    }
    fn string(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
        s.prop_map(Value::String).boxed()
    }
    fn strings() -> BoxedStrategy<Value> {
        vec(text(10).prop_map(Value::String), 0..4)
            .prop_map(Value::Array)
            .boxed()
    }
    fn boolean() -> BoxedStrategy<Value> {
        any::<bool>().prop_map(Value::Boolean).boxed()
    }
    fn absolute() -> BoxedStrategy<Value> {
        string(text(16).prop_map(|t| format!("/{t}")))
    }
    let caller = prop_oneof![
        any::<u32>().prop_map(|uid| Value::Integer(i64::from(uid))),
        text(10).prop_map(Value::String),
    ];
    // Non-blank, no colon: the config's rule for an issuer.
    let issuer = (text(8), "[a-zA-Z0-9]", text(8))
        .prop_map(|(a, b, c)| format!("{a}{b}{c}").replace(':', ""));
    let algorithm =
        proptest::sample::select(vec!["SHA1", "sha1", "SHA256", "sha256", "SHA512", "Sha512"])
            .prop_map(str::to_owned);
    let date = (1970i64..=9999, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    let u32_max = i64::from(u32::MAX);
    // The argon2 memory must be at least 8 KiB per lane, and the default is
    // 1 lane: a memory setting comes with a lane count that fits it.
    let argon2 = (1i64..=16)
        .prop_flat_map(move |lanes| (8 * lanes..=u32_max).prop_map(move |memory| (lanes, memory)));
    prop_oneof![
        absolute().prop_map(|v| ("daemon", "socket", v)),
        absolute().prop_map(|v| ("daemon", "state_dir", v)),
        int(1..=i64::MAX).prop_map(|v| ("daemon", "max_connections", v)),
        int(1..=i64::MAX).prop_map(|v| ("daemon", "idle_timeout", v)),
        vec(caller, 0..4).prop_map(|v| ("access", "pam_callers", Value::Array(v))),
        string(text(10)).prop_map(|v| ("access", "daemon_user", v)),
        string(issuer).prop_map(|v| ("totp", "issuer", v)),
        string(algorithm).prop_map(|v| ("totp", "algorithm", v)),
        prop_oneof![Just(6), Just(8)].prop_map(|d| ("totp", "digits", Value::Integer(d))),
        prop_oneof![Just(30), Just(60)].prop_map(|p| ("totp", "period", Value::Integer(p))),
        int(0..=10).prop_map(|v| ("totp", "skew_steps", v)),
        boolean().prop_map(|v| ("totp", "learn_skew", v)),
        int(1..=100).prop_map(|v| ("recovery", "codes", v)),
        int(8..=i64::MAX).prop_map(|v| ("password", "min_length", v)),
        boolean().prop_map(|v| ("password", "reject_common", v)),
        argon2.prop_map(|(lanes, memory)| (
            "password",
            "argon2",
            Value::Array(vec![Value::Integer(lanes), Value::Integer(memory)])
        )),
        int(1..=u32_max).prop_map(|v| ("password", "argon2_iterations", v)),
        int(1..=604_800).prop_map(|v| ("password", "reset_token_seconds", v)),
        int(1..=u32_max).prop_map(|v| ("ratelimit", "max_failures", v)),
        int(1..=i64::MAX).prop_map(|v| ("ratelimit", "window_seconds", v)),
        int(0..=i64::MAX).prop_map(|v| ("ratelimit", "lock_seconds", v)),
        boolean().prop_map(|v| ("policy", "enabled", v)),
        proptest::sample::select(vec!["all", "none", "listed"]).prop_map(|r| (
            "policy",
            "require",
            Value::String(r.to_owned())
        )),
        strings().prop_map(|v| ("policy", "require_users", v)),
        strings().prop_map(|v| ("policy", "require_groups", v)),
        string(date).prop_map(|v| ("policy", "deadline", v)),
        strings().prop_map(|v| ("policy", "exempt_services", v)),
        strings().prop_map(|v| ("sessions", "kill_services", v)),
        int(1..=u32_max).prop_map(|v| ("activity", "retention_days", v)),
    ]
}

/// The generated settings as config file entries: the `argon2` pair
/// becomes its two keys.
fn entries(settings: &[(&str, &str, toml::Value)]) -> Vec<(String, String, toml::Value)> {
    let mut out = Vec::new();
    for (section, key, value) in settings {
        match (key, value) {
            (&"argon2", toml::Value::Array(pair)) => {
                for (name, v) in ["argon2_parallelism", "argon2_memory_kib"].iter().zip(pair) {
                    out.push((section.to_string(), name.to_string(), v.clone()));
                }
            }
            _ => out.push((section.to_string(), key.to_string(), value.clone())),
        }
    }
    out
}

/// What the parsed config holds for a key, as a TOML value.
fn read_back(config: &Config, section: &str, key: &str) -> Option<toml::Value> {
    use toml::Value;
    let int = |n: u64| i64::try_from(n).ok().map(Value::Integer);
    let path = |p: &std::path::Path| p.to_str().map(|s| Value::String(s.to_owned()));
    let strings = |list: &[String]| {
        Some(Value::Array(
            list.iter().cloned().map(Value::String).collect(),
        ))
    };
    let (d, t, p, r) = (
        &config.daemon,
        &config.totp,
        &config.password,
        &config.ratelimit,
    );
    match (section, key) {
        ("daemon", "socket") => path(&d.socket),
        ("daemon", "state_dir") => path(&d.state_dir),
        ("daemon", "max_connections") => int(d.max_connections as u64),
        ("daemon", "idle_timeout") => int(d.idle_timeout),
        ("access", "pam_callers") => Some(Value::Array(
            config
                .access
                .pam_callers
                .iter()
                .map(|c| match c {
                    CallerSpec::Uid(uid) => Value::Integer(i64::from(*uid)),
                    CallerSpec::Name(name) => Value::String(name.clone()),
                })
                .collect(),
        )),
        ("access", "daemon_user") => Some(Value::String(config.access.daemon_user.clone())),
        ("totp", "issuer") => t.issuer.clone().map(Value::String),
        ("totp", "algorithm") => Some(Value::String(t.algorithm.as_str().to_owned())),
        ("totp", "digits") => int(t.digits.into()),
        ("totp", "period") => int(t.period),
        ("totp", "skew_steps") => int(t.skew_steps.into()),
        ("totp", "learn_skew") => Some(Value::Boolean(t.learn_skew)),
        ("recovery", "codes") => int(config.recovery.codes as u64),
        ("password", "min_length") => int(p.min_length as u64),
        ("password", "reject_common") => Some(Value::Boolean(p.reject_common)),
        ("password", "argon2_memory_kib") => int(p.argon2_memory_kib.into()),
        ("password", "argon2_iterations") => int(p.argon2_iterations.into()),
        ("password", "argon2_parallelism") => int(p.argon2_parallelism.into()),
        ("password", "reset_token_seconds") => int(p.reset_token_seconds),
        ("ratelimit", "max_failures") => int(r.max_failures.into()),
        ("ratelimit", "window_seconds") => int(r.window_seconds),
        ("ratelimit", "lock_seconds") => int(r.lock_seconds),
        ("policy", "enabled") => Some(Value::Boolean(config.policy.enabled)),
        ("policy", "require") => Some(Value::String(config.policy.require.as_str().to_owned())),
        ("policy", "require_users") => strings(&config.policy.require_users),
        ("policy", "require_groups") => strings(&config.policy.require_groups),
        ("policy", "deadline") => config
            .policy
            .deadline
            .map(|day| Value::String(day.to_string())),
        ("policy", "exempt_services") => strings(&config.policy.exempt_services),
        ("sessions", "kill_services") => strings(&config.sessions.kill_services),
        ("activity", "retention_days") => int(config.activity.retention_days.into()),
        _ => None,
    }
}

#[test]
fn valid_generated_configs_parse_to_their_values() {
    let settings = vec(valid_setting(), 1..12).prop_map(|list| entries(&list));
    check(
        "valid_generated_configs_parse_to_their_values",
        settings,
        |settings| {
            let text = render(&settings);
            let config = match Config::parse(&text) {
                Ok(config) => config,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\nconfig:\n{text}"))),
            };
            // A key given twice keeps its last value, as `render` does.
            let mut last = std::collections::BTreeMap::new();
            for (section, key, value) in &settings {
                last.insert((section.as_str(), key.as_str()), value);
            }
            for ((section, key), value) in last {
                let got = read_back(&config, section, key);
                // The algorithm is parsed in any case and kept in upper case.
                let want = match (section, key, value) {
                    ("totp", "algorithm", toml::Value::String(name)) => {
                        toml::Value::String(name.to_ascii_uppercase())
                    }
                    _ => value.clone(),
                };
                prop_assert_eq!(got.as_ref(), Some(&want), "{}.{}", section, key);
            }
            Ok(())
        },
    );
}

// ---- 4. google-authenticator files ----------------------------------------

/// Lines of the kinds a google-authenticator file holds, valid or not.
fn ga_line() -> BoxedStrategy<String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..200).prop_map(|n| n.to_string()),
        Just("30".to_owned()),
        Just("60".to_owned()),
        text(4),
    ];
    let option = (
        proptest::sample::select(vec![
            "TOTP_AUTH",
            "HOTP_COUNTER",
            "STEP_SIZE",
            "WINDOW_SIZE",
            "DISALLOW_REUSE",
            "RATE_LIMIT",
            "TIME_SKEW",
            "",
        ])
        .prop_map(str::to_owned),
        vec(number, 0..3),
    )
        .prop_map(|(name, values)| format!("\" {name} {}", values.join(" ")));
    prop_oneof![
        3 => option,
        1 => text(8).prop_map(|t| format!("\"{t}")),
        2 => (0u64..100_000_000).prop_map(|n| format!("{n:08}")),
        1 => vec(proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=- \t".to_vec()), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => text(12),
        1 => Just(String::new()),
    ]
    .boxed()
}

#[test]
fn arbitrary_google_authenticator_files_never_panic() {
    let file = prop_oneof![
        (vec(ga_line(), 0..12), prop_oneof![Just("\n"), Just("\r\n")])
            .prop_map(|(lines, end)| lines.join(end)),
        vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    check(
        "arbitrary_google_authenticator_files_never_panic",
        file,
        |text| {
            match google_auth::parse(&text) {
                Ok(file) => {
                    prop_assert!(file.secret.len() >= MIN_SECRET_BYTES);
                    prop_assert!(file.step_size == 30 || file.step_size == 60);
                    prop_assert!((1..=100).contains(&file.window_size));
                    for code in &file.scratch_codes {
                        let code = code.expose();
                        prop_assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()));
                    }
                    // The names are shown to the admin: nothing in them may
                    // drive a terminal.
                    for name in &file.ignored_options {
                        prop_assert!(
                            !name.chars().any(char::is_control),
                            "an option name with control characters is passed on: {:?}",
                            name
                        );
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let secret_line = text.lines().next().unwrap_or("").trim();
                    prop_assert!(
                        secret_line.len() < 16 || !message.contains(secret_line),
                        "the error repeats the secret: {}",
                        message
                    );
                    for line in text.lines().map(str::trim) {
                        let code = line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit());
                        prop_assert!(!code || !message.contains(line), "{}", message);
                    }
                }
            }
            Ok(())
        },
    );
}

/// A valid file and what it must parse to.
#[derive(Debug, Clone)]
struct GaFile {
    text: String,
    secret: Vec<u8>,
    step_size: u64,
    window_size: u32,
    disallow_reuse: bool,
    rate_limit: Option<(u32, u32)>,
    scratch_codes: Vec<String>,
    ignored_options: Vec<String>,
}

const KNOWN_OPTIONS: &[&str] = &[
    "TOTP_AUTH",
    "STEP_SIZE",
    "WINDOW_SIZE",
    "DISALLOW_REUSE",
    "RATE_LIMIT",
];

fn valid_ga_file() -> impl Strategy<Value = GaFile> {
    fn timestamps() -> BoxedStrategy<String> {
        vec(any::<u32>().prop_map(|t| format!(" {t}")), 0..4)
            .prop_map(|t| t.concat())
            .boxed()
    }
    let unknown = proptest::sample::select(vec![
        "TIME_SKEW",
        "RESETTING_TIME_SKEW",
        "NO_INPUT",
        "X_FUTURE_OPTION",
    ]);
    (
        secret_bytes(),
        proptest::option::of(prop_oneof![Just(30u64), Just(60)]),
        proptest::option::of(1u32..=100),
        proptest::option::of(timestamps()),
        proptest::option::of((1u32..=u32::MAX, 1u32..=u32::MAX, timestamps())),
        vec((unknown, timestamps()), 0..3),
        vec(0u32..100_000_000, 0..=MAX_SCRATCH_CODES),
        (
            0usize..3,
            prop_oneof![Just("\n"), Just("\r\n")],
            any::<bool>(),
        ),
    )
        .prop_flat_map(
            |(secret, step, window, reuse, rate, unknown, codes, (blanks, end, last_end))| {
                let mut lines = vec!["\" TOTP_AUTH".to_owned()];
                if let Some(step) = step {
                    lines.push(format!("\" STEP_SIZE {step}"));
                }
                if let Some(window) = window {
                    lines.push(format!("\" WINDOW_SIZE {window}"));
                }
                if let Some(times) = &reuse {
                    lines.push(format!("\" DISALLOW_REUSE{times}"));
                }
                if let Some((logins, seconds, times)) = &rate {
                    lines.push(format!("\" RATE_LIMIT {logins} {seconds}{times}"));
                }
                for (name, values) in &unknown {
                    lines.push(format!("\" {name}{values}"));
                }
                lines.extend(codes.iter().map(|c| format!("{c:08}")));
                lines.extend(std::iter::repeat_n(String::new(), blanks));
                let head = GaFile {
                    text: String::new(),
                    secret,
                    step_size: step.unwrap_or(30),
                    window_size: window.unwrap_or(3),
                    disallow_reuse: reuse.is_some(),
                    rate_limit: rate.map(|(l, s, _)| (l, s)),
                    scratch_codes: Vec::new(),
                    ignored_options: Vec::new(),
                };
                (
                    Just(head),
                    Just(lines).prop_shuffle(),
                    Just((end, last_end)),
                )
            },
        )
        .prop_map(|(mut file, lines, (end, last_end))| {
            // Scratch codes and ignored names in the order of the file.
            for line in &lines {
                if let Some(option) = line.strip_prefix("\" ") {
                    let name = option.split(' ').next().unwrap_or("").to_owned();
                    if !KNOWN_OPTIONS.contains(&name.as_str())
                        && !file.ignored_options.contains(&name)
                    {
                        file.ignored_options.push(name);
                    }
                } else if !line.is_empty() {
                    file.scratch_codes.push(line.clone());
                }
            }
            let mut text = totp::encode_secret(&file.secret);
            for line in &lines {
                text.push_str(end);
                text.push_str(line);
            }
            if last_end {
                text.push_str(end);
            }
            file.text = text;
            file
        })
}

#[test]
fn valid_google_authenticator_files_round_trip() {
    check(
        "valid_google_authenticator_files_round_trip",
        valid_ga_file(),
        |want| {
            let got = match google_auth::parse(&want.text) {
                Ok(got) => got,
                Err(e) => return Err(TestCaseError::fail(format!("refused: {e}"))),
            };
            prop_assert_eq!(&got.secret[..], &want.secret[..]);
            prop_assert_eq!(got.step_size, want.step_size);
            prop_assert_eq!(got.window_size, want.window_size);
            prop_assert_eq!(got.disallow_reuse, want.disallow_reuse);
            prop_assert_eq!(got.rate_limit, want.rate_limit);
            let codes: Vec<&str> = got.scratch_codes.iter().map(|c| c.expose()).collect();
            let want_codes: Vec<&str> = want.scratch_codes.iter().map(String::as_str).collect();
            prop_assert_eq!(codes, want_codes);
            prop_assert_eq!(&got.ignored_options, &want.ignored_options);
            Ok(())
        },
    );
}

#[test]
fn counter_based_google_authenticator_files_are_refused() {
    let file = (valid_ga_file(), any::<bool>(), any::<u32>());
    check(
        "counter_based_google_authenticator_files_are_refused",
        file,
        |(file, drop_totp_auth, counter)| {
            let text = if drop_totp_auth {
                file.text.replace("\" TOTP_AUTH", "")
            } else {
                format!("{}\n\" HOTP_COUNTER {counter}\n", file.text)
            };
            prop_assert_eq!(
                google_auth::parse(&text).err(),
                Some(GoogleAuthError::CounterBased)
            );
            Ok(())
        },
    );
}

// ---- 5. base32 secrets and otpauth URIs -----------------------------------

/// The ways people write a base32 secret down.
fn spelled(encoded: &str, how: u8, seps: &[usize]) -> String {
    let mut out: String = match how % 4 {
        0 => encoded.to_owned(),
        1 => encoded.to_ascii_lowercase(),
        2 => encoded
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
        _ => {
            // `=` padding to a multiple of eight, as RFC 4648 writes it.
            let pad = (8 - encoded.len() % 8) % 8;
            format!("{encoded}{}", "=".repeat(pad))
        }
    };
    for (i, at) in seps.iter().enumerate() {
        let at = at % (out.len() + 1);
        out.insert(at, [' ', '-', '\t', '\n'][i % 4]);
    }
    out
}

#[test]
fn base32_secrets_round_trip() {
    let input = (
        vec(any::<u8>(), 0..=MAX_SECRET_BYTES),
        any::<u8>(),
        vec(any::<usize>(), 0..6),
    );
    check("base32_secrets_round_trip", input, |(secret, how, seps)| {
        let encoded = totp::encode_secret(&secret);
        prop_assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        prop_assert_eq!(encoded.len(), (secret.len() * 8).div_ceil(5));
        let grouped = totp::setup_key(&secret);
        prop_assert_eq!(grouped.replace(' ', ""), encoded.clone());
        for text in [encoded.clone(), grouped, spelled(&encoded, how, &seps)] {
            let decoded = totp::decode_secret(&text).map(|s| s.to_vec());
            let want = if secret.is_empty() {
                Err(TotpError::EmptySecret)
            } else if secret.len() < MIN_SECRET_BYTES {
                Err(TotpError::SecretTooShort {
                    bits: secret.len() * 8,
                })
            } else {
                Ok(secret.clone())
            };
            prop_assert_eq!(decoded, want, "{:?}", text);
        }
        Ok(())
    });
}

#[test]
fn arbitrary_text_never_panics_the_base32_decoder() {
    let input = prop_oneof![
        vec(
            proptest::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz234567=- \t\n01890".to_vec()
            ),
            0..120
        )
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        text(40),
    ];
    check(
        "arbitrary_text_never_panics_the_base32_decoder",
        input,
        |text| {
            match totp::decode_secret(&text) {
                Ok(secret) => {
                    prop_assert!(secret.len() >= MIN_SECRET_BYTES);
                    // Unused trailing bits are ignored, so the canonical
                    // spelling may differ; it must decode to the same bytes.
                    let again = totp::decode_secret(&totp::encode_secret(&secret));
                    prop_assert_eq!(again.map(|s| s.to_vec()), Ok(secret.to_vec()));
                }
                Err(e) => {
                    let message = e.to_string();
                    let trimmed = text.trim();
                    prop_assert!(
                        trimmed.len() < 12 || !message.contains(trimmed),
                        "the error repeats the input: {}",
                        message
                    );
                }
            }
            Ok(())
        },
    );
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 3986 unreserved characters and `%XX` escapes (upper-case hex) only.
fn is_escaped(text: &str) -> bool {
    let hex = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if !(hex(bytes.get(i + 1)) && hex(bytes.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => i += 1,
            _ => return false,
        }
    }
    true
}

/// Issuer and account names, with everything that could break a URI.
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        text(24),
        vec(
            proptest::sample::select(vec![
                "a",
                "Z",
                "0",
                " ",
                ":",
                "@",
                "?",
                "&",
                "=",
                "#",
                "%",
                "%41",
                "/",
                "+",
                "\u{0}",
                "\n",
                "é",
                "\u{202e}",
                "\u{1f600}",
                "~",
                "-",
                ".",
                "_",
            ]),
            0..12
        )
        .prop_map(|parts| parts.concat()),
    ]
    .boxed()
}

#[test]
fn otpauth_uris_are_well_formed_and_escape_every_name() {
    let params = (
        proptest::sample::select(vec![Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]),
        prop_oneof![Just(6u32), Just(8)],
        prop_oneof![Just(30u64), Just(60)],
    )
        .prop_map(|(algorithm, digits, period)| TotpParams {
            algorithm,
            digits,
            period,
        });
    let input = (name(), name(), secret_bytes(), params);
    check(
        "otpauth_uris_are_well_formed_and_escape_every_name",
        input,
        |(issuer, account, secret, params)| {
            let uri = totp::otpauth_uri(&issuer, &account, &secret, &params);
            let Some(rest) = uri.strip_prefix("otpauth://totp/") else {
                return Err(TestCaseError::fail(format!("wrong scheme: {uri}")));
            };
            let Some((label, query)) = rest.split_once('?') else {
                return Err(TestCaseError::fail(format!("no query: {uri}")));
            };
            prop_assert!(!query.contains('?') && !uri.contains('#'), "{}", uri);

            let (label_issuer, label_account) = match label.split_once(':') {
                Some((i, a)) => (Some(i), a),
                None => (None, label),
            };
            prop_assert_eq!(label_issuer.is_some(), !issuer.is_empty(), "{}", uri);
            for part in label_issuer.iter().chain([&label_account]) {
                prop_assert!(is_escaped(part), "not escaped: {:?} in {}", part, uri);
            }
            prop_assert_eq!(percent_decode(label_account), Some(account.clone()));
            if let Some(label_issuer) = label_issuer {
                prop_assert_eq!(percent_decode(label_issuer), Some(issuer.clone()));
            }

            let pairs: Vec<(&str, &str)> = query
                .split('&')
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .collect();
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
            // Parameters at their defaults are left out (a smaller QR code).
            let mut want_keys = vec!["secret"];
            if !issuer.is_empty() {
                want_keys.push("issuer");
            }
            if params.algorithm != Algorithm::Sha1 {
                want_keys.push("algorithm");
            }
            if params.digits != 6 {
                want_keys.push("digits");
            }
            if params.period != 30 {
                want_keys.push("period");
            }
            prop_assert_eq!(&keys[..], &want_keys[..], "{}", uri);
            for (key, value) in &pairs {
                prop_assert!(is_escaped(value), "{} not escaped in {}", key, uri);
                let value = percent_decode(value).unwrap_or_default();
                match *key {
                    "secret" => {
                        let decoded = totp::decode_secret(&value).map(|s| s.to_vec());
                        prop_assert_eq!(decoded, Ok(secret.clone()));
                    }
                    "issuer" => prop_assert_eq!(&value, &issuer),
                    "algorithm" => prop_assert_eq!(value, params.algorithm.as_str()),
                    "digits" => prop_assert_eq!(value, params.digits.to_string()),
                    _ => prop_assert_eq!(value, params.period.to_string()),
                }
            }
            Ok(())
        },
    );
}
