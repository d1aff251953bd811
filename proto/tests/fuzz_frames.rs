//! Property-based fuzz tests of the frame codec and of request parsing.
//!
//! Every property runs `KAUTH_FUZZ_CASES` cases (see `fuzz_support`);
//! `scripts/fuzz` runs them a million times each in release mode.

mod fuzz_support;

use std::io::{self, Read};

use kauth_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

use fuzz_support::check;

// ---- Generators -----------------------------------------------------------

/// Any text, control characters and non-BMP characters included (the
/// default `String` strategy leaves control characters out).
fn text() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..24)
        .prop_map(String::from_iter)
        .boxed()
}

fn opt_text() -> BoxedStrategy<Option<String>> {
    proptest::option::of(text()).boxed()
}

fn secret() -> BoxedStrategy<Secret> {
    text().prop_map(Secret::new).boxed()
}

fn opt_secret() -> BoxedStrategy<Option<Secret>> {
    proptest::option::of(secret()).boxed()
}

fn texts() -> BoxedStrategy<Vec<String>> {
    vec(text(), 0..4).boxed()
}

fn proof() -> impl Strategy<Value = Proof> {
    (opt_secret(), opt_secret()).prop_map(|(password, code)| Proof { password, code })
}

fn login_mode() -> impl Strategy<Value = LoginMode> {
    prop_oneof![
        Just(LoginMode::Password),
        Just(LoginMode::OtpOnly),
        Just(LoginMode::ChangePassword),
    ]
}

/// Every `Request` variant, with arbitrary field values.
fn request() -> BoxedStrategy<Request> {
    use Request as R;
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, client)| R::Hello { version, client }),
        Just(R::Status),
        (text(), opt_secret(), any::<Option<u32>>()).prop_map(|(name, password, uid)| R::UserAdd {
            name,
            password,
            uid
        }),
        text().prop_map(|name| R::UserDel { name }),
        (opt_text(), any::<Option<u32>>()).prop_map(|(after, limit)| R::UserList { after, limit }),
        text().prop_map(|name| R::UserLock { name }),
        text().prop_map(|name| R::UserUnlock { name }),
        (
            (text(), text(), opt_text(), opt_text()),
            (opt_text(), login_mode(), opt_secret(), any::<bool>()),
            any::<bool>()
        )
            .prop_map(
                |(
                    (user, service, rhost, tty),
                    (ruser, mode, authtok, enroll_at_login),
                    resumable,
                )| {
                    R::Begin {
                        user,
                        service,
                        rhost,
                        tty,
                        ruser,
                        mode,
                        authtok,
                        enroll_at_login,
                        resumable,
                    }
                }
            ),
        secret().prop_map(|text| R::Answer { text }),
        Just(R::Continue),
        (text(), text()).prop_map(|(user, service)| R::AccountCheck { user, service }),
        (text(), text(), opt_text(), opt_text(), opt_text()).prop_map(
            |(user, service, rhost, tty, client)| R::SessionOpen {
                user,
                service,
                rhost,
                tty,
                client,
            }
        ),
        text().prop_map(|id| R::SessionClose { id }),
        opt_text().prop_map(|user| R::TwoFactorStatus { user }),
        (opt_text(), proof()).prop_map(|(user, proof)| R::EnrollBegin { user, proof }),
        (opt_text(), secret()).prop_map(|(user, code)| R::EnrollConfirm { user, code }),
        (texts(), proof()).prop_map(|(users, proof)| R::TwoFactorDisable {
            users,
            proof,
            force: false
        }),
        (opt_text(), any::<bool>(), proof()).prop_map(|(user, regenerate, proof)| {
            R::RecoveryCodes {
                user,
                regenerate,
                proof,
            }
        }),
        (opt_text(), any::<Option<u32>>())
            .prop_map(|(after, limit)| R::TwoFactorList { after, limit }),
        (
            text(),
            secret(),
            opt_text(),
            any::<Option<u32>>(),
            any::<Option<u64>>()
        )
            .prop_map(|(user, secret, algorithm, digits, period)| {
                R::TwoFactorImport {
                    user,
                    secret,
                    algorithm,
                    digits,
                    period,
                }
            }),
        (text(), secret())
            .prop_map(|(user, contents)| R::ImportGoogleAuthenticator { user, contents }),
        opt_text().prop_map(|user| R::PolicyShow { user }),
        (text(), opt_text()).prop_map(|(user, rule)| R::PolicySet { user, rule }),
        (opt_text(), opt_text(), any::<Option<u32>>())
            .prop_map(|(user, after, limit)| R::Sessions { user, after, limit }),
        (opt_text(), opt_text(), any::<(bool, bool)>()).prop_map(|(id, user, (all, dry_run))| {
            R::SignOut {
                id,
                user,
                all,
                dry_run,
            }
        }),
        text().prop_map(|id| R::SessionCheck { id }),
        (
            opt_text(),
            any::<Option<i64>>(),
            any::<Option<u32>>(),
            opt_text()
        )
            .prop_map(|(user, since, limit, after)| R::Activity {
                user,
                since,
                limit,
                after
            }),
        (opt_text(), opt_secret(), secret(), any::<bool>()).prop_map(
            |(user, current, new, sign_out_others)| R::PasswordChange {
                user,
                current,
                new,
                sign_out_others,
            }
        ),
        text().prop_map(|user| R::ResetTokenCreate { user }),
        (text(), secret(), secret()).prop_map(|(user, token, new)| R::PasswordReset {
            user,
            token,
            new
        }),
        Just(R::Diagnostics),
        text().prop_map(|user| R::TwoFactorResetGuard { user }),
        Just(R::Rekey),
        (opt_text(), any::<Option<u32>>()).prop_map(|(after, limit)| R::Locks { after, limit }),
        text().prop_map(|host| R::LockClear { host }),
        (secret(), secret()).prop_map(|(continuation, text)| R::Resume { continuation, text }),
    ]
    .boxed()
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    use ErrorCode as E;
    proptest::sample::select(vec![
        E::UnsupportedVersion,
        E::BadRequest,
        E::TooLarge,
        E::Forbidden,
        E::NotFound,
        E::AlreadyExists,
        E::Invalid,
        E::Refused,
        E::Busy,
        E::Internal,
    ])
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Denied),
        Just(Outcome::Locked)
    ]
}

fn message_style() -> impl Strategy<Value = MessageStyle> {
    prop_oneof![Just(MessageStyle::Info), Just(MessageStyle::Error)]
}

fn user_summary() -> impl Strategy<Value = UserSummary> {
    (
        text(),
        any::<Option<u32>>(),
        any::<(bool, bool, bool)>(),
        any::<i64>(),
    )
        .prop_map(
            |(name, uid, (has_password, locked, two_factor), created)| UserSummary {
                name,
                uid,
                has_password,
                locked,
                two_factor,
                created,
            },
        )
}

fn two_factor_state() -> impl Strategy<Value = TwoFactorState> {
    (
        (text(), any::<bool>(), opt_text(), opt_text()),
        (any::<Option<u32>>(), any::<Option<u64>>()),
        (any::<Option<i64>>(), any::<Option<i64>>()),
        (any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (user, enabled, method, algorithm),
                (digits, period),
                (enrolled_at, last_used),
                (recovery_codes_left, pending),
            )| TwoFactorState {
                user,
                enabled,
                method,
                algorithm,
                digits,
                period,
                enrolled_at,
                last_used,
                recovery_codes_left,
                pending,
                has_password: pending && enabled,
                policy: None,
                clock_offset_seconds: last_used,
            },
        )
}

fn two_factor_entry() -> impl Strategy<Value = TwoFactorEntry> {
    (text(), any::<i64>(), any::<Option<i64>>(), any::<u64>()).prop_map(
        |(name, enrolled_at, last_used, recovery_codes_left)| TwoFactorEntry {
            name,
            enrolled_at,
            last_used,
            recovery_codes_left,
        },
    )
}

fn policy_report() -> impl Strategy<Value = PolicyReport> {
    let service = (text(), text(), text()).prop_map(|(service, decision, rule)| ServiceDecision {
        service,
        decision,
        rule,
    });
    let user = (text(), any::<(bool, bool)>(), text(), vec(service, 0..3)).prop_map(
        |(name, (enrolled, required), rule, services)| UserPolicy {
            name,
            enrolled,
            required,
            rule,
            services,
            required_from: None,
        },
    );
    (
        (any::<bool>(), text(), texts(), texts()),
        (opt_text(), texts(), vec((text(), text()), 0..3)),
        proptest::option::of(user),
    )
        .prop_map(
            |(
                (enabled, require, require_users, require_groups),
                (deadline, exempt_services, overrides),
                user,
            )| PolicyReport {
                enabled,
                require,
                require_users,
                require_groups,
                deadline,
                exempt_services,
                overrides,
                user,
            },
        )
}

fn session_info() -> impl Strategy<Value = SessionInfo> {
    (
        (text(), text(), text(), opt_text(), opt_text()),
        (any::<i32>(), any::<i64>(), text(), any::<Option<i64>>()),
        (opt_text(), any::<Option<i64>>()),
    )
        .prop_map(
            |(
                (id, user, service, rhost, tty),
                (pid, started, state, ended),
                (client, last_active),
            )| SessionInfo {
                id,
                user,
                service,
                rhost,
                tty,
                pid,
                started,
                state,
                ended,
                client,
                last_active,
            },
        )
}

fn activity_event() -> impl Strategy<Value = ActivityEvent> {
    (
        any::<i64>(),
        opt_text(),
        text(),
        opt_text(),
        opt_text(),
        text(),
    )
        .prop_map(|(at, user, event, service, rhost, detail)| ActivityEvent {
            at,
            user,
            event,
            service,
            rhost,
            detail,
        })
}

fn diagnostics_report() -> impl Strategy<Value = DiagnosticsReport> {
    (
        (text(), text(), text(), text()),
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<u64>()),
        (
            any::<u64>(),
            vec(text(), 0..3),
            any::<u64>(),
            proptest::option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |(
                (version, socket, state_dir, config_path),
                (recent_code_users, off_centre_users, median_offset_steps, period),
                (
                    guard_ahead_users,
                    guard_ahead_names,
                    guard_ahead_max_seconds,
                    server_clock_fast_seconds,
                ),
            )| DiagnosticsReport {
                version,
                socket,
                state_dir,
                config_path,
                recent_code_users,
                off_centre_users,
                median_offset_steps,
                period,
                guard_ahead_users,
                guard_ahead_names,
                guard_ahead_max_seconds,
                server_clock_fast_seconds,
            },
        )
}

/// Every `Response` variant, with arbitrary field values.
fn response() -> BoxedStrategy<Response> {
    use Response as R;
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, server)| R::Welcome { version, server }),
        Just(R::Done),
        (error_code(), text()).prop_map(|(code, message)| R::Error { code, message }),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(version, uptime_seconds, accounts)| {
            R::Status {
                version,
                uptime_seconds,
                accounts,
            }
        }),
        (vec(user_summary(), 0..3), opt_text()).prop_map(|(users, next)| R::Users { users, next }),
        (any::<bool>(), text(), opt_secret()).prop_map(|(echo, message, continuation)| R::Prompt {
            echo,
            message,
            continuation
        }),
        (message_style(), text()).prop_map(|(style, text)| R::Message { style, text }),
        outcome().prop_map(|outcome| R::Finished { outcome }),
        text().prop_map(|id| R::SessionOpened { id }),
        two_factor_state().prop_map(R::TwoFactorStatus),
        (
            (text(), secret(), secret(), secret()),
            (text(), text(), any::<u32>(), any::<u64>(), any::<i64>())
        )
            .prop_map(
                |((user, secret, setup_key, uri), (issuer, algorithm, digits, period, expires))| {
                    R::EnrollBegun {
                        user,
                        secret,
                        setup_key,
                        uri,
                        issuer,
                        algorithm,
                        digits,
                        period,
                        expires,
                        resumed: false,
                        replaced: false,
                    }
                }
            ),
        (text(), vec(secret(), 0..4)).prop_map(|(user, codes)| R::NewRecoveryCodes { user, codes }),
        (text(), any::<u64>()).prop_map(|(user, left)| R::RecoveryCodesLeft { user, left }),
        (vec(two_factor_entry(), 0..3), opt_text())
            .prop_map(|(users, next)| R::TwoFactorUsers { users, next }),
        (text(), any::<u64>(), texts()).prop_map(|(user, recovery_codes, notes)| R::Imported {
            user,
            recovery_codes,
            notes
        }),
        policy_report().prop_map(R::Policy),
        (vec(session_info(), 0..3), opt_text())
            .prop_map(|(sessions, next)| R::SessionList { sessions, next }),
        (texts(), opt_text()).prop_map(|(ids, current)| R::SignedOut { ids, current }),
        (text(), any::<bool>(), opt_text()).prop_map(|(id, valid, user)| R::SessionValidity {
            id,
            valid,
            user
        }),
        (vec(activity_event(), 0..3), opt_text())
            .prop_map(|(events, next)| R::ActivityList { events, next }),
        (text(), secret(), any::<i64>()).prop_map(|(user, token, expires)| R::ResetToken {
            user,
            token,
            expires
        }),
        diagnostics_report().prop_map(R::Diagnostics),
        (text(), any::<u64>()).prop_map(|(user, ahead_seconds)| R::GuardReset {
            user,
            ahead_seconds
        }),
        (text(), any::<u64>()).prop_map(|(key_id, secrets)| R::Rekeyed { key_id, secrets }),
        (text(), any::<bool>(), texts()).prop_map(|(user, account, hosts)| R::Unlocked {
            user,
            account,
            hosts
        }),
        (vec(lock_info(), 0..3), opt_text()).prop_map(|(locks, next)| R::LockList { locks, next }),
    ]
    .boxed()
}

/// The `"type"` names of every request, and field names that occur in
/// requests: the vocabulary of the JSON-ish generators below.
const REQUEST_TYPES: &[&str] = &[
    "hello",
    "status",
    "user_add",
    "user_del",
    "user_list",
    "user_lock",
    "user_unlock",
    "begin",
    "answer",
    "continue",
    "account_check",
    "session_open",
    "session_close",
    "two_factor_status",
    "enroll_begin",
    "enroll_confirm",
    "two_factor_disable",
    "recovery_codes",
    "two_factor_list",
    "two_factor_import",
    "import_google_authenticator",
    "policy_show",
    "policy_set",
    "sessions",
    "sign_out",
    "session_check",
    "activity",
    "password_change",
    "reset_token_create",
    "password_reset",
    "diagnostics",
    "two_factor_reset_guard",
    "rekey",
];

const FIELD_NAMES: &[&str] = &[
    "type",
    "version",
    "client",
    "name",
    "password",
    "uid",
    "user",
    "service",
    "rhost",
    "tty",
    "ruser",
    "mode",
    "authtok",
    "text",
    "id",
    "proof",
    "code",
    "users",
    "regenerate",
    "secret",
    "algorithm",
    "digits",
    "period",
    "contents",
    "rule",
    "all",
    "since",
    "limit",
    "current",
    "new",
    "sign_out_others",
    "token",
];

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Pieces of JSON, and of broken JSON, that the decoder may meet.
fn json_token() -> BoxedStrategy<String> {
    prop_oneof![
        proptest::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"",
            "null",
            "true",
            "false",
            "0",
            "-1",
            "1e999",
            "18446744073709551616",
            "-9223372036854775809",
            "4294967296",
            "0.5",
            "\\",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"\\udc00\\ud800\"",
            "\"\\uZZZZ\"",
            " ",
            "\n",
            "\u{0}",
            "\u{feff}",
            "\"password\"",
            "\"otp_only\"",
            "\"change_password\"",
        ])
        .prop_map(str::to_owned),
        proptest::sample::select(REQUEST_TYPES).prop_map(json_string),
        proptest::sample::select(FIELD_NAMES).prop_map(json_string),
        text().prop_map(|t| json_string(&t)),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u8>().prop_map(|b| char::from(b).to_string()),
    ]
    .boxed()
}

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(json_token(), 0..40).prop_map(|tokens| tokens.concat().into_bytes()),
        vec(any::<u8>(), 0..64),
    ]
}

/// Arbitrary, structurally valid JSON values.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
        proptest::sample::select(REQUEST_TYPES).prop_map(|t| Value::String(t.to_owned())),
        proptest::sample::select(vec!["password", "otp_only", "change_password"])
            .prop_map(|t| Value::String(t.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            vec((field_name(), inner), 0..6)
                .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// A JSON object shaped like a request: a known or unknown `"type"` and
/// arbitrary values under request field names.
fn request_shaped_json() -> impl Strategy<Value = serde_json::Value> {
    let kind = prop_oneof![
        4 => proptest::sample::select(REQUEST_TYPES).prop_map(serde_json::Value::from),
        1 => json_value(),
    ];
    (kind, vec((field_name(), json_value()), 0..8)).prop_map(|(kind, fields)| {
        let mut object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        object.insert("type".to_owned(), kind);
        serde_json::Value::Object(object)
    })
}

// ---- Helpers --------------------------------------------------------------

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// Encodes, decodes and encodes again: the two encodings must be the
/// same bytes (the messages have no `PartialEq`, by design, since they
/// hold secrets), the frame must be the length then the JSON, and the
/// decoder must take exactly one frame.
fn assert_round_trip<T>(message: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_vec(message).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut encoded = Vec::new();
    let written = write_frame(&mut encoded, message);
    if json.len() > MAX_FRAME {
        prop_assert!(matches!(written, Err(FrameError::TooLarge(n)) if n == json.len()));
        prop_assert!(
            encoded.is_empty(),
            "nothing is written for a frame over the limit"
        );
        return Ok(());
    }
    prop_assert!(written.is_ok(), "write_frame failed: {:?}", written.err());
    prop_assert_eq!(&encoded, &frame(&json));

    let mut input = encoded.as_slice();
    let decoded: T = match read_frame(&mut input) {
        Ok(decoded) => decoded,
        Err(e) => return Err(TestCaseError::fail(format!("read_frame failed: {e}"))),
    };
    prop_assert!(input.is_empty(), "{} bytes left unread", input.len());
    let mut again = Vec::new();
    prop_assert!(write_frame(&mut again, &decoded).is_ok());
    prop_assert_eq!(again, encoded);
    Ok(())
}

/// What `read_frame` must answer for these bytes, whatever the body.
#[derive(Debug, PartialEq)]
enum Expected {
    Closed,
    CutShort,
    TooLarge(usize),
    Body,
}

fn expected(input: &[u8]) -> Expected {
    match input.get(..4) {
        None if input.is_empty() => Expected::Closed,
        None => Expected::CutShort,
        Some(prefix) => {
            let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            if len > MAX_FRAME {
                Expected::TooLarge(len)
            } else if input.len() - 4 < len {
                Expected::CutShort
            } else {
                Expected::Body
            }
        }
    }
}

/// The error text for a bad body is a fixed category and a position:
/// nothing from the frame itself.
fn assert_says_nothing_of_the_input(why: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        why.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-'),
        "the error repeats input: {:?}",
        why
    );
    Ok(())
}

fn check_decode<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<(), TestCaseError> {
    let result = read_frame::<_, T>(&mut &input[..]);
    match (expected(input), result) {
        (Expected::Closed, Err(FrameError::Closed)) => {}
        (Expected::CutShort, Err(FrameError::Io(e))) => {
            prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof)
        }
        (Expected::TooLarge(len), Err(FrameError::TooLarge(n))) => prop_assert_eq!(n, len),
        (Expected::Body, Ok(_)) => {}
        (Expected::Body, Err(FrameError::Malformed(why))) => {
            assert_says_nothing_of_the_input(&why)?
        }
        (want, got) => {
            return Err(TestCaseError::fail(format!(
                "expected {want:?}, got {:?}",
                got.err()
            )))
        }
    }
    Ok(())
}

/// A reader that hands out at most `chunks[i]` bytes per call (0 in the
/// list means "interrupted, try again", never twice in a row) and counts
/// what it gave.
struct Trickle<'a> {
    data: &'a [u8],
    chunks: Vec<usize>,
    calls: usize,
    given: usize,
    interrupted: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self
            .chunks
            .get(self.calls % self.chunks.len().max(1))
            .copied()
            .unwrap_or(usize::MAX);
        self.calls += 1;
        if chunk == 0 && !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted = false;
        let n = chunk.max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.given += n;
        Ok(n)
    }
}

// ---- 1. The frame decoder -------------------------------------------------

#[test]
fn request_frames_round_trip() {
    check("request_frames_round_trip", request(), |r| {
        assert_round_trip(&r)
    });
}

#[test]
fn response_frames_round_trip() {
    check("response_frames_round_trip", response(), |r| {
        assert_round_trip(&r)
    });
}

#[test]
fn arbitrary_bytes_never_panic_the_decoder() {
    // Mostly short inputs with small length prefixes, so that every
    // outcome (closed, cut short, too large, a body) comes up often.
    let small_frame = (0u32..80, vec(any::<u8>(), 0..80)).prop_map(|(len, body)| {
        let mut input = len.to_be_bytes().to_vec();
        input.extend(body);
        input
    });
    let input = prop_oneof![vec(any::<u8>(), 0..96), small_frame];
    check("arbitrary_bytes_never_panic_the_decoder", input, |input| {
        check_decode::<Request>(&input)?;
        check_decode::<Response>(&input)
    });
}

#[test]
fn oversized_frames_are_refused_before_the_body_is_read() {
    let input = (
        (MAX_FRAME as u32 + 1)..=u32::MAX,
        vec(any::<u8>(), 0..64),
        vec(0usize..6, 1..4),
    );
    check(
        "oversized_frames_are_refused_before_the_body_is_read",
        input,
        |(len, body, chunks)| {
            let mut data = len.to_be_bytes().to_vec();
            data.extend(body);
            let mut reader = Trickle {
                data: &data,
                chunks,
                calls: 0,
                given: 0,
                interrupted: false,
            };
            let result = read_frame::<_, Request>(&mut reader);
            prop_assert!(
                matches!(result, Err(FrameError::TooLarge(n)) if n == len as usize),
                "{:?}",
                result.err()
            );
            prop_assert_eq!(reader.given, 4, "bytes of the body were read");
            Ok(())
        },
    );
}

#[test]
fn frames_read_in_pieces_round_trip() {
    let input = (request(), vec(0usize..9, 1..6));
    check("frames_read_in_pieces_round_trip", input, |(r, chunks)| {
        let mut encoded = Vec::new();
        if write_frame(&mut encoded, &r).is_err() {
            return Ok(()); // over the limit: request_frames_round_trip covers it
        }
        let mut reader = Trickle {
            data: &encoded,
            chunks,
            calls: 0,
            given: 0,
            interrupted: false,
        };
        let decoded = read_frame::<_, Request>(&mut reader);
        prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
        prop_assert_eq!(reader.given, encoded.len());
        let mut again = Vec::new();
        prop_assert!(decoded.is_ok_and(|d| write_frame(&mut again, &d).is_ok()));
        prop_assert_eq!(again, encoded);
        Ok(())
    });
}

#[test]
fn truncated_frames_are_errors() {
    let input = (request(), any::<prop::sample::Index>());
    check("truncated_frames_are_errors", input, |(r, cut)| {
        let mut encoded = Vec::new();
        if write_frame(&mut encoded, &r).is_err() {
            return Ok(());
        }
        let short = &encoded[..cut.index(encoded.len())];
        let result = read_frame::<_, Request>(&mut &short[..]);
        if short.is_empty() {
            prop_assert!(matches!(result, Err(FrameError::Closed)));
        } else {
            prop_assert!(
                matches!(&result, Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
                "{:?}",
                result.err()
            );
        }
        Ok(())
    });
}

#[test]
fn garbage_bodies_are_refused_without_echoing_them() {
    check(
        "garbage_bodies_are_refused_without_echoing_them",
        json_ish(),
        |body| {
            let input = frame(&body);
            check_decode::<Request>(&input)?;
            check_decode::<Response>(&input)
        },
    );
}

// ---- 2. Request parsing ---------------------------------------------------

#[test]
fn json_ish_bytes_never_panic_request_parsing() {
    check(
        "json_ish_bytes_never_panic_request_parsing",
        json_ish(),
        |bytes| {
            if let Ok(request) = serde_json::from_slice::<Request>(&bytes) {
                assert_round_trip(&request)?;
            }
            Ok(())
        },
    );
}

#[test]
fn valid_json_never_panics_request_parsing() {
    check(
        "valid_json_never_panics_request_parsing",
        request_shaped_json(),
        |value| {
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed = serde_json::from_slice::<Request>(&bytes);
            let known = value
                .get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| REQUEST_TYPES.contains(&t));
            prop_assert!(known || parsed.is_err(), "an unknown type was accepted");
            if let Ok(request) = parsed {
                assert_round_trip(&request)?;
            }
            Ok(())
        },
    );
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let input = (
        1usize..20_000,
        any::<bool>(),
        proptest::sample::select(FIELD_NAMES),
    );
    check(
        "deeply_nested_json_is_refused_without_overflowing_the_stack",
        input,
        |(depth, arrays, field)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            let body = format!(
                "{{\"type\":\"begin\",\"{field}\":{}0{}}}",
                open.repeat(depth),
                close.repeat(depth)
            );
            // Deep values are refused by serde_json's recursion limit.
            let parsed = serde_json::from_str::<Request>(&body);
            prop_assert!(depth < 128 || parsed.is_err());
            check_decode::<Request>(&frame(body.as_bytes()))
        },
    );
}

#[test]
fn generated_requests_parse_back_from_json() {
    check("generated_requests_parse_back_from_json", request(), |r| {
        let json = serde_json::to_string(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Request =
            serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = serde_json::to_string(&back).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, json);
        Ok(())
    });
}

fn lock_info() -> impl Strategy<Value = LockInfo> {
    (text(), text(), any::<Option<i64>>(), any::<bool>()).prop_map(
        |(kind, name, until, by_root)| LockInfo {
            kind,
            name,
            until,
            by_root,
        },
    )
}
