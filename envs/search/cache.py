"""A persistent search cache (SQLite) and the backend wrapper that uses it.

Modes (:class:`CacheMode`):

- ``off``: every query goes to the backend; nothing is read or written.
- ``read-write``: a hit is served from the cache; a miss asks the backend and records the answer
  (errors are never recorded, so a later run retries them).
- ``replay-only``: a hit is served; a miss is a :class:`~arpo_env.envs.search.base.SearchError`. A run replayed
  against a filled cache therefore sees exactly the recorded world, and never touches the network.

Key: ``(backend name, normalised query, k)``. A lookup for ``k`` is also answered by a record made with a
larger ``k`` (its first ``k`` hits). Values are the hit lists as JSON, so formatting can change without
invalidating the cache.

Concurrency: the database runs in WAL mode with a busy timeout, so several processes (rollout workers)
can read and write one file at once; each thread and each process (after ``os.fork``) opens its own
connection. The cache object is shared, never copied, by env forks (``deepcopy`` returns it as is).

Files (:mod:`arpo_env.envs.sqlite_file`): a ``read_only`` cache (what ``replay-only`` builds) changes
nothing on disk, so a read-only file or folder replays. A damaged file is logged once with its path;
read-write, it is kept aside as ``NAME.corrupt-…`` and the cache starts empty (the run goes on, misses go
to the backend); read-only, each search is an error naming the file. Every cache failure reaches the
agent as a :class:`~arpo_env.envs.search.base.SearchError` naming the file, never as an exception.
"""
from __future__ import annotations

import enum
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from arpo_env.envs.search.base import Hit, SearchBackend, SearchError, normalize_query
from arpo_env.envs.sqlite_file import CorruptRecord, SQLiteFile, SQLiteFileError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_cache (
    backend TEXT NOT NULL,
    query   TEXT NOT NULL,
    k       INTEGER NOT NULL,
    hits    TEXT NOT NULL,
    raw_query TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (backend, query, k)
)"""


class CacheMode(str, enum.Enum):
    """How a :class:`CachedBackend` uses its cache (see module docstring)."""

    OFF = "off"
    READ_WRITE = "read-write"
    REPLAY_ONLY = "replay-only"


class SearchCache:
    """A SQLite file of recorded search results, safe for several threads and processes.

    ``read_only``: open an existing file without changing anything (``replay-only``); ``put`` then fails.
    Methods raise :class:`~arpo_env.envs.sqlite_file.SQLiteFileError` (its message names the file)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0, read_only: bool = False):
        self._db = SQLiteFile(path, _SCHEMA, timeout_s=timeout_s, read_only=read_only, what="search cache")
        self.path, self.timeout_s, self.read_only = self._db.path, timeout_s, read_only

    def _connect(self) -> sqlite3.Connection:
        return self._db.connect()

    def get(self, backend: str, query: str, k: int) -> list[Hit] | None:
        """The recorded hits for ``(backend, query)`` made with at least ``k`` results, cut to ``k``."""
        def op(conn: sqlite3.Connection) -> list[Hit] | None:
            row = conn.execute(
                "SELECT hits FROM search_cache WHERE backend=? AND query=? AND k>=? ORDER BY k LIMIT 1",
                (backend, normalize_query(query), k)).fetchone()
            if row is None:
                return None
            try:
                return [Hit.from_dict(d) for d in json.loads(row[0])][:k]
            except (ValueError, TypeError, AttributeError) as exc:
                raise CorruptRecord(f"the record of {query!r} does not decode ({exc})") from None
        return self._db.run(op)

    def put(self, backend: str, query: str, k: int, hits: list[Hit]) -> None:
        """Record (or replace) the hits of a query."""
        row = (backend, normalize_query(query), k, json.dumps([h.to_dict() for h in hits], ensure_ascii=False),
               query, time.time())
        self._db.run(lambda conn: conn.execute("INSERT OR REPLACE INTO search_cache VALUES (?, ?, ?, ?, ?, ?)", row))

    def __len__(self) -> int:
        return int(self._db.run(lambda conn: conn.execute("SELECT COUNT(*) FROM search_cache").fetchone()[0]))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._db.close()

    def __deepcopy__(self, memo: dict) -> SearchCache:
        return self  # a handle on a shared file: forks share it

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "timeout_s": self.timeout_s, "read_only": self.read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        SearchCache.__init__(self, state["path"], timeout_s=state["timeout_s"],
                             read_only=state.get("read_only", False))


class CachedBackend:
    """Puts a :class:`SearchCache` in front of a backend; itself a :class:`SearchBackend`.

    ``backend`` may be ``None`` for a pure replay of recorded results (``backend_name`` then names the
    records to read, and the mode must be ``replay-only``). Counts ``hits``/``misses`` for reports.
    """

    def __init__(self, backend: SearchBackend | None, cache: SearchCache | None,
                 mode: str | CacheMode = CacheMode.READ_WRITE, *, backend_name: str | None = None):
        self.mode = CacheMode(mode)
        if backend is None and self.mode is not CacheMode.REPLAY_ONLY:
            raise ValueError("a CachedBackend without a backend can only replay (mode='replay-only')")
        if cache is None and self.mode is not CacheMode.OFF:
            raise ValueError(f"cache mode {self.mode.value!r} needs a SearchCache")
        self.backend, self.cache = backend, cache
        self.name = backend_name or (backend.name if backend is not None else "")
        if not self.name:
            raise ValueError("backend_name is required when there is no backend")
        self.hits = self.misses = 0

    def search(self, query: str, k: int) -> list[Hit]:
        if self.mode is not CacheMode.OFF:
            assert self.cache is not None  # __init__ requires a cache unless the mode is off
            try:
                found = self.cache.get(self.name, query, k)
            except SQLiteFileError as exc:
                raise SearchError(f"the search cache failed: {exc}") from None
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            if self.mode is CacheMode.REPLAY_ONLY:
                raise SearchError(f"the query {query!r} is not in the search cache {self.cache.path} and the "
                                  "cache is replay-only (no live search in this run)")
        if self.backend is None:
            raise SearchError(f"the query {query!r} is not in the search cache and there is no backend")
        results = self.backend.search(query, k)
        if self.mode is CacheMode.READ_WRITE and self.cache is not None:
            try:
                self.cache.put(self.name, query, k, results)
            except SQLiteFileError as exc:  # the answer is good; only its record is lost
                log.warning("not recorded in the search cache: %s", exc)
        return results

    def __deepcopy__(self, memo: dict) -> CachedBackend:
        return self  # shared by forks: the world siblings see is one


def import_arpo_cache(path: str | Path, cache: SearchCache, *, backend_name: str = "arpo-bing",
                      k: int = 10) -> int:
    """Load ARPO's recorded Bing cache (``{query: "Page 1: … Page 2: …"}``) into ``cache`` as records of
    ``backend_name``, so ``replay-only`` runs can answer those queries offline. Returns the count."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    from arpo_env.envs.search.base import parse_pages
    n = 0
    for query, text in data.items():
        if isinstance(query, str) and isinstance(text, str):
            cache.put(backend_name, query, k, parse_pages(text)[:k])
            n += 1
    return n
