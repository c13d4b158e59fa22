"""Host side of the worker's framing (4-byte length + JSON, fds by ``SCM_RIGHTS``), with deadlines and
the sender's credentials (``SCM_CREDENTIALS``: the pid in the host's pid namespace, whatever namespace
the sender lives in)."""
from __future__ import annotations

import json
import select
import socket
import struct
import time
from typing import Any

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class ChannelClosed(EOFError):
    """The other end closed the channel (the process died or was killed)."""


class ChannelTimeout(TimeoutError):
    """No complete message before the deadline."""


def send(sock: socket.socket, obj: Any, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(obj).encode()
    msg = struct.pack(">I", len(data)) + data
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    try:
        sent = sock.sendmsg([msg], anc)
        if sent < len(msg):
            sock.sendall(msg[sent:])
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise ChannelClosed(str(exc)) from exc


def _wait(sock: socket.socket, deadline: float | None) -> None:
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ChannelTimeout("no answer before the deadline")
        r, _, _ = select.select([sock], [], [], left)
        if r:
            return


def recv(sock: socket.socket, timeout: float | None = None) -> tuple[dict, int | None]:
    """One message and the sender's host pid (when ``SO_PASSCRED`` is set on ``sock``).

    Raises :class:`ChannelTimeout` (the stream is then mid-message: close it) or :class:`ChannelClosed`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pid = None
    head = b""
    while len(head) < 4:
        _wait(sock, deadline)
        try:
            chunk, anc, _, _ = sock.recvmsg(4 - len(head), socket.CMSG_SPACE(12))
        except ConnectionResetError as exc:
            raise ChannelClosed(str(exc)) from exc
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS and len(payload) >= 12:
                pid = struct.unpack("3i", payload[:12])[0]
        if not chunk:
            raise ChannelClosed("the worker closed its channel")
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = bytearray()
    while len(body) < n:
        _wait(sock, deadline)
        chunk = sock.recv(min(n - len(body), 1 << 20))
        if not chunk:
            raise ChannelClosed("the worker closed its channel mid-message")
        body += chunk
    return json.loads(body), pid


def pair() -> tuple[socket.socket, socket.socket]:
    """(host end with ``SO_PASSCRED``, worker end) of a new UNIX stream socketpair."""
    host, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    host.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
    return host, worker
