"""The requests a panel makes, as methods. PROTOCOL.md says what each
answer holds; errors come as the exceptions of ``kauth.errors``."""

from . import errors, login
from .wire import Connection

DEFAULT_SOCKET = "/run/kauthd/kauthd.sock"
# Pages a list request follows at most (500 rows each).
MAX_PAGES = 1000


def _proof(password, code):
    proof = {}
    if password:
        proof["password"] = password
    if code:
        proof["code"] = code
    return proof


class Client:
    """A client of kauthd on ``socket_path``.

    ``server_uids``: the uids kauthd may run as (0, or the configured
    kauthd user); the client refuses to talk to a listener of any other
    uid. ``timeout``: seconds any read or write may take.

    Requests other than logins share one connection, opened at first use;
    each login step opens its own, so that a step may run in a later HTTP
    request (or another process) than the one before.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, server_uids=(0,),
                 timeout: float = 30.0, client_name: str = "kauth-python"):
        self.socket_path = socket_path
        self.server_uids = tuple(server_uids)
        self.timeout = timeout
        self.client_name = client_name
        self._conn = None

    def connect(self) -> Connection:
        """A new connection to kauthd, its listener checked, greeted."""
        return Connection(self.socket_path, server_uids=self.server_uids,
                          timeout=self.timeout, client_name=self.client_name)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, request: dict) -> dict:
        """Sends any request (see PROTOCOL.md) and returns the answer."""
        if self._conn is None:
            self._conn = self.connect()
        try:
            return self._conn.call(request)
        except (errors.ProtocolError, errors.TooLarge):
            # Closed, out of step, or closed by kauthd after too_large:
            # the next request starts afresh.
            self.close()
            raise

    # -- status

    def status(self) -> dict:
        return self.call({"type": "status"})

    # -- logins (root and [access] pam_callers)

    def begin_login(self, user: str, password: str, service: str,
                    rhost: str | None = None, tty: str | None = None) -> login.LoginStep:
        """Checks ``password`` and, if a code is needed, parks the login:
        the step ``needs_code`` and carries the continuation ``token``.
        A wrong password is not told apart: a code is asked all the same,
        and the login ends ``denied`` after it."""
        with self.connect() as conn:
            answer = conn.call({"type": "begin", "user": user, "service": service,
                                "rhost": rhost, "tty": tty, "mode": "password",
                                "authtok": password, "resumable": True})
            return login.relay(conn, answer)

    def continue_login(self, token: str, answer: str) -> login.LoginStep:
        """Answers the parked prompt of ``token`` (single use) in a new
        connection. An unknown, used, expired or foreign token raises
        ``NotFound``. A recovery code is a valid answer."""
        with self.connect() as conn:
            first = conn.call({"type": "resume", "continuation": token, "text": answer})
            return login.relay(conn, first)

    # -- sessions

    def session_open(self, user: str, service: str, rhost: str | None = None,
                     tty: str | None = None, client: str | None = None) -> str:
        """Records a session of ``user`` (the panel's, after a login); its id."""
        return self.call({"type": "session_open", "user": user, "service": service,
                          "rhost": rhost, "tty": tty, "client": client})["id"]

    def session_check(self, session_id: str) -> dict:
        """``{"valid": bool, "user": ...}``; also records activity."""
        return self.call({"type": "session_check", "id": session_id})

    def session_close(self, session_id: str) -> None:
        self.call({"type": "session_close", "id": session_id})

    def sessions(self, user: str | None = None) -> list[dict]:
        """Open sessions of ``user`` (or everyone's), oldest first."""
        return self._all_pages({"type": "sessions", "user": user}, "sessions")

    def sign_out(self, session_id: str) -> list[str]:
        """Ends one session; the ids ended."""
        return self.call({"type": "sign_out", "id": session_id})["ids"]

    def sign_out_all(self, user: str) -> list[str]:
        """Ends every session of ``user`` (SSH ones too); the ids ended."""
        return self.call({"type": "sign_out", "user": user, "all": True})["ids"]

    # -- activity

    def activity(self, user: str | None = None, since: int | None = None,
                 limit: int = 200) -> list[dict]:
        """Up to ``limit`` events, newest first (default: the last 30 days)."""
        events = []
        request = {"type": "activity", "user": user, "since": since}
        for _ in range(MAX_PAGES):
            answer = self.call({**request, "limit": limit - len(events)})
            events.extend(answer.get("events", []))
            if len(events) >= limit or not answer.get("next"):
                return events[:limit]
            request["after"] = answer["next"]
        return events

    # -- two-factor authentication

    def two_factor_status(self, user: str) -> dict:
        return self.call({"type": "two_factor_status", "user": user})

    def enroll_begin(self, user: str, password: str | None = None,
                     code: str | None = None) -> dict:
        """A pending enrollment: ``secret``, ``setup_key``, ``uri``
        (otpauth, for the QR code), ``expires``..."""
        return self.call({"type": "enroll_begin", "user": user,
                          "proof": _proof(password, code)})

    def enroll_confirm(self, user: str, code: str) -> list[str]:
        """Turns 2FA on; the recovery codes, to show once."""
        return self.call({"type": "enroll_confirm", "user": user, "code": code})["codes"]

    def recovery_codes_left(self, user: str) -> int:
        return self.call({"type": "recovery_codes", "user": user})["left"]

    def regenerate_recovery_codes(self, user: str, password: str | None = None,
                                  code: str | None = None) -> list[str]:
        """A new set (the old one stops working); to show once."""
        return self.call({"type": "recovery_codes", "user": user, "regenerate": True,
                          "proof": _proof(password, code)})["codes"]

    def disable_two_factor(self, user: str, password: str | None = None,
                           code: str | None = None, force: bool = False) -> None:
        """``ConfirmationNeeded`` when the policy requires 2FA of ``user``
        and ``force`` is not set (its message says what happens next)."""
        self.call({"type": "two_factor_disable", "users": [user],
                   "proof": _proof(password, code), "force": force})

    # -- passwords

    def reset_token_create(self, user: str) -> dict:
        """``{"token": ..., "expires": ...}``: a single-use reset token."""
        return self.call({"type": "reset_token_create", "user": user})

    def password_reset(self, user: str, token: str, new_password: str) -> None:
        """``Invalid`` (message says why) for a refused new password,
        ``Refused`` for a wrong, used or expired token."""
        self.call({"type": "password_reset", "user": user, "token": token,
                   "new": new_password})

    def password_change(self, user: str, new_password: str, current: str | None = None,
                        sign_out_others: bool = False) -> None:
        self.call({"type": "password_change", "user": user, "current": current,
                   "new": new_password, "sign_out_others": sign_out_others})

    def _all_pages(self, request: dict, key: str) -> list[dict]:
        rows = []
        for _ in range(MAX_PAGES):
            answer = self.call(request)
            rows.extend(answer.get(key, []))
            if not answer.get("next"):
                return rows
            request = {**request, "after": answer["next"]}
        return rows
