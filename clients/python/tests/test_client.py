"""The Python client against a real kauthd, run by tests/panel_clients_python.rs.

Environment: KAUTH_SOCKET (the daemon's socket; the tests run as root and
make their own accounts), and for ForeignUid: KAUTH_FOREIGN_UID, a uid in
the daemon's [access] pam_callers, and PYTHONPATH, where that uid can
import the package. Codes come from Debian's oathtool.
"""

import base64
import os
import re
import subprocess
import sys
import time
import unittest

import kauth

SOCKET = os.environ["KAUTH_SOCKET"]
PASSWORD = "Gannet-lichen-spruce-4821"
SERVICE = "kpanel"


def oathtool(secret: str, step: int) -> str:
    out = subprocess.run(["oathtool", "--totp", "-b", "-N", f"@{step * 30}", secret],
                         check=True, capture_output=True, text=True, env={"TZ": "UTC"})
    return out.stdout.strip()


class Codes:
    """Codes of one secret by oathtool, each time step handed out once
    (kauthd accepts a step once, and the next one early)."""

    def __init__(self, secret: str):
        self.secret = secret
        self.last = None

    def fresh(self) -> str:
        now = int(time.time()) // 30
        step = now if self.last is None else max(self.last + 1, now)
        while int(time.time()) // 30 + 1 < step:
            time.sleep(1)
        self.last = step
        return oathtool(self.secret, step)


def wrong_code(secret: str) -> str:
    """Six digits that are no code of the steps near now."""
    now = int(time.time()) // 30
    near = {oathtool(secret, s) for s in range(now - 3, now + 4)}
    return next(c for c in (f"{n:06d}" for n in range(123457, 10**6, 7919)) if c not in near)


_counter = 0


def new_user(with_secret: bool = True):
    """A fresh kauthd account with a password and (by default) 2FA on."""
    global _counter
    _counter += 1
    name = f"py{os.getpid()}x{_counter}"
    with kauth.Client(SOCKET) as k:
        k.call({"type": "user_add", "name": name, "password": PASSWORD})
        if not with_secret:
            return name, None
        secret = base64.b32encode(os.urandom(20)).decode()
        k.call({"type": "two_factor_import", "user": name, "secret": secret})
    return name, Codes(secret)


class LoginWithContinuation(unittest.TestCase):
    def test_password_then_code_in_a_second_connection(self):
        user, codes = new_user()
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE, rhost="203.0.113.9")
        self.assertTrue(step.needs_code, step)
        self.assertEqual(step.prompt, "Verification code: ")
        self.assertFalse(step.echo)
        self.assertGreaterEqual(len(step.token), 22, "a token of at least 128 bits")
        self.assertNotIn(step.token, repr(step))
        # A new client, a new connection: as a later HTTP request would.
        done = kauth.Client(SOCKET).continue_login(step.token, codes.fresh())
        self.assertTrue(done.succeeded, done)
        self.assertFalse(done.needs_code)
        with kauth.Client(SOCKET) as k:
            events = k.activity(user=user, limit=10)
        self.assertIn("login_success", [e["event"] for e in events], events)

    def test_a_wrong_password_is_not_told_apart_and_ends_denied(self):
        user, codes = new_user()
        step = kauth.Client(SOCKET).begin_login(user, "not the password", SERVICE)
        self.assertTrue(step.needs_code, step)
        done = kauth.Client(SOCKET).continue_login(step.token, codes.fresh())
        self.assertEqual(done.outcome, "denied", done)

    def test_without_two_factor_the_password_alone_finishes(self):
        user, _ = new_user(with_secret=False)
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE)
        self.assertFalse(step.needs_code, step)
        self.assertTrue(step.succeeded, step)

    def test_a_recovery_code_is_an_answer_and_says_how_many_are_left(self):
        user, codes = new_user(with_secret=False)
        with kauth.Client(SOCKET) as k:
            begun = k.enroll_begin(user)
            recovery = k.enroll_confirm(user, Codes(begun["secret"]).fresh())
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE)
        done = kauth.Client(SOCKET).continue_login(step.token, recovery[0])
        self.assertTrue(done.succeeded, done)
        left = len(recovery) - 1
        self.assertTrue(any(str(left) in m.text for m in done.messages), done.messages)
        with kauth.Client(SOCKET) as k:
            self.assertEqual(k.recovery_codes_left(user), left)


class EnrollAtLogin(unittest.TestCase):
    """Run on a daemon whose policy requires 2FA of everyone, with
    enrollment at login (the default)."""

    def test_a_user_without_2fa_sets_it_up_during_a_resumable_login(self):
        user, _ = new_user(with_secret=False)
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE)
        self.assertTrue(step.needs_code, step)
        shown = "\n".join(m.text for m in step.messages)
        key = re.search(r"Setup key: ([A-Z2-7 ]+)", shown)
        self.assertIsNotNone(key, shown)
        codes = Codes(key.group(1).replace(" ", ""))
        done = kauth.Client(SOCKET).continue_login(step.token, codes.fresh())
        self.assertTrue(done.succeeded, done)
        with kauth.Client(SOCKET) as k:
            status = k.two_factor_status(user)
        self.assertTrue(status["enabled"], status)
        shown = "\n".join(m.text for m in done.messages)
        self.assertGreater(status["recovery_codes_left"], 0)
        self.assertRegex(shown, r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", "the recovery codes are shown")


class Replay(unittest.TestCase):
    def test_a_used_token_is_refused(self):
        user, codes = new_user()
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE)
        code = codes.fresh()
        self.assertTrue(kauth.Client(SOCKET).continue_login(step.token, code).succeeded)
        with self.assertRaises(kauth.NotFound):
            kauth.Client(SOCKET).continue_login(step.token, code)
        with self.assertRaises(kauth.NotFound):
            kauth.Client(SOCKET).continue_login(step.token, codes.fresh())

    def test_an_unknown_token_is_refused(self):
        with self.assertRaises(kauth.NotFound):
            kauth.Client(SOCKET).continue_login("A" * 43, "123456")


FOREIGN = """
import sys, kauth
try:
    kauth.Client(sys.argv[1]).continue_login(sys.argv[2], sys.argv[3])
    print("accepted")
except kauth.KauthError as e:
    print(type(e).__name__)
"""


class ForeignUid(unittest.TestCase):
    def test_a_token_presented_by_another_uid_is_refused(self):
        uid = int(os.environ["KAUTH_FOREIGN_UID"])
        user, codes = new_user()
        step = kauth.Client(SOCKET).begin_login(user, PASSWORD, SERVICE)
        self.assertTrue(step.needs_code, step)
        out = subprocess.run(
            [sys.executable, "-c", FOREIGN, SOCKET, step.token, codes.fresh()],
            user=uid, group=uid, extra_groups=[], capture_output=True, text=True,
            env={"PYTHONPATH": os.environ["PYTHONPATH"], "PATH": os.environ.get("PATH", "")},
            timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "NotFound", out.stderr)
        with kauth.Client(SOCKET) as k:
            events = k.activity(user=user, limit=10)
        self.assertNotIn("login_success", [e["event"] for e in events], events)


class SelfService(unittest.TestCase):
    def test_enrollment_and_recovery_codes(self):
        user, _ = new_user(with_secret=False)
        with kauth.Client(SOCKET) as k:
            self.assertFalse(k.two_factor_status(user)["enabled"])
            begun = k.enroll_begin(user)
            self.assertTrue(begun["uri"].startswith("otpauth://totp/"), begun["uri"])
            self.assertIn(begun["secret"], begun["uri"])
            self.assertEqual(begun["setup_key"].replace(" ", ""), begun["secret"])
            codes = Codes(begun["secret"])
            with self.assertRaises(kauth.Refused):
                k.enroll_confirm(user, wrong_code(codes.secret))
            recovery = k.enroll_confirm(user, codes.fresh())
            self.assertGreaterEqual(len(recovery), 8)
            self.assertTrue(k.two_factor_status(user)["enabled"])
            self.assertEqual(k.recovery_codes_left(user), len(recovery))
            again = k.regenerate_recovery_codes(user, PASSWORD, codes.fresh())
            self.assertEqual(len(again), len(recovery))
            self.assertFalse(set(again) & set(recovery))
            k.disable_two_factor(user, PASSWORD, again[0])
            self.assertFalse(k.two_factor_status(user)["enabled"])

    def test_sessions_with_client_check_and_sign_out(self):
        user, _ = new_user(with_secret=False)
        agent = "Mozilla/5.0 (X11; Linux x86_64) test-browser/1.0"
        with kauth.Client(SOCKET) as k:
            first = k.session_open(user, SERVICE, rhost="203.0.113.9", client=agent)
            second = k.session_open(user, SERVICE, rhost="203.0.113.10", client=agent)
            listed = {s["id"]: s for s in k.sessions(user)}
            self.assertEqual(set(listed), {first, second})
            self.assertEqual(listed[first]["client"], agent)
            self.assertEqual(listed[first]["rhost"], "203.0.113.9")
            self.assertIn("last_active", listed[first])
            check = k.session_check(first)
            self.assertTrue(check["valid"], check)
            self.assertEqual(check["user"], user)
            self.assertEqual(k.sign_out(first), [first])
            self.assertFalse(k.session_check(first)["valid"])
            self.assertTrue(k.session_check(second)["valid"])
            self.assertEqual(k.sign_out_all(user), [second])
            self.assertFalse(k.session_check(second)["valid"])
            self.assertEqual(k.sessions(user), [])
            events = [e["event"] for e in k.activity(user=user)]
            self.assertIn("session_open", events)
            self.assertIn("sign_out", events)

    def test_password_reset_with_a_token(self):
        user, _ = new_user(with_secret=False)
        new_password = "Osprey-marble-thicket-5930"
        with kauth.Client(SOCKET) as k:
            made = k.reset_token_create(user)
            self.assertGreater(made["expires"], time.time())
            with self.assertRaises(kauth.Invalid):
                k.password_reset(user, made["token"], "short")
            with self.assertRaises(kauth.Refused):
                k.password_reset(user, "not-the-token", new_password)
            k.password_reset(user, made["token"], new_password)
            with self.assertRaises(kauth.Refused):
                k.password_reset(user, made["token"], new_password)
        self.assertTrue(kauth.Client(SOCKET).begin_login(user, new_password, SERVICE).succeeded)


class Errors(unittest.TestCase):
    def test_each_error_code_has_its_class(self):
        user, _ = new_user(with_secret=False)
        with kauth.Client(SOCKET) as k:
            with self.assertRaises(kauth.AlreadyExists) as caught:
                k.call({"type": "user_add", "name": user})
            self.assertEqual(caught.exception.code, "already_exists")
            self.assertTrue(caught.exception.message)
            with self.assertRaises(kauth.NotFound):
                k.sign_out("0123456789abcdef")
            with self.assertRaises(kauth.BadRequest):
                k.call({"type": "no_such_request"})
            # The connection is still usable after an error.
            self.assertIn("version", k.status())

    def test_a_listener_of_another_uid_is_refused_before_anything_is_sent(self):
        with self.assertRaises(kauth.NotKauthd) as caught:
            kauth.Client(SOCKET, server_uids=(4242,)).status()
        self.assertIn("uid 0", caught.exception.message)

    def test_a_missing_socket_says_so(self):
        with self.assertRaises(kauth.ProtocolError) as caught:
            kauth.Client(SOCKET + ".missing", timeout=2).status()
        self.assertIn("is kauthd running", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
