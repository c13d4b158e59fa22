"""The ``search`` tool and the factory that assembles a backend from plain options.

``<search>query</search>`` returns ARPO-formatted results (``Page i: title: snippet`` lines). The tool
keeps the episode's query history (plain data: forks copy it) and shares its backend, whose cache handle
is the one thing forked siblings must have in common.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arpo_env.envs.search.base import Hit, SearchBackend, SearchError, format_hits
from arpo_env.envs.search.cache import CachedBackend, CacheMode, SearchCache
from arpo_env.tools import ToolResult

MAX_QUERY_CHARS = 1_000


@dataclass
class SearchConfig:
    """How the search tool finds and shows results (every field is a keyword of the search envs)."""

    backend: str = "bm25"
    """``bm25`` (offline corpus), ``ddgs`` (live web) or ``replay`` (recorded results only)."""
    corpus: str | None = None
    """A ``{"id","title","text"}`` JSON-lines corpus for ``bm25`` (None: the bundled corpus)."""
    top_k: int = 5
    """Results per query."""
    snippet_chars: int = 500
    """Each snippet is cut to this many characters (word boundary, ``…``)."""
    show_titles: bool = True
    """Print ``Page i: title: snippet`` (else ``Page i: snippet``, ARPO's Bing layout)."""
    show_urls: bool = False
    """Append ``(url)`` to each line where the backend has one (useful with a browse tool)."""
    cache_path: str | None = None
    """SQLite cache file (None: ``<cache dir>/search_cache.sqlite`` when a cache mode needs one)."""
    cache_mode: str | None = None
    """``off``, ``read-write`` or ``replay-only``; None: ``read-write`` for ``ddgs``, ``off`` for ``bm25``,
    ``replay-only`` for ``replay``."""
    replay_backend_name: str | None = None
    """For ``replay``: whose records to read (e.g. ``ddgs`` or ``arpo-bing``; default ``ddgs``)."""
    ddgs: dict[str, Any] = field(default_factory=dict)
    """Options of :class:`arpo_env.envs.search.ddgs_backend.DDGSConfig` (timeouts, retries, rate limit, engine)."""

    def __post_init__(self) -> None:
        if self.backend not in ("bm25", "ddgs", "replay"):
            raise ValueError(f"search backend must be 'bm25', 'ddgs' or 'replay', got {self.backend!r}")
        if self.top_k < 1 or self.snippet_chars < 20:
            raise ValueError("top_k must be >= 1 and snippet_chars >= 20")
        if self.cache_mode is None:
            self.cache_mode = {"bm25": "off", "ddgs": "read-write", "replay": "replay-only"}[self.backend]
        self.cache_mode = CacheMode(self.cache_mode).value

    @property
    def live(self) -> bool:
        """True when results may come from the live web (the env is then not deterministic)."""
        return self.backend == "ddgs" and self.cache_mode != CacheMode.REPLAY_ONLY.value


_BM25: dict[tuple, Any] = {}
_BM25_LOCK = threading.Lock()


def shared_bm25(corpus: str | None = None) -> Any:
    """One :class:`~arpo_env.envs.search.bm25.BM25Backend` per corpus file per process (envs share the index)."""
    from arpo_env.envs.search.bm25 import BM25Backend
    from arpo_env.envs.search.corpus import BUNDLED_CORPUS
    path = Path(corpus).expanduser().resolve() if corpus else BUNDLED_CORPUS
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _BM25_LOCK:
        if key not in _BM25:
            _BM25[key] = BM25Backend(path)
        return _BM25[key]


def build_backend(config: SearchConfig, backend: SearchBackend | None = None) -> SearchBackend:
    """The backend described by ``config`` (or the given ``backend``), behind a cache when the mode asks."""
    from arpo_env.envs.search.bm25 import cache_dir
    if backend is None and config.backend == "bm25":
        backend = shared_bm25(config.corpus)
    elif backend is None and config.backend == "ddgs":
        from arpo_env.envs.search.ddgs_backend import DDGSBackend, DDGSConfig
        backend = DDGSBackend(DDGSConfig(**config.ddgs))
    mode = CacheMode(config.cache_mode)
    if mode is CacheMode.OFF:
        if backend is None:
            raise ValueError("the replay backend needs a cache: set cache_mode='replay-only'")
        return backend
    cache = SearchCache(config.cache_path or cache_dir() / "search_cache.sqlite",
                        read_only=mode is CacheMode.REPLAY_ONLY)
    name = (config.replay_backend_name or "ddgs") if backend is None else None
    return CachedBackend(backend, cache, mode, backend_name=name)


class SearchTool:
    """The ``search`` tool: one query in, ARPO-formatted results out. Never raises."""

    name = "search"

    def __init__(self, backend: SearchBackend, *, top_k: int = 5, snippet_chars: int = 500,
                 show_titles: bool = True, show_urls: bool = False, example: str = "Lilu mythology demon",
                 source: str = "a Wikipedia passage corpus"):
        self.backend = backend
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.show_titles, self.show_urls = show_titles, show_urls
        self.example = example
        self.history: list[str] = []
        self.description = (f"searches {source} "
                            f"and returns the top {top_k} results as 'Page i: title: snippet' lines, "
                            "e.g. <search>capital of Australia</search>.")

    def __call__(self, args: str) -> ToolResult:
        query = " ".join(args.split())
        if not query:
            return ToolResult("Error: the search query is empty; write <search>your query</search>.", error=True)
        if len(query) > MAX_QUERY_CHARS:
            return ToolResult(f"Error: the query is {len(query)} characters long; the limit is "
                              f"{MAX_QUERY_CHARS}.", error=True)
        self.history.append(query)
        try:
            hits: list[Hit] = self.backend.search(query, self.top_k)
        except SearchError as exc:
            return ToolResult(f"Error: {exc}", error=True, metadata={"query": query})
        text = format_hits(hits, snippet_chars=self.snippet_chars, show_titles=self.show_titles,
                           show_urls=self.show_urls)
        return ToolResult(text, metadata={"query": query, "n_results": len(hits),
                                          "ids": [h.id for h in hits], "titles": [h.title for h in hits],
                                          "urls": [h.url for h in hits]})

    def reset(self) -> None:
        """Forget the episode's history (called by the env on reset)."""
        self.history = []

    def fork(self) -> SearchTool:
        """Same backend (and cache), an independent copy of the history."""
        child = copy.copy(self)
        child.history = list(self.history)
        return child
