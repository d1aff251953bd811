"""A client of kauthd for panels (Python 3.11, standard library only).

    import kauth
    k = kauth.Client("/run/kauthd/kauthd.sock")
    step = k.begin_login("ann", password, service="kpanel", rhost="203.0.113.9")

See README.md beside this package for a complete login.
"""

from .client import DEFAULT_SOCKET, Client
from .errors import (
    AlreadyExists,
    BadRequest,
    Busy,
    ConfirmationNeeded,
    Forbidden,
    Internal,
    Invalid,
    KauthError,
    NotFound,
    NotKauthd,
    ProtocolError,
    Refused,
    TooLarge,
    UnsupportedVersion,
)
from .login import LoginStep, Message

__all__ = [
    "DEFAULT_SOCKET", "Client", "LoginStep", "Message",
    "KauthError", "NotKauthd", "ProtocolError", "UnsupportedVersion", "BadRequest",
    "TooLarge", "Forbidden", "NotFound", "AlreadyExists", "Invalid", "Refused",
    "Busy", "Internal", "ConfirmationNeeded",
]
