"""The panel's HTTP handler: routes, cookies, CSRF and the session check.

Every page of a signed-in user first asks kauthd ``session_check``: a
session signed out anywhere (the sessions page of another browser,
``kauthctl sessions sign-out``) sends this browser to the sign-in page at
its next click. Every POST carries the browser's CSRF token. kauthd
unreachable means no page but an error: the panel fails closed.
"""

import hmac
import http.cookies
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

import kauth

from . import pages
from .state import Browser, Browsers

COOKIE = "kpanel"
MAX_FORM = 16 * 1024
MAX_AGENT = 256


class Panel:
    """What every request needs: how to reach kauthd and the browsers."""

    def __init__(self, socket_path: str, *, service: str = "kpanel", server_uids=(0,),
                 secure_cookies: bool = False, console=sys.stdout):
        self.socket_path = socket_path
        self.service = service
        self.server_uids = tuple(server_uids)
        self.secure_cookies = secure_cookies
        self.console = console
        self.browsers = Browsers()

    def kauthd(self) -> kauth.Client:
        return kauth.Client(self.socket_path, server_uids=self.server_uids, timeout=30,
                            client_name="kpanel-example")


def printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


class Handler(BaseHTTPRequestHandler):
    panel: Panel  # set by make_handler
    server_version = "kpanel"
    # Seconds a connection may stay silent (a slow client holds a thread).
    timeout = 30
    sys_version = ""

    # -- plumbing

    def log_request(self, code="-", size="-"):
        # The request line can carry a reset token in its query: log the
        # path alone, with anything unprintable replaced.
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path
        self.log_message("%s %s %s", printable(self.command or "", 10), printable(path, 200),
                         getattr(code, "value", code))

    def log_message(self, format, *args):
        line = printable(format % args, 500)
        sys.stderr.write(f"kpanel: {self.address_string()} {line}\n")

    def do_GET(self):
        self._dispatch(GET_ROUTES)

    def do_POST(self):
        self._dispatch(POST_ROUTES)

    def _dispatch(self, routes):
        url = urllib.parse.urlsplit(self.path)
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.route = url.path
        self.browser, self.new_cookie = self._browser()
        handler = routes.get(url.path)
        if handler is None:
            return self.send_page(HTTPStatus.NOT_FOUND, "Not found",
                                  '<div class="card"><h1>Not found</h1><p><a href="/">Back</a></p></div>')
        try:
            if self.command == "POST":
                self.form = self._read_form()
                if self.form is None:
                    return
                sent = self.form.get("csrf", "").encode()
                if not hmac.compare_digest(sent, self.browser.csrf.encode()):
                    return self.send_page(
                        HTTPStatus.FORBIDDEN, "Form expired",
                        '<div class="card"><h1>This form has expired</h1><p>Go back, reload '
                        'the page and try again.</p><p><a href="/">Back</a></p></div>')
            handler(self)
        except kauth.ProtocolError as e:
            self.log_error("kauthd: %s", printable(str(e), 300))
            self.send_page(HTTPStatus.SERVICE_UNAVAILABLE, "Unavailable",
                           '<div class="card"><h1>Sign-in is unavailable</h1><p>The panel cannot '
                           'reach its authentication service. Try again in a minute; if it '
                           'persists, tell the administrator.</p></div>')
        except kauth.KauthError as e:
            # kauthd refused what the panel asked (its message is for people).
            self.log_error("kauthd answered %s", e.code)
            self.send_page(HTTPStatus.INTERNAL_SERVER_ERROR, "Error",
                           '<div class="card"><h1>That did not work</h1>'
                           f'<p>{pages.h(e.message)}</p><p><a href="/">Back</a></p></div>')

    def _browser(self) -> tuple[Browser, bool]:
        cookies = http.cookies.SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            pass
        morsel = cookies.get(COOKIE)
        browser = self.panel.browsers.get(morsel.value if morsel else None)
        if browser is None:
            return self.panel.browsers.new(), True
        return browser, False

    def _read_form(self) -> dict | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_FORM:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        body = self.rfile.read(length).decode("utf-8", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, max_num_fields=20).items()}

    def _headers(self, status, content_type, length):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                         "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        if self.new_cookie:
            # Secure only behind HTTPS: a browser drops Secure cookies of
            # plain http://127.0.0.1 (see README.md).
            secure = "; Secure" if self.panel.secure_cookies else ""
            self.send_header("Set-Cookie",
                             f"{COOKIE}={self.browser.sid}; Path=/; HttpOnly; SameSite=Strict{secure}")

    def send_page(self, status, title, body):
        b = self.browser
        text = pages.layout(title, body, user=b.user, csrf=b.csrf, path=self.route,
                            notes=b.take_notices())
        data = text.encode()
        self._headers(status, "text/html; charset=utf-8", len(data))
        self.end_headers()
        self.wfile.write(data)

    def page(self, title, body):
        self.send_page(HTTPStatus.OK, title, body)

    def redirect(self, location):
        self._headers(HTTPStatus.SEE_OTHER, "text/plain", 0)
        self.send_header("Location", location)
        self.end_headers()

    def renew_browser(self):
        self.browser = self.panel.browsers.renew(self.browser)
        self.new_cookie = True

    def signed_in(self) -> str | None:
        """The user of a browser whose kauthd session is still valid; else
        the browser is signed out, sent to the sign-in page, and None."""
        b = self.browser
        if not b.user:
            self.redirect("/sign-in")
            return None
        try:
            with self.panel.kauthd() as k:
                check = k.session_check(b.kauth_session)
        except kauth.NotFound:
            check = {}
        if check.get("valid") and check.get("user") == b.user:
            return b.user
        self.renew_browser()
        self.browser.notice("info", "You were signed out (on the sessions page, or by an "
                                    "administrator). Sign in again to go on.")
        self.redirect("/sign-in")
        return None

    # -- sign-in

    def get_root(self):
        if (user := self.signed_in()) is None:
            return
        with self.panel.kauthd() as k:
            status = k.two_factor_status(user)
        self.page("Dashboard", pages.dashboard(user, status))

    def get_sign_in(self):
        if self.browser.user:
            return self.redirect("/")
        self.page("Sign in", pages.sign_in(self.browser.csrf))

    def post_sign_in(self):
        user = self.form.get("user", "").strip()
        password = self.form.get("password", "")
        try:
            step = self.panel.kauthd().begin_login(user, password, self.panel.service,
                                                   rhost=self.client_address[0])
        except kauth.BadRequest:
            step = kauth.LoginStep(outcome="denied")
        self.after_login_step(user, step)

    def after_login_step(self, user: str, step: kauth.LoginStep):
        b = self.browser
        if any(pages.BLOCKS & set(m.text) for m in step.messages):
            # An enrollment at login: kauthd's QR drawing comes in pieces
            # (at most 511 bytes a message); one notice shows it whole.
            b.notice("info", "\n".join(m.text for m in step.messages if m.style == "info"))
            step = kauth.LoginStep(messages=[m for m in step.messages if m.style != "info"],
                                   token=step.token, prompt=step.prompt, outcome=step.outcome)
        for m in step.messages:
            b.notice(m.style, m.text)
        if step.needs_code:
            b.pending_login = {"user": user, "token": step.token, "prompt": step.prompt}
            return self.redirect("/code")
        b.pending_login = None
        if not step.succeeded:
            b.notice("error", "Sign-in failed: the user name, password or code is wrong."
                     if step.outcome != "locked" else "Sign-in is locked for now.")
            return self.redirect("/sign-in")
        agent = printable(self.headers.get("User-Agent", ""), MAX_AGENT) or None
        with self.panel.kauthd() as k:
            session = k.session_open(user, self.panel.service, rhost=self.client_address[0],
                                     client=agent)
        self.renew_browser()
        self.browser.user = user
        self.browser.kauth_session = session
        self.redirect("/")

    def get_code(self):
        pending = self.browser.pending_login
        if not pending:
            return self.redirect("/sign-in")
        self.page("Verification code", pages.code(self.browser.csrf, pending["user"],
                                                  pending["prompt"]))

    def post_code(self):
        pending = self.browser.pending_login
        if not pending:
            return self.redirect("/sign-in")
        self.browser.pending_login = None
        code = self.form.get("code", "").strip()
        try:
            step = self.panel.kauthd().continue_login(pending["token"], code)
        except (kauth.NotFound, kauth.BadRequest):
            self.browser.notice("error", "That sign-in expired. Start again.")
            return self.redirect("/sign-in")
        self.after_login_step(pending["user"], step)

    def post_code_cancel(self):
        self.browser.pending_login = None
        self.redirect("/sign-in")

    def post_sign_out(self):
        b = self.browser
        if b.kauth_session:
            with self.panel.kauthd() as k:
                try:
                    k.session_close(b.kauth_session)
                except kauth.NotFound:
                    pass
        self.renew_browser()
        self.browser.notice("info", "You are signed out.")
        self.redirect("/sign-in")

    # -- two-factor

    def get_2fa(self):
        if (user := self.signed_in()) is None:
            return
        with self.panel.kauthd() as k:
            status = k.two_factor_status(user)
        self.page("Two-factor", pages.two_factor(self.browser.csrf, status))

    def post_2fa_enroll(self):
        if (user := self.signed_in()) is None:
            return
        try:
            with self.panel.kauthd() as k:
                begun = k.enroll_begin(user, password=self.form.get("password"))
        except (kauth.Refused, kauth.Invalid) as e:
            self.browser.notice("error", e.message)
            return self.redirect("/2fa")
        self.browser.enrollment = {"uri": begun["uri"], "setup_key": begun["setup_key"],
                                   "expires": begun.get("expires")}
        self.redirect("/2fa/enroll")

    def get_2fa_enroll(self):
        if self.signed_in() is None:
            return
        if not self.browser.enrollment:
            return self.redirect("/2fa")
        self.page("Set up two-factor", pages.enroll(self.browser.csrf, self.browser.enrollment))

    def post_2fa_confirm(self):
        if (user := self.signed_in()) is None:
            return
        try:
            with self.panel.kauthd() as k:
                codes = k.enroll_confirm(user, self.form.get("code", "").strip())
        except kauth.Refused as e:
            self.browser.notice("error", e.message)
            return self.redirect("/2fa/enroll")
        except kauth.NotFound:
            self.browser.enrollment = None
            self.browser.notice("error", "The setup expired. Start again.")
            return self.redirect("/2fa")
        self.browser.enrollment = None
        self.browser.notice("info", "Two-factor authentication is on.")
        self.browser.show_codes(codes)
        self.redirect("/2fa/recovery-codes")

    def get_recovery_codes(self):
        if self.signed_in() is None:
            return
        if (codes := self.browser.codes()) is None:
            return self.redirect("/2fa")
        self.page("Recovery codes", pages.recovery_codes(self.browser.csrf, codes))

    def get_recovery_codes_text(self):
        if (user := self.signed_in()) is None:
            return
        if (codes := self.browser.codes()) is None:
            return self.redirect("/2fa")
        data = pages.recovery_codes_text(user, codes).encode()
        self._headers(HTTPStatus.OK, "text/plain; charset=utf-8", len(data))
        self.send_header("Content-Disposition", 'attachment; filename="kpanel-recovery-codes.txt"')
        self.end_headers()
        self.wfile.write(data)

    def post_codes_saved(self):
        self.browser.new_codes = None
        self.redirect("/2fa")

    def post_2fa_regenerate(self):
        if (user := self.signed_in()) is None:
            return
        try:
            with self.panel.kauthd() as k:
                codes = k.regenerate_recovery_codes(user, self.form.get("password"),
                                                    self.form.get("code", "").strip())
        except (kauth.Refused, kauth.Invalid) as e:
            self.browser.notice("error", e.message)
            return self.redirect("/2fa")
        self.browser.show_codes(codes)
        self.redirect("/2fa/recovery-codes")

    def post_2fa_disable(self):
        if (user := self.signed_in()) is None:
            return
        try:
            with self.panel.kauthd() as k:
                k.disable_two_factor(user, self.form.get("password"),
                                     self.form.get("code", "").strip())
        except (kauth.Refused, kauth.Invalid, kauth.ConfirmationNeeded) as e:
            self.browser.notice("error", e.message)
            return self.redirect("/2fa")
        self.browser.notice("info", "Two-factor authentication is off.")
        self.redirect("/2fa")

    # -- sessions and activity

    def get_sessions(self):
        if (user := self.signed_in()) is None:
            return
        with self.panel.kauthd() as k:
            rows = k.sessions(user)
        self.page("Sessions", pages.sessions(self.browser.csrf, rows, self.browser.kauth_session))

    def post_sessions_sign_out(self):
        if (user := self.signed_in()) is None:
            return
        wanted = self.form.get("id", "")
        with self.panel.kauthd() as k:
            # Only a session of this user, by its whole id.
            if any(s.get("id") == wanted for s in k.sessions(user)):
                k.sign_out(wanted)
                self.browser.notice("info", "That session is signed out.")
        self.redirect("/sessions")

    def post_sessions_sign_out_all(self):
        if (user := self.signed_in()) is None:
            return
        with self.panel.kauthd() as k:
            ended = k.sign_out_all(user)
        self.renew_browser()
        self.browser.notice("info", f"Signed out everywhere ({len(ended)} sessions).")
        self.redirect("/sign-in")

    def get_activity(self):
        if (user := self.signed_in()) is None:
            return
        with self.panel.kauthd() as k:
            events = k.activity(user=user, limit=50)
        self.page("Activity", pages.activity(events))

    # -- forgotten password

    def get_forgot(self):
        self.page("Forgot password", pages.forgot(self.browser.csrf))

    def post_forgot(self):
        user = self.form.get("user", "").strip()
        try:
            with self.panel.kauthd() as k:
                made = k.reset_token_create(user)
        except (kauth.NotFound, kauth.BadRequest, kauth.Invalid):
            made = None
        if made:
            host = self.headers.get("Host", "127.0.0.1")
            link = "/reset?" + urllib.parse.urlencode({"user": user, "token": made["token"]})
            # In place of a mail (a demo): the console of whoever runs the panel.
            print(f"password reset link for {printable(user, 64)}: http://{printable(host, 100)}{link}",
                  file=self.panel.console, flush=True)
        # The same answer whether the account exists or not.
        self.browser.notice("info", "If that account exists, a link to set a new password is on "
                                    "its way (in this demo: on the panel's console).")
        self.redirect("/sign-in")

    def get_reset(self):
        self.page("New password", pages.reset(self.browser.csrf, self.query.get("user", ""),
                                              self.query.get("token", "")))

    def post_reset(self):
        user, token = self.form.get("user", ""), self.form.get("token", "")
        new, again = self.form.get("new", ""), self.form.get("again", "")
        if new != again:
            self.browser.notice("error", "The two passwords differ. Type the same one twice.")
            return self.page("New password", pages.reset(self.browser.csrf, user, token))
        try:
            with self.panel.kauthd() as k:
                k.password_reset(user, token, new)
        except kauth.Invalid as e:
            self.browser.notice("error", e.message)
            return self.page("New password", pages.reset(self.browser.csrf, user, token))
        except (kauth.Refused, kauth.NotFound, kauth.BadRequest):
            self.browser.notice("error", "That link is wrong, used or expired. Ask for a new one.")
            return self.redirect("/forgot")
        self.browser.notice("info", "Your password is set. Sign in with it.")
        self.redirect("/sign-in")

    def get_style(self):
        data = pages.STYLE.encode()
        self._headers(HTTPStatus.OK, "text/css; charset=utf-8", len(data))
        self.end_headers()
        self.wfile.write(data)


GET_ROUTES = {
    "/": Handler.get_root,
    "/sign-in": Handler.get_sign_in,
    "/code": Handler.get_code,
    "/2fa": Handler.get_2fa,
    "/2fa/enroll": Handler.get_2fa_enroll,
    "/2fa/recovery-codes": Handler.get_recovery_codes,
    "/2fa/recovery-codes.txt": Handler.get_recovery_codes_text,
    "/sessions": Handler.get_sessions,
    "/activity": Handler.get_activity,
    "/forgot": Handler.get_forgot,
    "/reset": Handler.get_reset,
    "/style.css": Handler.get_style,
}

POST_ROUTES = {
    "/sign-in": Handler.post_sign_in,
    "/code": Handler.post_code,
    "/code/cancel": Handler.post_code_cancel,
    "/sign-out": Handler.post_sign_out,
    "/2fa/enroll": Handler.post_2fa_enroll,
    "/2fa/confirm": Handler.post_2fa_confirm,
    "/2fa/codes-saved": Handler.post_codes_saved,
    "/2fa/regenerate": Handler.post_2fa_regenerate,
    "/2fa/disable": Handler.post_2fa_disable,
    "/sessions/sign-out": Handler.post_sessions_sign_out,
    "/sessions/sign-out-all": Handler.post_sessions_sign_out_all,
    "/forgot": Handler.post_forgot,
    "/reset": Handler.post_reset,
}


def make_handler(panel: Panel):
    return type("PanelHandler", (Handler,), {"panel": panel})
