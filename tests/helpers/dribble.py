"""A loopback HTTP server that dribbles its response one byte a second, counting what it got out.

It answers one connection at a time: reads the request, then writes the status line and headers one byte
per ``interval`` seconds, waiting for the client between bytes; it stops at the first sign the client hung
up (end of stream or a reset). ``sent`` then holds the bytes it wrote and ``hung_up`` records that the
client closed first. Tests assert on these counts, not on clocks.
"""
from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: " + b"p" * 120 +
        b"\r\nContent-Length: 2\r\n\r\nok")


@dataclass
class Dribbler:
    interval: float = 1.0
    sent: list[int] = field(default_factory=list)
    """Bytes written per connection, appended when it ends."""
    hung_up: list[bool] = field(default_factory=list)
    """Per connection: True when the client closed before the response was out."""

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True, name="dribbler")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        _read_request(conn)
        n, gone = 0, False
        try:
            for byte in HEAD:
                conn.sendall(bytes([byte]))
                n += 1
                readable, _, _ = select.select([conn], [], [], self.interval)  # the pause, cut short by a hang-up
                if readable and conn.recv(1) == b"":
                    gone = True
                    break
        except OSError:  # reset by the client
            gone = True
        self.sent.append(n)
        self.hung_up.append(gone)

    def close(self) -> None:
        self._sock.close()


def _read_request(conn: socket.socket) -> None:
    """Read the request head and its ``Content-Length`` body, so what arrives later means a hang-up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk
