"""The search backend protocol, its hit type, and ARPO's result formatting.

A backend turns a query into a ranked list of :class:`Hit`; it raises :class:`SearchError` (with a message
written for the agent) when it cannot answer. Backends: ``bm25`` (offline, :mod:`arpo_env.envs.search.bm25`),
``ddgs`` (live DuckDuckGo, :mod:`arpo_env.envs.search.ddgs_backend`); any of them can sit behind the persistent
cache of :mod:`arpo_env.envs.search.cache`.

Formatting follows ARPO's search tool (see its ``search_cache.json``): one line per hit,
``Page i: <title>: <snippet>`` (``Page i: <snippet>`` when the backend has no title), snippets cut to a
character budget with an ellipsis.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable


class SearchError(RuntimeError):
    """A backend could not answer (no network, blocked, timeout, cache miss in replay-only mode)."""


@dataclass(frozen=True)
class Hit:
    """One search result."""

    title: str
    """Page or passage title ('' when unknown)."""
    snippet: str
    """The text shown to the agent (a passage for BM25, the engine's snippet for web search)."""
    url: str = ""
    """Where the page lives ('' for corpus passages)."""
    id: str = ""
    """Stable passage id (corpus backends)."""
    score: float = 0.0
    """Backend score (BM25 score; 0 for web search)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hit:
        return cls(title=str(d.get("title", "")), snippet=str(d.get("snippet", "")), url=str(d.get("url", "")),
                   id=str(d.get("id", "")), score=float(d.get("score", 0.0)))


@runtime_checkable
class SearchBackend(Protocol):
    """Anything that answers a query with ranked hits."""

    name: str
    """Short identifier, part of the cache key (``bm25:<corpus hash>``, ``ddgs``)."""

    def search(self, query: str, k: int) -> list[Hit]:
        """Return at most ``k`` hits, best first. Raises :class:`SearchError` when it cannot answer."""
        ...


def normalize_query(query: str) -> str:
    """The cache-key form of a query: Unicode whitespace collapsed, case folded, outer spaces stripped."""
    return " ".join(query.split()).casefold()


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters at a word boundary, adding ``…`` when cut."""
    text = " ".join(text.split())
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + " …"


def format_hits(hits: list[Hit], *, snippet_chars: int = 300, show_titles: bool = True,
                show_urls: bool = False) -> str:
    """ARPO's layout: ``Page 1: title: snippet`` lines; ``No results found.`` when empty."""
    if not hits:
        return "No results found."
    lines = []
    for i, h in enumerate(hits, 1):
        head = f"Page {i}: "
        if show_titles and h.title:
            head += f"{' '.join(h.title.split())}: "
        line = head + truncate(h.snippet, snippet_chars)
        if show_urls and h.url:
            line += f" ({h.url})"
        lines.append(line)
    return "\n".join(lines)


_PAGE = re.compile(r"^Page (\d+): ", re.M)


def parse_pages(text: str) -> list[Hit]:
    """Inverse of ARPO's formatting for title-less results: split ``Page i: …`` blocks into hits.

    Used to import ARPO's recorded Bing cache as a replay fixture; text before the first ``Page 1:`` is
    dropped. Titles cannot be recovered (ARPO's cache has none), so hits carry the snippet only.
    """
    starts = list(_PAGE.finditer(text))
    hits = []
    for m, nxt in zip(starts, starts[1:] + [None]):
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        hits.append(Hit(title="", snippet=body))
    return hits


def check_batch(queries: list[str], k: int) -> None:
    """Raise :class:`SearchError` for a batch no backend can answer (k < 1, an empty query)."""
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    if any(not q.strip() for q in queries):
        raise SearchError("the query is empty")
