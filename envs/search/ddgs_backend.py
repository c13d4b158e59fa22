"""``ddgs``: live web search through the ``ddgs`` package (DuckDuckGo and the metasearch engines it wraps).

Robustness: each attempt runs in a daemon thread and is abandoned at its deadline, so a hung socket can
never hang an episode; failures (no network, DNS errors, rate limits, blocks) are retried with
exponential backoff while the overall budget ``timeout_s`` lasts; requests from one process are spaced
by at least ``min_interval_s`` (a shared rate limiter). When everything fails the call raises
:class:`~arpo_env.envs.search.base.SearchError` with a one-line reason, which the search tool turns into an error
observation. Results are not deterministic: put the backend behind a cache (:mod:`arpo_env.envs.search.cache`)
to replay a run. Not covered: pagination past ``max_results``, region and safe-search tuning beyond the
options below.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arpo_env.envs.deadline import run_with_deadline
from arpo_env.envs.search.base import Hit, SearchError
from arpo_env.extras import require


@dataclass
class DDGSConfig:
    """Options of the live backend."""

    timeout_s: float = 15.0
    """Overall budget of one ``search`` call, retries and backoff included."""
    attempt_timeout_s: float = 8.0
    """Budget of one attempt (also passed to ``ddgs`` as its HTTP timeout)."""
    retries: int = 2
    """Extra attempts after the first failure (while the overall budget lasts)."""
    backoff_s: float = 1.0
    """First backoff; doubled after each failure."""
    min_interval_s: float = 1.0
    """Minimum spacing between requests of this process (DuckDuckGo rate-limits bursts)."""
    engine: str = "auto"
    """``ddgs`` backend: ``auto`` (its default rotation), ``duckduckgo``, ``bing``, ``brave``, ..."""
    region: str = "us-en"
    """Region code passed to ``ddgs``."""
    safesearch: str = "moderate"
    """``on``, ``moderate`` or ``off``."""
    proxy: str | None = None
    """Proxy URL for ``ddgs`` (``http://``, ``socks5://``); None: direct (``ddgs`` also reads ``DDGS_PROXY``)."""


class _RateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, interval: float, deadline: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + interval
        delay = min(start, deadline) - time.monotonic()
        if delay > 0:
            time.sleep(delay)


_LIMITER = _RateLimiter()


def _default_client(config: DDGSConfig) -> Callable[[str, int], list[dict[str, Any]]]:
    require("search", "ddgs", needed_by="live search (backend='ddgs')")  # fail when built, not per query

    def call(query: str, k: int) -> list[dict[str, Any]]:
        from ddgs import DDGS
        return DDGS(proxy=config.proxy, timeout=max(1, int(config.attempt_timeout_s))).text(
            query, max_results=k, backend=config.engine, region=config.region, safesearch=config.safesearch)
    return call


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


class DDGSBackend:
    """A :class:`~arpo_env.envs.search.base.SearchBackend` for live web search. ``client`` replaces the ``ddgs``
    call (``(query, k) -> [{"title", "href", "body"}]``), for tests and other engines."""

    name = "ddgs"

    def __init__(self, config: DDGSConfig | None = None, *,
                 client: Callable[[str, int], list[dict[str, Any]]] | None = None):
        self.config = config or DDGSConfig()
        self._client = client or _default_client(self.config)

    def search(self, query: str, k: int) -> list[Hit]:
        if not query.strip():
            raise SearchError("the query is empty")
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        backoff, last = cfg.backoff_s, "no attempt was made"
        for attempt in range(cfg.retries + 1):
            _LIMITER.wait(cfg.min_interval_s, deadline)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                rows = run_with_deadline(lambda: self._client(query, k), min(left, cfg.attempt_timeout_s))
                return [Hit(title=str(r.get("title", "")), snippet=str(r.get("body", "")),
                            url=str(r.get("href", r.get("url", "")))) for r in (rows or [])][:k]
            except Exception as exc:
                last = f"{type(exc).__name__}: {_reason(exc)}"
            if "No results found" in last:
                return []
            if attempt < cfg.retries:
                pause = min(backoff, deadline - time.monotonic())
                if pause <= 0:
                    break
                time.sleep(pause)
                backoff *= 2
        raise SearchError(f"web search failed (network unavailable or request blocked): {last}")

    def __deepcopy__(self, memo: dict) -> DDGSBackend:
        return self  # no per-episode state: env forks share it
