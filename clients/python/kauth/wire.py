"""One connection to kauthd: the listener check, frames, and the hello.

A frame is a 4-byte big-endian length and that many bytes of JSON; kauthd
refuses frames over 64 KiB. Every read and write has a timeout.
"""

import json
import socket
import struct

from . import errors

MAX_FRAME = 65536
PROTOCOL_VERSION = 1


def listener_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end, as the kernel says."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


class Connection:
    """A connected, greeted socket. ``call`` sends one request and returns
    kauthd's answer, raising the error class of an error answer."""

    def __init__(self, path: str, *, server_uids=(0,), timeout: float = 30.0,
                 client_name: str = "kauth-python"):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(path)
            except OSError as e:
                raise errors.ProtocolError(
                    f"cannot connect to kauthd at {path}: {e.strerror or e}; "
                    "is kauthd running, and may this process open its socket?") from e
            uid = listener_uid(self._sock)
            if uid not in server_uids:
                raise errors.NotKauthd(
                    f"the process listening on {path} runs as uid {uid}, not as kauthd "
                    f"(allowed uids: {', '.join(map(str, server_uids))}); nothing was sent")
            answer = self.call({"type": "hello", "version": PROTOCOL_VERSION,
                                "client": client_name})
            if answer.get("type") != "welcome":
                raise errors.ProtocolError(f"kauthd answered the hello with {answer.get('type')!r}")
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, request: dict) -> dict:
        """Sends ``request`` and returns the answer frame (never an error)."""
        self.send(request)
        answer = self.receive()
        if answer.get("type") == "error":
            raise errors.from_frame(answer)
        return answer

    def send(self, request: dict) -> None:
        body = json.dumps(request, separators=(",", ":")).encode()
        if len(body) > MAX_FRAME:
            raise errors.TooLarge(
                f"the request is {len(body)} bytes; kauthd takes at most {MAX_FRAME}")
        try:
            self._sock.sendall(struct.pack(">I", len(body)) + body)
        except OSError as e:
            raise errors.ProtocolError(f"cannot send to kauthd: {e}") from e

    def receive(self) -> dict:
        (length,) = struct.unpack(">I", self._read(4))
        if length > MAX_FRAME:
            raise errors.ProtocolError(f"kauthd sent a frame of {length} bytes, over {MAX_FRAME}")
        try:
            frame = json.loads(self._read(length))
        except ValueError as e:
            raise errors.ProtocolError(f"kauthd sent a frame that is not JSON: {e}") from e
        if not isinstance(frame, dict):
            raise errors.ProtocolError("kauthd sent a frame that is not a JSON object")
        return frame

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            try:
                chunk = self._sock.recv(n - len(data))
            except socket.timeout as e:
                raise errors.ProtocolError("kauthd did not answer in time") from e
            except OSError as e:
                raise errors.ProtocolError(f"cannot read from kauthd: {e}") from e
            if not chunk:
                raise errors.ProtocolError("kauthd closed the connection")
            data += chunk
        return bytes(data)
