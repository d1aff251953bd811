"""What the panel keeps per browser, in memory, behind a random cookie.

The cookie holds only a random id (256 bits); everything else stays on
the server: the CSRF token, the signed-in user and their kauthd session
id, a login waiting for its code (the continuation token never reaches
the browser), an enrollment waiting for its confirmation, recovery codes
waiting to be saved, and one-time notices.
"""

import secrets
import threading
import time
from dataclasses import dataclass, field

# A browser idle this long starts over (kauthd's own session stays until
# it is signed out or closed).
IDLE_SECONDS = 3600
# Browsers kept at most; the longest idle are dropped first.
MAX_BROWSERS = 10000
# How long new recovery codes stay downloadable.
CODES_SECONDS = 600


@dataclass
class Browser:
    sid: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user: str | None = None
    kauth_session: str | None = None
    # A login waiting for its code: user, continuation token, prompt.
    pending_login: dict | None = None
    # A pending enrollment: uri, setup_key, expires.
    enrollment: dict | None = None
    new_codes: list[str] | None = None
    new_codes_until: float = 0.0
    notices: list[tuple[str, str]] = field(default_factory=list)
    seen: float = field(default_factory=time.monotonic)

    def notice(self, style: str, text: str) -> None:
        """A line shown once, on the next page: style ``info`` or ``error``."""
        self.notices.append((style, text))

    def take_notices(self) -> list[tuple[str, str]]:
        notices, self.notices = self.notices, []
        return notices

    def codes(self) -> list[str] | None:
        """The new recovery codes while they may still be shown."""
        if self.new_codes and time.monotonic() < self.new_codes_until:
            return self.new_codes
        self.new_codes = None
        return None

    def show_codes(self, codes: list[str]) -> None:
        self.new_codes = list(codes)
        self.new_codes_until = time.monotonic() + CODES_SECONDS


class Browsers:
    """Browser states by cookie id; safe for the server's threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_sid: dict[str, Browser] = {}

    def get(self, sid: str | None) -> Browser | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            browser = self._by_sid.get(sid)
            if browser is None or now - browser.seen > IDLE_SECONDS:
                self._by_sid.pop(sid, None)
                return None
            browser.seen = now
            return browser

    def new(self) -> Browser:
        browser = Browser(sid=secrets.token_urlsafe(32))
        with self._lock:
            if len(self._by_sid) >= MAX_BROWSERS:
                oldest = min(self._by_sid.values(), key=lambda b: b.seen)
                del self._by_sid[oldest.sid]
            self._by_sid[browser.sid] = browser
        return browser

    def renew(self, browser: Browser) -> Browser:
        """A new id (and CSRF token) for ``browser``, at sign-in, so an id
        planted before it is worth nothing after."""
        fresh = self.new()
        fresh.notices = browser.notices
        self.drop(browser)
        return fresh

    def drop(self, browser: Browser) -> None:
        with self._lock:
            self._by_sid.pop(browser.sid, None)
