"""One SQLite file shared by threads and processes (the search cache, the page store).

Each thread of each process gets its own connection (a connection must not cross a ``fork()`` or be used by
two threads at once).

- **Read-write** (the default): the folder is created; connections run in autocommit mode with WAL
  journaling, ``synchronous=NORMAL`` (a crash never corrupts the file; a power loss may drop the last
  writes) and a busy timeout, so concurrent writers wait instead of failing. The schema statements run on
  every new connection (use ``CREATE … IF NOT EXISTS``).
- **Read-only** (``read_only=True``, the replay-only modes): nothing is created or changed. The file must
  exist; it is opened with the URI ``mode=ro`` (no WAL pragma, no schema statement, ``query_only``). When
  the file or its folder is not writable (by permission or by mode bits, so a folder made read-only with
  ``chmod a-w`` counts as read-only even for root), it is opened ``immutable=1``: SQLite then needs no
  ``-wal``/``-shm`` files and takes no locks (the file must not change while it is read). A writable
  folder with ``mode=ro`` lets SQLite create (and leave) its ``-wal``/``-shm`` side files, as it does for any
  reader of a WAL database.

Damage (SQLite reports the file corrupt or not a database, a text column is not UTF-8, or the owner's
code raises :class:`CorruptRecord`) is logged once per event with the file's path and what to do, then:

- read-write: a copy of the damaged bytes is kept at ``NAME.corrupt-<time>-<pid>`` and the file is reset
  *in place* to an empty database (SQLite's backup API writes an empty schema over it, with the usual
  locks), and the failed statement is retried. In place, not renamed: connections of other threads and
  processes keep working on the one file (a rename would leave them on the moved inode, and SQLite's
  close of such a connection deletes ``NAME-wal`` by name, the fresh file's). Only when the reset itself
  fails is the file renamed aside and a new one created.
- read-only: nothing is changed; this and every later call raise :class:`CorruptFileError`.

Every SQLite error leaves as a :class:`SQLiteFileError` whose message starts with the file's path.

Not covered: damage SQLite cannot see (a flipped byte inside a value that still decodes); ``PRAGMA
quick_check`` is not run on open (it reads the whole file), so damage is found where it is read.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

log = logging.getLogger(__name__)
T = TypeVar("T")

_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


class SQLiteFileError(RuntimeError):
    """A failure of one SQLite file; the message starts with its path."""

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class CorruptFileError(SQLiteFileError):
    """The file is damaged and (opened read-only) cannot be repaired here."""


class CorruptRecord(Exception):
    """Raised by an operation passed to :meth:`SQLiteFile.run` when a stored value does not decode."""


def is_corrupt(exc: BaseException) -> bool:
    """Whether a sqlite3 error means the file is damaged (not a lock, a full disk or a bad statement)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if isinstance(code, int) and code & 0xFF in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "could not decode" in text


def _no_write_bits(path: Path) -> bool:
    try:
        return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222
    except OSError:
        return True


class SQLiteFile:
    """Per-thread, per-process connections to the SQLite file at ``path`` (see module docstring).

    ``what`` names the file in messages (``search cache``, ``page store``)."""

    def __init__(self, path: str | Path, schema: str, *, timeout_s: float = 30.0, read_only: bool = False,
                 what: str = "SQLite file"):
        self.path = Path(path).expanduser()
        self.schema, self.timeout_s, self.read_only, self.what = schema, timeout_s, read_only, what
        self.corrupt: str | None = None
        """Read-only: what SQLite said when it found the file damaged (None: not found damaged)."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._resets = 0
        if read_only:
            if not self.path.is_file():
                raise SQLiteFileError(self.path, f"no such {what}: a replay-only {what} must exist (record it "
                                      "first in read-write mode, or fix the path)")
            wal = self.path.with_name(self.path.name + "-wal")
            has_wal = wal.is_file() and wal.stat().st_size > 0
            immutable = not has_wal and (_no_write_bits(self.path) or _no_write_bits(self.path.parent))
            self._uri = f"file:{quote(str(self.path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SQLiteFileError(self.path, f"cannot create its folder: {exc}") from None
        try:  # fail early on an unusable path; a damaged file is found (and, read-write, reset) here
            self.run(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())
        except CorruptFileError:
            pass  # read-only: reported; every use raises it (an error observation, not a failed constructor)

    def _open(self) -> sqlite3.Connection:
        if self.read_only:
            conn = sqlite3.connect(self._uri, uri=True, timeout=self.timeout_s, isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(self.schema)
        return conn

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a ``fork()``). Raw sqlite3 errors
        escape from here; :meth:`run` is the checked way to use the file."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = self._open()
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op(connection)``; damage is handled as the module docstring says (read-write: reset, then
        ``op`` once more), any other sqlite3 error becomes a :class:`SQLiteFileError` naming the file."""
        for attempt in (0, 1):
            if self.corrupt is not None:
                raise CorruptFileError(self.path, self._corrupt_message(self.corrupt))
            resets = self._resets
            try:
                return op(self.connect())
            except (sqlite3.Error, CorruptRecord) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, sqlite3.Error) and not is_corrupt(exc):
                    raise SQLiteFileError(self.path, detail) from None
                if attempt:
                    raise SQLiteFileError(self.path, f"still failing after it was reset: {detail}") from None
                self._damaged(detail, resets)
        raise AssertionError("unreachable")

    def _corrupt_message(self, detail: str) -> str:
        return (f"the {self.what} is damaged ({detail}) and is opened read-only, so it cannot be replayed: "
                f"restore it from a copy, or delete it and record it again in read-write mode")

    def _damaged(self, detail: str, resets_seen: int) -> None:
        with self._lock:
            if self.read_only:
                if self.corrupt is None:
                    self.corrupt = detail
                    log.warning("%s: %s", self.path, self._corrupt_message(detail))
                raise CorruptFileError(self.path, self._corrupt_message(detail))
            if resets_seen != self._resets:
                return  # another thread reset it meanwhile: just retry
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            try:
                how = self._reset(aside)
            except OSError as exc:
                raise SQLiteFileError(self.path, f"the {self.what} is damaged ({detail}) and could not be "
                                      f"reset ({exc}): delete it to start afresh") from None
            self._resets += 1
            log.warning("%s: the %s is damaged (%s); %s, and it now starts empty (its records are lost: "
                        "look at the copy, or restore an older one, if they matter)", self.path, self.what,
                        detail, how)

    def _reset(self, aside: Path) -> str:
        kept = []
        for src, dst in ((self.path, aside), (Path(f"{self.path}-wal"), Path(f"{aside}-wal"))):
            try:
                if src.is_file() and (src == self.path or src.stat().st_size > 0):
                    shutil.copyfile(src, dst)
                    kept.append(str(dst))
            except OSError:
                pass
        how = f"a copy of the damaged file is kept at {' and '.join(kept)}" if kept else "no copy could be kept"
        self.close()  # this thread reconnects to the reset file (its schema statements run again)
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None)
            try:
                try:
                    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                except sqlite3.Error:
                    page_size = 4096
                empty = sqlite3.connect(":memory:", isolation_level=None)
                try:
                    empty.execute(f"PRAGMA page_size={page_size}")
                    empty.executescript(self.schema)
                    empty.backup(conn)
                finally:
                    empty.close()
            finally:
                conn.close()
            return how
        except sqlite3.Error:  # the reset failed: move the file aside and start a new one
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
            return f"it was moved to {aside}"

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None
