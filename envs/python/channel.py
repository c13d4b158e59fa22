"""Host side of the worker's framing (4-byte length + JSON, fds by ``SCM_RIGHTS``), with deadlines and
the sender's credentials (``SCM_CREDENTIALS``: the pid in the host's pid namespace, whatever namespace
the sender lives in).

A reply is trusted only when :func:`check_reply` passes: it answers the request (same ``id``) and every
byte of it came from the session's own process (the pid the session greeted with). Anything else, e.g.
bytes a process forked by the agent's code wrote on an inherited channel, is a :class:`ChannelCorrupt`
or a mismatch, never a result.
"""
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


class ChannelCorrupt(ValueError):
    """The stream holds something that is not a message of the worker's (bad length or JSON, or bytes of
    two processes in one message); it cannot be resynchronised: close it."""


MAX_MESSAGE = 64 << 20
"""Largest message accepted (replies are a few KiB: output is capped by ``max_output_chars``)."""


def _sender(anc: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS and len(payload) >= 12:
            return int(struct.unpack("3i", payload[:12])[0])
    return None


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
    senders: set[int | None] = set()
    head = b""
    while len(head) < 4:
        chunk, pid = _chunk(sock, 4 - len(head), deadline)
        if not chunk:
            raise ChannelClosed("the worker closed its channel")
        senders.add(pid)
        head += chunk
    (n,) = struct.unpack(">I", head)
    if n > MAX_MESSAGE:
        raise ChannelCorrupt(f"a message of {n} bytes announced (more than {MAX_MESSAGE}): not the worker's framing")
    body = bytearray()
    while len(body) < n:
        chunk, pid = _chunk(sock, min(n - len(body), 1 << 20), deadline)
        if not chunk:
            raise ChannelClosed("the worker closed its channel mid-message")
        senders.add(pid)
        body += chunk
    if len(senders) > 1:
        raise ChannelCorrupt(f"one message holds bytes of several processes (pids {sorted(map(str, senders))})")
    try:
        msg = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelCorrupt(f"a message is not JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise ChannelCorrupt(f"a message is a JSON {type(msg).__name__}, not an object")
    return msg, senders.pop()


def _chunk(sock: socket.socket, size: int, deadline: float | None) -> tuple[bytes, int | None]:
    """Up to ``size`` bytes and their sender (the kernel never joins bytes of two senders in one read)."""
    _wait(sock, deadline)
    try:
        chunk, anc, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(12))
    except ConnectionResetError as exc:
        raise ChannelClosed(str(exc)) from exc
    return chunk, _sender(anc)


def check_reply(reply: dict, sender: int | None, request_id: int, session_pid: int | None) -> str | None:
    """Why ``reply`` (received from ``sender``) is not the answer to request ``request_id`` of the session
    whose process is ``session_pid``, or ``None`` when it is. ``session_pid=None``: the pid is unknown and
    only the id is checked."""
    if session_pid is not None and sender != session_pid:
        return (f"a reply came from process {sender}, not from the session's process {session_pid} "
                "(a process forked by the session's code wrote on its channel?)")
    if reply.get("id") != request_id:
        return f"the reply answers request {reply.get('id')!r}, not request {request_id} (a stale or forged reply)"
    return None


def pair() -> tuple[socket.socket, socket.socket]:
    """(host end with ``SO_PASSCRED``, worker end) of a new UNIX stream socketpair."""
    host, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    host.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
    return host, worker
