"""Exceptions: one class per kauthd error code, and two of the client's own.

Every error kauthd sends (``{"type":"error","code":...,"message":...}``)
is raised as the class named for its code; ``message`` is written for
people and never holds a secret, so a panel may show it.
"""


class KauthError(Exception):
    """Anything that went wrong talking to kauthd."""

    code = "error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotKauthd(KauthError):
    """The socket's listener is not kauthd (its uid is not an allowed one).
    Nothing was sent to it."""

    code = "not_kauthd"


class ProtocolError(KauthError):
    """kauthd closed the connection, did not answer in time, or answered
    something this client does not expect."""

    code = "protocol"


class UnsupportedVersion(KauthError):
    code = "unsupported_version"


class BadRequest(KauthError):
    code = "bad_request"


class TooLarge(KauthError):
    code = "too_large"


class Forbidden(KauthError):
    code = "forbidden"


class NotFound(KauthError):
    code = "not_found"


class AlreadyExists(KauthError):
    code = "already_exists"


class Invalid(KauthError):
    code = "invalid"


class Refused(KauthError):
    code = "refused"


class Busy(KauthError):
    code = "busy"


class Internal(KauthError):
    code = "internal"


class ConfirmationNeeded(KauthError):
    code = "confirmation_needed"


_BY_CODE = {
    cls.code: cls
    for cls in (
        UnsupportedVersion,
        BadRequest,
        TooLarge,
        Forbidden,
        NotFound,
        AlreadyExists,
        Invalid,
        Refused,
        Busy,
        Internal,
        ConfirmationNeeded,
    )
}


def from_frame(frame: dict) -> KauthError:
    """The exception for an error frame; an unknown code gives KauthError."""
    code = str(frame.get("code", "error"))
    message = str(frame.get("message") or f"kauthd answered {code}")
    cls = _BY_CODE.get(code, KauthError)
    return cls(message, code)
