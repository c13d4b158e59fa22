"""Offline pages: a SQLite page store with record/replay, and the bundled corpus served as pages.

- :class:`PageStore`: saved pages (URL -> title, text, content type), a SQLite file in WAL mode, safe with
  several processes. :meth:`PageStore.import_dir` loads a directory of saved ``.html``/``.txt`` files.
  Opened ``read_only`` (what a ``replay-only`` store gets) it changes nothing on disk; a damaged file is
  logged once with its path and, read-write, kept aside and started afresh (:mod:`arpo_env.envs.sqlite_file`).
- :class:`StoreFetcher`: a :class:`~arpo_env.envs.browse.fetch.Fetcher` in front of a store with the search cache's
  modes: ``replay-only`` (default; a missing page is an error, nothing touches the network),
  ``read-write`` (a miss is fetched live and recorded), ``off`` (always live). A store failure is a
  :class:`~arpo_env.envs.browse.page.FetchError` naming the file (a failed record is logged, the page kept).
- :class:`CorpusPages`: the bundled Wikipedia passages as pages at their ``en.wikipedia.org`` URLs, so
  search results can be opened offline. Several passages with one title are joined.

URLs are compared after :func:`normalize_url` (scheme and host lower-cased, fragment dropped, a trailing
slash on the path ignored).
"""
from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from arpo_env.envs.browse.page import Fetcher, FetchError, Page
from arpo_env.envs.search.cache import CacheMode
from arpo_env.envs.sqlite_file import SQLiteFile, SQLiteFileError

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """The lookup form of a URL (see module docstring)."""
    p = urlsplit(url.strip())
    path = unquote(p.path).rstrip("/") or "/"
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), path, p.query, ""))


_SCHEMA = """CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY, final_url TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,
    content_type TEXT NOT NULL, status INTEGER NOT NULL, truncated INTEGER NOT NULL, saved REAL NOT NULL)"""


class PageStore:
    """Saved pages in one SQLite file (see module docstring)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0, read_only: bool = False):
        self._db = SQLiteFile(path, _SCHEMA, timeout_s=timeout_s, read_only=read_only, what="page store")
        self.path, self.timeout_s, self.read_only = self._db.path, timeout_s, read_only

    def _connect(self) -> sqlite3.Connection:
        return self._db.connect()

    def get(self, url: str) -> Page | None:
        key = (normalize_url(url),)
        row = self._db.run(lambda conn: conn.execute(
            "SELECT final_url, title, text, content_type, status, truncated FROM pages WHERE url=?", key).fetchone())
        if row is None:
            return None
        return Page(url=row[0], title=row[1], text=row[2], content_type=row[3], status=row[4], truncated=bool(row[5]))

    def put(self, url: str, page: Page) -> None:
        row = (normalize_url(url), page.url or url, page.title, page.text, page.content_type, page.status,
               int(page.truncated), time.time())
        self._db.run(lambda conn: conn.execute("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row))

    def import_dir(self, directory: str | Path, base_url: str) -> int:
        """Store every ``.html``/``.htm``/``.txt``/``.md`` file under ``directory`` at ``base_url`` + its
        relative path (``index.html`` also answers for its folder). Returns the number of pages."""
        from arpo_env.envs.browse.extract import extract_page
        root, n = Path(directory), 0
        kinds = {".html": "text/html", ".htm": "text/html", ".txt": "text/plain", ".md": "text/markdown"}
        for f in sorted(root.rglob("*")):
            media = kinds.get(f.suffix.lower())
            if not f.is_file() or media is None:
                continue
            rel = f.relative_to(root).as_posix()
            url = base_url.rstrip("/") + "/" + rel
            page = extract_page(f.read_bytes(), url=url, media_type=media)
            self.put(url, page)
            if f.name in ("index.html", "index.htm"):
                self.put(url.rsplit("/", 1)[0] + "/", page)
            n += 1
        return n

    def __len__(self) -> int:
        return int(self._db.run(lambda conn: conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0]))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._db.close()

    def __deepcopy__(self, memo: dict) -> PageStore:
        return self


class StoreFetcher:
    """A fetcher that reads (and in ``read-write`` mode records) pages in a :class:`PageStore`."""

    def __init__(self, store: PageStore, live: Fetcher | None = None, mode: str | CacheMode = "replay-only"):
        self.store, self.live, self.mode = store, live, CacheMode(mode)
        if self.mode is not CacheMode.REPLAY_ONLY and live is None:
            raise ValueError(f"page store mode {self.mode.value!r} needs a live fetcher")

    def fetch(self, url: str) -> Page:
        if self.mode is not CacheMode.OFF:
            try:
                page = self.store.get(url)
            except SQLiteFileError as exc:
                raise FetchError(f"the page store failed: {exc}") from None
            if page is not None:
                return page
            if self.mode is CacheMode.REPLAY_ONLY:
                raise FetchError(f"{url} is not in the offline page store {self.store.path} (replay-only: no "
                                 "live fetching)")
        if self.live is None:
            raise FetchError(f"{url} is not in the offline page store and no live fetcher is configured")
        page = self.live.fetch(url)
        if self.mode is CacheMode.READ_WRITE:
            try:
                self.store.put(url, page)
            except SQLiteFileError as exc:  # the page is good; only its record is lost
                log.warning("not recorded in the page store: %s", exc)
        return page

    def __deepcopy__(self, memo: dict) -> StoreFetcher:
        return self


class CorpusPages:
    """Corpus passages (with a ``url``) served as pages; unknown URLs are a :class:`FetchError`."""

    def __init__(self, passages: Iterable) -> None:
        self._pages: dict[str, Page] = {}
        for p in passages:
            if not p.url:
                continue
            key = normalize_url(p.url)
            page = self._pages.get(key)
            if page is None:
                self._pages[key] = Page(url=p.url, title=p.title, text=p.text)
            elif p.text not in page.text:
                page.text += "\n\n" + p.text

    def fetch(self, url: str) -> Page:
        page = self._pages.get(normalize_url(url))
        if page is None:
            raise FetchError(f"{url} is not in the offline corpus (offline browsing serves the corpus's "
                             "en.wikipedia.org pages only; search first to find URLs)")
        return Page(url=page.url, title=page.title, text=page.text)

    def __len__(self) -> int:
        return len(self._pages)

    def __deepcopy__(self, memo: dict) -> CorpusPages:
        return self
