"""Signs in to the reference panel over HTTP (urllib, a cookie jar) and
presses "Sign out everywhere", as a browser would; run by
tests/panel_browser.rs while the same user has a live SSH session.

Environment: PANEL_URL (ends with /), PANEL_USER, PANEL_PASSWORD (no 2FA).
Prints the sessions page's text before the sign-out.
"""

import html
import http.cookiejar
import os
import re
import urllib.parse
import urllib.request

URL = os.environ["PANEL_URL"]
opener = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def get(path: str) -> tuple[str, str]:
    with opener.open(URL + path, timeout=30) as r:
        return r.geturl(), r.read().decode()


def post(path: str, page: str, fields: dict) -> tuple[str, str]:
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrf": csrf, **fields}).encode()
    with opener.open(URL + path, data=data, timeout=30) as r:
        return r.geturl(), r.read().decode()


def text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


_, page = get("sign-in")
where, page = post("sign-in", page, {"user": os.environ["PANEL_USER"],
                                     "password": os.environ["PANEL_PASSWORD"]})
assert "Welcome" in page, text(page)
_, page = get("sessions")
rows = re.findall(r"<tr><td>(\w+)", page)
print("sessions page:", " ".join(text(page).split()), flush=True)
assert sorted(rows) == ["kpanel", "sshd"], rows
where, page = post("sessions/sign-out-all", page, {})
assert where.endswith("/sign-in"), where
assert "Signed out everywhere (2 sessions)" in text(page), text(page)
where, page = get("sessions")
assert where.endswith("/sign-in"), where
print("signed out everywhere", flush=True)
