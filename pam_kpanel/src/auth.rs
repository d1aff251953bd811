//! PAM `auth`: one login conversation with kauthd.
//!
//! Outcome → PAM code: Success → PAM_SUCCESS, Denied → PAM_AUTH_ERR,
//! Locked → PAM_MAXTRIES (sshd then stops offering further attempts).
//! kauthd unreachable → PAM_AUTHINFO_UNAVAIL, or PAM_SUCCESS under
//! `failmode=safe` (only when nothing listens); a busy or broken daemon →
//! PAM_AUTHINFO_UNAVAIL; the application's conversation failing →
//! PAM_CONV_ERR.

use std::ffi::CStr;

use kauth_proto::module_options::{FirstPass, Options};
use kauth_proto::{LoginMode, Outcome, Request, Secret};
use pam::constants::{PamFlag, PamResultCode};

use crate::context::{gather, load_options};
use crate::daemon::{connect_and_call, unreachable_outcome};
use crate::ffi::PAM_SILENT;
use crate::pam_io::{Level, PamIo};
use crate::relay::{failure_code, relay_answer, MAX_ANSWER};

pub fn authenticate(io: &mut dyn PamIo, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let Some(opts) = load_options(io, args) else {
        return PamResultCode::PAM_SERVICE_ERR;
    };
    let ctx = match gather(io, &opts) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let mode = if opts.otp_only {
        LoginMode::OtpOnly
    } else {
        LoginMode::Password
    };
    let authtok = match first_password(io, &opts, mode) {
        Ok(authtok) => authtok,
        Err(code) => return code,
    };
    io.debug(
        opts.debug,
        &format!(
            "login conversation for service {} ({mode:?}, password from PAM_AUTHTOK: {})",
            ctx.service,
            authtok.is_some()
        ),
    );
    let begin = Request::Begin {
        user: ctx.user,
        service: ctx.service,
        rhost: ctx.rhost,
        tty: ctx.tty,
        ruser: ctx.ruser,
        mode,
        authtok,
        enroll_at_login: opts.enroll_at_login,
        resumable: false,
    };
    let (mut client, first) = match connect_and_call(&opts, &begin) {
        Ok(connected) => connected,
        Err(e) => return unreachable_outcome(io, &opts, &e, PamResultCode::PAM_AUTHINFO_UNAVAIL),
    };
    let result = relay_answer(io, &mut client, first, flags & PAM_SILENT != 0);
    let code = match result {
        Ok(Outcome::Success) => PamResultCode::PAM_SUCCESS,
        Ok(Outcome::Denied) => PamResultCode::PAM_AUTH_ERR,
        Ok(Outcome::Locked) => PamResultCode::PAM_MAXTRIES,
        Err(e) => failure_code(io, &e),
    };
    io.debug(opts.debug, &format!("login conversation ended: {code:?}"));
    code
}

/// PAM_AUTHTOK for `use_first_pass` / `try_first_pass`. Only a password
/// login sends it: with `otp_only` kauthd never sees the first factor.
fn first_password(
    io: &dyn PamIo,
    opts: &Options,
    mode: LoginMode,
) -> Result<Option<Secret>, PamResultCode> {
    if mode != LoginMode::Password || opts.first_pass == FirstPass::No {
        return Ok(None);
    }
    let usable = io
        .authtok()
        .filter(|tok| tok.len() <= MAX_ANSWER)
        .and_then(|tok| std::str::from_utf8(&tok).ok().map(Secret::from));
    match (usable, opts.first_pass) {
        (Some(tok), _) => Ok(Some(tok)),
        (None, FirstPass::Use) => {
            io.log(
                Level::Notice,
                "use_first_pass is set but no earlier module left a usable password (PAM_AUTHTOK)",
            );
            Err(PamResultCode::PAM_AUTH_ERR)
        }
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::{Duration, Instant};

    use kauth_proto::{ErrorCode, MessageStyle, Response};

    use super::*;
    use crate::pam_io::Style;
    use crate::testing::{Args, FakeDaemon, FakePam, Reply};

    fn run(pam: &mut FakePam, args: &Args) -> PamResultCode {
        authenticate(pam, &args.as_refs(), 0)
    }

    fn code_prompt() -> Response {
        Response::Prompt {
            echo: false,
            message: "Verification code: ".into(),
            continuation: None,
        }
    }

    /// Asks for a code and accepts exactly `good`.
    fn code_checker(good: &'static str) -> FakeDaemon {
        FakeDaemon::serve(move |peer| {
            assert!(matches!(peer.recv(), Some(Request::Begin { .. })));
            peer.send(code_prompt());
            match peer.recv() {
                Some(Request::Answer { text }) if text.expose() == good => {
                    peer.finish(Outcome::Success);
                }
                Some(Request::Answer { .. }) => {
                    peer.finish(Outcome::Denied);
                }
                other => panic!("expected an answer, got {other:?}"),
            }
        })
    }

    #[test]
    fn right_code_logs_in() {
        let daemon = code_checker("492039");
        let mut pam = FakePam::new("ann").answer("492039");
        let args = Args::for_socket(daemon.socket(), &["otp_only", "debug"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
        assert_eq!(pam.prompts(), vec!["Verification code: "]);
        assert_eq!(pam.shown[0].0, Style::PromptEchoOff);
        assert!(!pam.all_logs().contains("492039"), "{}", pam.all_logs());
        match &daemon.received()[0] {
            Request::Begin {
                user,
                service,
                rhost,
                mode,
                authtok,
                ..
            } => {
                assert_eq!(user, "ann");
                assert_eq!(service, "sshd");
                assert_eq!(rhost.as_deref(), Some("192.0.2.7"));
                assert_eq!(*mode, LoginMode::OtpOnly);
                assert!(authtok.is_none());
            }
            other => panic!("expected begin, got {other:?}"),
        }
    }

    #[test]
    fn wrong_code_is_denied() {
        let daemon = code_checker("492039");
        let mut pam = FakePam::new("ann").answer("000000");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn locked_account_gives_maxtries() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.finish(Outcome::Locked);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_MAXTRIES);
    }

    #[test]
    fn info_and_error_texts_are_relayed() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Message {
                style: MessageStyle::Info,
                text: "2FA will be required from 2030-01-01".into(),
            });
            assert!(matches!(peer.recv(), Some(Request::Continue)));
            peer.send(Response::Message {
                style: MessageStyle::Error,
                text: "Your phone's clock may be wrong".into(),
            });
            assert!(matches!(peer.recv(), Some(Request::Continue)));
            peer.finish(Outcome::Success);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
        assert_eq!(
            pam.shown,
            vec![
                (
                    Style::Info,
                    "2FA will be required from 2030-01-01".to_owned()
                ),
                (Style::Error, "Your phone's clock may be wrong".to_owned()),
            ]
        );
    }

    #[test]
    fn a_text_the_application_cannot_show_does_not_end_the_login() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Message {
                style: MessageStyle::Info,
                text: "hello".into(),
            });
            assert!(matches!(peer.recv(), Some(Request::Continue)));
            peer.send(code_prompt());
            assert!(matches!(peer.recv(), Some(Request::Answer { .. })));
            peer.finish(Outcome::Success);
        });
        let mut pam = FakePam::new("ann").answer("123456");
        pam.fail_texts = true;
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
        assert_eq!(pam.logged(Level::Notice).len(), 1);
    }

    #[test]
    fn silent_flag_hides_texts_but_acknowledges_them() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Message {
                style: MessageStyle::Info,
                text: "hello".into(),
            });
            assert!(matches!(peer.recv(), Some(Request::Continue)));
            peer.finish(Outcome::Success);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        let code = authenticate(&mut pam, &args.as_refs(), PAM_SILENT);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert!(pam.shown.is_empty());
    }

    #[test]
    fn garbage_from_the_daemon_fails() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send_raw(b"\x00\x00\x00\x05hello");
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &["otp_only", "failmode=safe"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(!pam.logged(Level::Err).is_empty());
    }

    #[test]
    fn daemon_closing_mid_conversation_fails_even_with_failmode_safe() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(code_prompt());
            peer.recv();
            // Dropping the peer closes the connection without an outcome.
        });
        let mut pam = FakePam::new("ann").answer("123456");
        let args = Args::for_socket(daemon.socket(), &["otp_only", "failmode=safe"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
    }

    #[test]
    fn silent_daemon_times_out_within_the_timeout() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            // Say nothing; wait for the module to give up and hang up.
            let _ = peer.recv();
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &["timeout=1"]);
        let start = Instant::now();
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn human_typing_time_is_not_under_the_timeout() {
        struct SlowTyper(FakePam);
        impl PamIo for SlowTyper {
            fn user(&mut self) -> Result<Vec<u8>, PamResultCode> {
                self.0.user()
            }
            fn item(&self, item: crate::pam_io::Item) -> Option<String> {
                self.0.item(item)
            }
            fn authtok(&self) -> Option<crate::pam_io::SecretBytes> {
                None
            }
            fn converse(
                &mut self,
                style: Style,
                text: &str,
            ) -> Result<Option<crate::pam_io::SecretBytes>, PamResultCode> {
                std::thread::sleep(Duration::from_millis(1500));
                self.0.converse(style, text)
            }
            fn putenv(&mut self, n: &str, v: &str) -> Result<(), PamResultCode> {
                self.0.putenv(n, v)
            }
            fn getenv(&self, n: &str) -> Option<String> {
                self.0.getenv(n)
            }
            fn log(&self, level: Level, text: &str) {
                self.0.log(level, text)
            }
        }
        let daemon = code_checker("111111");
        let mut pam = SlowTyper(FakePam::new("ann").answer("111111"));
        let args = Args::for_socket(daemon.socket(), &["timeout=1"]);
        assert_eq!(
            authenticate(&mut pam, &args.as_refs(), 0),
            PamResultCode::PAM_SUCCESS
        );
    }

    #[test]
    fn null_conversation_reply_fails_without_sending() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(code_prompt());
            assert!(peer.recv().is_none(), "the module must hang up");
        });
        let mut pam = FakePam::new("ann").reply(Reply::Null);
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_CONV_ERR);
        assert_eq!(daemon.received().len(), 1);
    }

    #[test]
    fn failing_conversation_fails() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(code_prompt());
            let _ = peer.recv();
        });
        let mut pam = FakePam::new("ann").reply(Reply::Fail);
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_CONV_ERR);
    }

    #[test]
    fn oversized_answer_is_refused_without_sending() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(code_prompt());
            assert!(peer.recv().is_none(), "the answer must not be sent");
        });
        let huge = "9".repeat(1025);
        let mut pam = FakePam::new("ann").answer(&huge);
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTH_ERR);
        assert_eq!(daemon.received().len(), 1);
    }

    #[test]
    fn answer_of_exactly_the_limit_is_sent() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(code_prompt());
            match peer.recv() {
                Some(Request::Answer { text }) => assert_eq!(text.expose().len(), 1024),
                other => panic!("{other:?}"),
            }
            peer.finish(Outcome::Denied);
        });
        let mut pam = FakePam::new("ann").answer(&"x".repeat(1024));
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTH_ERR);
        assert_eq!(daemon.received().len(), 2);
    }

    #[test]
    fn endless_daemon_is_cut_off() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            loop {
                peer.send(Response::Message {
                    style: MessageStyle::Info,
                    text: "again".into(),
                });
                if peer.recv().is_none() {
                    break;
                }
            }
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(daemon.received().len(), 1 + crate::relay::MAX_STEPS);
    }

    #[test]
    fn out_of_turn_response_fails() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.recv();
            peer.send(Response::Done);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &[]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
    }

    #[test]
    fn daemon_errors_map_to_auth_or_system_errors() {
        for (code, expected) in [
            (ErrorCode::Refused, PamResultCode::PAM_AUTH_ERR),
            (ErrorCode::Forbidden, PamResultCode::PAM_SYSTEM_ERR),
            (ErrorCode::Internal, PamResultCode::PAM_SYSTEM_ERR),
        ] {
            let daemon = FakeDaemon::serve(move |peer| {
                peer.recv();
                peer.send(Response::Error {
                    code,
                    message: "no".into(),
                });
            });
            let mut pam = FakePam::new("ann");
            let args = Args::for_socket(daemon.socket(), &[]);
            assert_eq!(run(&mut pam, &args), expected, "{code:?}");
        }
    }

    #[test]
    fn unknown_option_fails_closed_without_connecting() {
        let daemon = FakeDaemon::serve(|peer| {
            peer.finish(Outcome::Success);
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &["nullok"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SERVICE_ERR);
        assert!(pam.logged(Level::Err)[0].contains("nullok"));
    }

    #[test]
    fn failmode_safe_without_otp_only_is_refused() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &["failmode=safe"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SERVICE_ERR);
    }

    #[test]
    fn failmode_safe_with_otp_only_lets_the_login_through_without_daemon() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
        let warnings = pam.logged(Level::Warning);
        assert!(warnings[0].contains("failmode=safe"), "{warnings:?}");
    }

    #[test]
    fn no_daemon_fails_by_default() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &["otp_only"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(!pam.logged(Level::Err).is_empty());
    }

    #[test]
    fn use_first_pass_without_a_password_fails_without_connecting() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(&nowhere, &["use_first_pass"]);
        // PAM_AUTHINFO_UNAVAIL would mean it tried to connect.
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn first_pass_sends_the_earlier_password() {
        let daemon = FakeDaemon::serve(|peer| match peer.recv() {
            Some(Request::Begin {
                authtok: Some(tok),
                mode: LoginMode::Password,
                ..
            }) if tok.expose() == "correct horse" => {
                peer.finish(Outcome::Success);
            }
            other => panic!("{other:?}"),
        });
        let mut pam = FakePam::new("ann");
        pam.authtok = Some(b"correct horse".to_vec());
        let args = Args::for_socket(daemon.socket(), &["try_first_pass"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn try_first_pass_without_a_password_lets_kauthd_ask() {
        let daemon = FakeDaemon::serve(|peer| match peer.recv() {
            Some(Request::Begin { authtok: None, .. }) => {
                peer.finish(Outcome::Denied);
            }
            other => panic!("{other:?}"),
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &["try_first_pass"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_AUTH_ERR);
        assert_eq!(daemon.received().len(), 1);
    }

    #[test]
    fn service_option_overrides_pam_service() {
        let daemon = FakeDaemon::serve(|peer| match peer.recv() {
            Some(Request::Begin { service, .. }) if service == "panel-api" => {
                peer.finish(Outcome::Success);
            }
            other => panic!("{other:?}"),
        });
        let mut pam = FakePam::new("ann");
        let args = Args::for_socket(daemon.socket(), &["service=panel-api"]);
        assert_eq!(run(&mut pam, &args), PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn unusable_user_names_are_refused_locally() {
        let (_dir, nowhere) = FakeDaemon::nowhere();
        for user in [vec![0xff, 0xfe], vec![b'a'; 10_000], Vec::new()] {
            let mut pam = FakePam::new("x");
            pam.user = Some(user);
            let args = Args::for_socket(&nowhere, &["otp_only", "failmode=safe"]);
            assert_eq!(run(&mut pam, &args), PamResultCode::PAM_USER_UNKNOWN);
        }
    }
}
