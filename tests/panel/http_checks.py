"""The reference panel's guards over plain HTTP (urllib), run by
tests/panel_browser.rs: cookie attributes, CSRF, escaping of what a user
sends, the session check, and failing closed when kauthd is gone.

Environment: PANEL_URL (ends with /), PANEL_USER, PANEL_PASSWORD (no 2FA),
KAUTHD_PID (the test stops kauthd at the end: the last check).
"""

import http.cookiejar
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ["PANEL_URL"]
EVIL_AGENT = '<script>alert("x")</script> & "quotes"'


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser(agent: str = "kpanel-http-checks", follow: bool = True):
    handlers = [urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())]
    if not follow:
        handlers.append(NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    opener.addheaders = [("User-Agent", agent)]
    return opener


def fetch(opener, path, fields=None):
    data = urllib.parse.urlencode(fields).encode() if fields is not None else None
    try:
        with opener.open(URL + path, data=data, timeout=30) as r:
            return r.status, r.headers, r.geturl(), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.geturl(), e.read().decode()


def csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def sign_in(opener):
    _, _, _, page = fetch(opener, "sign-in")
    status, _, where, page = fetch(opener, "sign-in", {
        "csrf": csrf(page), "user": os.environ["PANEL_USER"],
        "password": os.environ["PANEL_PASSWORD"]})
    assert status == 200 and "Welcome" in page, (status, where, page)
    return page


# The cookie: HttpOnly and SameSite=Strict (not Secure on plain http).
status, headers, _, page = fetch(browser(follow=False), "sign-in")
cookie = headers["Set-Cookie"]
assert status == 200, status
assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie, cookie
assert "script-src" not in headers["Content-Security-Policy"], headers["Content-Security-Policy"]
assert headers["Cache-Control"] == "no-store", headers["Cache-Control"]
print("cookie:", re.sub(r"=[^;]+", "=…", cookie, count=1), flush=True)

# A form without its CSRF token, or with another browser's, is refused.
a = browser()
sign_in(a)
b = browser()
_, _, _, other = fetch(b, "sign-in")
for token in (None, csrf(other), "é" * 10):
    fields = {} if token is None else {"csrf": token}
    status, _, _, page = fetch(a, "sessions/sign-out-all", fields)
    assert status == 403 and "expired" in page, (token, status, page)
status, _, where, page = fetch(a, "sessions")
assert "Where you are signed in" in page, "a refused form signed nobody out"
print("forms without the browser's CSRF token: 403", flush=True)

# What a user sends (here the user agent, shown on the sessions page) is escaped.
evil = browser(EVIL_AGENT)
sign_in(evil)
_, _, _, page = fetch(a, "sessions")
assert "<script>" not in page, "the user agent reached the page unescaped"
assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page, page
print("a user agent with markup is shown escaped", flush=True)

# Signed out elsewhere (the sessions page of another browser): thrown out at the next click.
_, _, _, page = fetch(evil, "sessions")
ids = re.findall(r'name="id" value="([0-9a-f]+)"', page)
mine = re.search(r'this browser.*?name="id" value="([0-9a-f]+)"', page, re.S).group(1)
other_id = next(i for i in ids if i != mine)
status, _, _, page = fetch(evil, "sessions/sign-out", {"csrf": csrf(page), "id": other_id})
assert "That session is signed out" in page, page
_, _, where, page = fetch(a, "sessions")
assert where.endswith("/sign-in") and "You were signed out" in page, (where, page)
print("a browser whose session was signed out elsewhere is sent to sign in", flush=True)

# kauthd gone: no page of a signed-in user is served without its check.
os.kill(int(os.environ["KAUTHD_PID"]), signal.SIGKILL)
time.sleep(0.5)
status, _, _, page = fetch(evil, "sessions")
assert status == 503 and "unavailable" in page, (status, page)
assert "Where you are signed in" not in page
print("kauthd down: 503, no page", flush=True)
print("http checks: done", flush=True)
