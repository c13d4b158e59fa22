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

    backend: str = "auto"
    """``auto`` (``hybrid`` when the ``dense`` extra is installed, else ``bm25``), ``bm25``, ``dense``,
    ``hybrid`` (offline corpus), ``remote`` (a Search-R1 retrieval server at ``remote_url``), ``ddgs``
    (live web) or ``replay`` (recorded results only)."""
    corpus: str | None = None
    """A ``{"id","title","text"}`` JSON-lines corpus for the offline backends (None: the bundled corpus)."""
    remote_url: str | None = None
    """For ``remote``: the server's base URL (e.g. ``http://127.0.0.1:8000``); setting it alone selects
    ``remote``."""
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
    remote: dict[str, Any] = field(default_factory=dict)
    """Options of :class:`arpo_env.envs.search.remote.RemoteConfig` (timeouts, retries)."""
    dense: dict[str, Any] = field(default_factory=dict)
    """Options of :class:`arpo_env.envs.search.dense.DenseConfig` (model folder, prefixes, encoder, threads)."""
    hybrid: dict[str, Any] = field(default_factory=dict)
    """Options of :class:`arpo_env.envs.search.hybrid.HybridConfig` (fusion and second-hop weights)."""

    def __post_init__(self) -> None:
        if self.backend == "auto":
            self.backend = "remote" if self.remote_url else default_offline_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"search backend must be one of {', '.join(('auto',) + BACKENDS)}, got {self.backend!r}")
        if self.backend == "remote" and not (self.remote_url or self.remote.get("url")):
            raise ValueError("backend='remote' needs remote_url (the retrieval server, e.g. http://127.0.0.1:8000)")
        if self.top_k < 1 or self.snippet_chars < 20:
            raise ValueError("top_k must be >= 1 and snippet_chars >= 20")
        if self.cache_mode is None:
            self.cache_mode = {"ddgs": "read-write", "replay": "replay-only"}.get(self.backend, "off")
        self.cache_mode = CacheMode(self.cache_mode).value

    @property
    def live(self) -> bool:
        """True when results may come from the live web (the env is then not deterministic)."""
        return self.backend == "ddgs" and self.cache_mode != CacheMode.REPLAY_ONLY.value


BACKENDS = ("bm25", "dense", "hybrid", "remote", "ddgs", "replay")
_SHARED: dict[tuple, Any] = {}
_SHARED_LOCK = threading.RLock()


def default_offline_backend() -> str:
    """``hybrid`` when the dense model is installed (the ``dense`` extra), else ``bm25``."""
    from arpo_env.extras import is_installed
    return "hybrid" if is_installed("dense") else "bm25"


def _shared(kind: str, corpus: str | None, options: dict[str, Any], make: Any) -> Any:
    from arpo_env.envs.search.corpus import BUNDLED_CORPUS
    path = Path(corpus).expanduser().resolve() if corpus else BUNDLED_CORPUS
    stat = path.stat()
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns, repr(sorted(options.items())))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make(path)
        return _SHARED[key]


def shared_bm25(corpus: str | None = None) -> Any:
    """One :class:`~arpo_env.envs.search.bm25.BM25Backend` per corpus file per process (envs share the index)."""
    from arpo_env.envs.search.bm25 import BM25Backend
    return _shared("bm25", corpus, {}, BM25Backend)


def shared_dense(corpus: str | None = None, options: dict[str, Any] | None = None) -> Any:
    """One :class:`~arpo_env.envs.search.dense.DenseBackend` per corpus file and options per process."""
    from arpo_env.envs.search.dense import DenseBackend, DenseConfig
    opts = dict(options or {})
    return _shared("dense", corpus, opts, lambda p: DenseBackend(p, config=DenseConfig(**opts)))


def shared_hybrid(corpus: str | None = None, dense: dict[str, Any] | None = None,
                  hybrid: dict[str, Any] | None = None) -> Any:
    """One :class:`~arpo_env.envs.search.hybrid.HybridBackend` per corpus file and options per process."""
    from arpo_env.envs.search.hybrid import HybridBackend, HybridConfig
    opts = {"dense": repr(sorted((dense or {}).items())), **(hybrid or {})}
    return _shared("hybrid", corpus, opts, lambda p: HybridBackend(shared_bm25(corpus), shared_dense(corpus, dense),
                                                                  HybridConfig(**(hybrid or {}))))


def offline_backend(config: SearchConfig) -> SearchBackend | None:
    """The corpus or server backend ``config`` names (None for ``ddgs`` and ``replay``)."""
    if config.backend == "bm25":
        return shared_bm25(config.corpus)
    if config.backend == "dense":
        return shared_dense(config.corpus, config.dense)
    if config.backend == "hybrid":
        return shared_hybrid(config.corpus, config.dense, config.hybrid)
    if config.backend == "remote":
        from arpo_env.envs.search.remote import RemoteBackend, RemoteConfig
        opts = dict(config.remote)
        if config.remote_url:
            opts["url"] = config.remote_url
        return RemoteBackend(RemoteConfig(**opts))
    return None


def build_backend(config: SearchConfig, backend: SearchBackend | None = None) -> SearchBackend:
    """The backend described by ``config`` (or the given ``backend``), behind a cache when the mode asks."""
    from arpo_env.envs.search.bm25 import cache_dir
    if backend is None:
        backend = offline_backend(config)
    if backend is None and config.backend == "ddgs":
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
