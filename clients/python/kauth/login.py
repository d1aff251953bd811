"""What a login step tells the panel: a code is needed, or the login ended."""

from dataclasses import dataclass, field

from . import errors
from .wire import Connection

# Most frames one step may relay before the client gives up (kauthd sends
# a handful of messages at most; this bounds a confused conversation).
MAX_FRAMES = 64


@dataclass(frozen=True)
class Message:
    """A text kauthd wants shown: ``style`` is ``info`` or ``error``."""

    style: str
    text: str


@dataclass(frozen=True)
class LoginStep:
    """Either ``needs_code`` (show ``prompt``, then call ``continue_login``
    with ``token`` and the answer) or finished with ``outcome``
    (``success``, ``denied`` or ``locked``). ``messages`` are to be shown
    in both cases."""

    messages: list[Message] = field(default_factory=list)
    token: str | None = None
    prompt: str | None = None
    echo: bool = False
    outcome: str | None = None

    @property
    def needs_code(self) -> bool:
        return self.token is not None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    def __repr__(self) -> str:
        # The token is a credential: never in a repr that may reach a log.
        state = "needs_code" if self.needs_code else f"outcome={self.outcome!r}"
        return f"LoginStep({state}, messages={self.messages!r})"


def relay(conn: Connection, answer: dict) -> LoginStep:
    """Follows the conversation from ``answer`` until kauthd parks it at a
    prompt (with a continuation token) or finishes it."""
    messages = []
    for _ in range(MAX_FRAMES):
        kind = answer.get("type")
        if kind == "message":
            messages.append(Message(str(answer.get("style", "info")), str(answer.get("text", ""))))
            answer = conn.call({"type": "continue"})
        elif kind == "prompt":
            token = answer.get("continuation")
            if not token and answer.get("echo"):
                # A question with echo on and no token asks for no secret:
                # kauthd's only one is "Press Enter once you have saved
                # them" after the recovery codes of an enrollment at login
                # (the messages before it), and it ignores the answer.
                answer = conn.call({"type": "answer", "text": ""})
                continue
            if not token:
                # Fail closed: a question this client cannot park.
                raise errors.ProtocolError(
                    "kauthd asked a question without a continuation token "
                    f"({answer.get('message')!r}); begin the login with resumable")
            return LoginStep(messages=messages, token=str(token),
                             prompt=str(answer.get("message", "")),
                             echo=bool(answer.get("echo", False)))
        elif kind == "finished":
            return LoginStep(messages=messages, outcome=str(answer.get("outcome")))
        else:
            raise errors.ProtocolError(f"unexpected answer in a login: {kind!r}")
    raise errors.ProtocolError(f"the login went on for more than {MAX_FRAMES} frames")
