//! What the benchmark logs in to: users enrolled in a real kauthd over
//! its socket, google-authenticator secret files, and the PAM services
//! that use them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kauth_proto::{Request, Response, Secret as WireSecret};
use kauth_tests::daemon::TestDaemon;
use kauth_tests::login::connect;
use kauth_tests::pam::{module_path, PamConfDir};

use crate::totp::{self, Secret};

/// PAM service names in the benchmark's configuration directory.
pub const KAUTHD_OTP: &str = "bench-kauthd-otp";
pub const KAUTHD_CONCURRENT: &str = "bench-kauthd-concurrent";
pub const KAUTHD_PASSWORD: &str = "bench-kauthd-password";
pub const KAUTHD_LARGE: &str = "bench-kauthd-large";
pub const GOOGLE: &str = "bench-google-authenticator";
pub const PERMIT: &str = "bench-permit";

/// Connections used to enroll users at once.
const ENROLL_CONNECTIONS: usize = 4;

/// Writes the service `name`: pam_kpanel alone on `socket`, with
/// `options` (`otp_only`, or nothing for password then code).
pub fn write_kauthd_service(conf: &PamConfDir, name: &str, socket: &Path, options: &str) {
    conf.write_service(
        name,
        &format!(
            "auth required {} socket={} {options}\n",
            module_path().display(),
            socket.display()
        ),
    );
}

/// Writes the other services: pam_google_authenticator reading
/// `ga_dir/${USER}` as root, and pam_permit alone.
pub fn write_other_services(conf: &PamConfDir, ga_dir: &Path) {
    conf.write_service(
        GOOGLE,
        &format!(
            "auth required pam_google_authenticator.so secret={}/${{USER}} user=root\n",
            ga_dir.display()
        ),
    );
    conf.write_service(PERMIT, "auth required pam_permit.so\n");
}

/// Enrolls users `first..first + secrets.len()` (named `{prefix}{i}`) in
/// kauthd with `two_factor_import`, over a few connections at once, each
/// with `password` first when given (`user_add`). Returns how long it took.
pub fn enroll_kauthd(
    daemon: &TestDaemon,
    prefix: &str,
    first: usize,
    secrets: &[Secret],
    password: Option<&str>,
) -> Duration {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..ENROLL_CONNECTIONS {
            scope.spawn(|| {
                let mut client = connect(&daemon.socket);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(secret) = secrets.get(i) else { break };
                    let user = format!("{prefix}{}", first + i);
                    if let Some(password) = password {
                        let add = Request::UserAdd {
                            name: user.clone(),
                            password: Some(WireSecret::from(password)),
                            uid: None,
                        };
                        expect_done(&user, client.call(&add));
                    }
                    let import = Request::TwoFactorImport {
                        user: user.clone(),
                        secret: WireSecret::from(totp::base32(secret)),
                        algorithm: None,
                        digits: None,
                        period: None,
                    };
                    expect_done(&user, client.call(&import));
                }
            });
        }
    });
    started.elapsed()
}

fn expect_done(user: &str, answer: Result<Response, kauth_proto::ClientError>) {
    match answer {
        Ok(Response::Done) => {}
        other => panic!("enrolling {user} in kauthd failed: {other:?}"),
    }
}

/// A directory of google-authenticator secret files, one per user, named
/// after the user, as `google-authenticator` writes them with its usual
/// answers: TOTP, DISALLOW_REUSE, a window of 3, at most 3 logins per
/// 30 s, 5 scratch codes. Root's, mode 0600 (the module checks both).
pub struct GoogleDir {
    dir: tempfile::TempDir,
}

impl GoogleDir {
    pub fn new() -> GoogleDir {
        GoogleDir {
            dir: tempfile::Builder::new()
                .prefix("bench-google-authenticator-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the files of users `first..first + secrets.len()`.
    pub fn write_users(&self, prefix: &str, first: usize, secrets: &[Secret]) -> Duration {
        let started = Instant::now();
        let scratch = totp::random_secrets(secrets.len());
        for (i, secret) in secrets.iter().enumerate() {
            let scratch_codes: String = scratch[i]
                .chunks_exact(4)
                .map(|c| {
                    let n = u32::from_be_bytes(c.try_into().expect("4 bytes"));
                    format!("{}\n", 10_000_000 + n % 90_000_000)
                })
                .collect();
            let text = format!(
                "{}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n{scratch_codes}",
                totp::base32(secret)
            );
            let path: PathBuf = self.dir.path().join(format!("{prefix}{}", first + i));
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("create a google-authenticator file");
            file.write_all(text.as_bytes())
                .expect("write a google-authenticator file");
        }
        started.elapsed()
    }
}
