"""The wire format between labkit run by a learner and the lab service (root).

One request and one reply per exchange, on a Unix stream socket: a 4-byte big-endian
length, then that many bytes of JSON. File descriptors travel beside a message as
SCM_RIGHTS ancillary data (a connected socket the service opened in a lab host's network
namespace; the caller's terminal for a shell). A reply is ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": "...", "kind": "LabNotRunningError"}``.
"""

from __future__ import annotations

import json
import socket
import struct

#: Where the service listens, unless LABKIT_SERVICE says otherwise.
DEFAULT_SOCKET = "/run/labkit/service.sock"
#: The largest message accepted (a command's output included).
MAX_MESSAGE = 64 * 1024 * 1024
MAX_FDS = 3


class ProtocolError(OSError):
    """The other side closed the connection or sent something that is not a message."""


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is over {MAX_MESSAGE}")
    frame = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame[:4]], fds)
        if sent != 4:
            raise ProtocolError("short write")
        sock.sendall(frame[4:])
    else:
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ProtocolError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket) -> tuple[dict, list[int]]:
    """One message and the file descriptors that came with it (the caller owns them)."""
    head, fds, _flags, _addr = socket.recv_fds(sock, 4, MAX_FDS)
    if not head:
        raise ProtocolError("connection closed")
    if len(head) < 4:
        head += _recv_exact(sock, 4 - len(head))
    (size,) = struct.unpack(">I", head)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes is over {MAX_MESSAGE}")
    try:
        message = json.loads(_recv_exact(sock, size))
    except ValueError as exc:
        raise ProtocolError(f"not a message: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("not a message: expected an object")
    return message, list(fds)
