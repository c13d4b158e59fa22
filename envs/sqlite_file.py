"""One SQLite file shared by threads and processes (the search cache, the page store).

Each thread of each process gets its own connection (a connection must not cross a ``fork()`` or be used by
two threads at once), opened in autocommit mode with WAL journaling, ``synchronous=NORMAL`` (a crash never
corrupts the file; a power loss may drop the last writes) and a busy timeout, so concurrent writers wait
instead of failing. The schema statements run on every new connection (use ``CREATE … IF NOT EXISTS``).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path


class SQLiteFile:
    """Per-thread, per-process connections to the SQLite file at ``path`` (created with its folder)."""

    def __init__(self, path: str | Path, schema: str, *, timeout_s: float = 30.0):
        self.path = Path(path).expanduser()
        self.schema = schema
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connect()  # fail early on an unusable path

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a ``fork()``)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(self.schema)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None
