"""``remote``: a client of a Search-R1 retrieval server (theirs over wiki-18 with e5 + FAISS, or ours:
``arpo serve-retriever``).

``POST {url}/retrieve`` with ``{"queries": [...], "topk": k, "return_scores": true}``; each returned
document's ``contents`` (``"\\"Title\\"\\ntext"``, Search-R1's wiki-18 layout) is split into title and text;
``title``/``text``/``id``/``url`` keys are used when present. Robustness as the ``ddgs`` backend: every
attempt has its own HTTP timeout, failures (refused, reset, timeout, status 5xx) are retried with
exponential backoff while the overall budget ``timeout_s`` lasts, and then the call raises
:class:`~arpo_env.envs.search.base.SearchError` with a one-line reason naming the URL, which the search tool
turns into an error observation; a 4xx answer is not retried. The cache key is ``remote:<url>``, so a
``replay-only`` run answers from recorded results with the server down. Not covered: authentication,
TLS client certificates, servers that return other layouts.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from arpo_env.envs.search.base import Hit, SearchError, check_batch
from arpo_env.extras import require


@dataclass
class RemoteConfig:
    """Where the retrieval server is and how long to wait for it."""

    url: str = "http://127.0.0.1:8000"
    """Base URL of the server (``/retrieve`` is appended; a URL already ending in ``/retrieve`` is kept)."""
    timeout_s: float = 10.0
    """Overall budget of one ``search`` call, retries and backoff included."""
    attempt_timeout_s: float = 5.0
    """HTTP timeout of one attempt (connect and read)."""
    retries: int = 2
    """Extra attempts after a failure (while the budget lasts)."""
    backoff_s: float = 0.25
    """First pause after a failure; doubled after each."""


def parse_document(item: dict[str, Any]) -> Hit:
    """A Search-R1 result item (``{"document": {...}, "score": s}`` or the document itself) as a :class:`Hit`."""
    doc = item.get("document", item) if isinstance(item, dict) else {}
    if not isinstance(doc, dict):
        raise ValueError(f"a result item is not a document: {str(item)[:80]!r}")
    score = float(item.get("score", 0.0) or 0.0) if "document" in item else 0.0
    title, text = doc.get("title"), doc.get("text")
    if title is None or text is None:
        contents = str(doc.get("contents", ""))
        head, _, rest = contents.partition("\n")
        title, text = (head.strip().strip('"'), rest) if rest else ("", head)
    return Hit(title=str(title), snippet=str(text), url=str(doc.get("url", "") or ""),
               id=str(doc.get("id", "") or ""), score=round(score, 6))


class RemoteBackend:
    """A :class:`~arpo_env.envs.search.base.SearchBackend` asking a retrieval server. Thread- and fork-safe (one
    HTTP client per process)."""

    def __init__(self, config: RemoteConfig | None = None):
        self.config = config or RemoteConfig()
        base = self.config.url.rstrip("/")
        self.endpoint = base if base.endswith("/retrieve") else base + "/retrieve"
        self.name = f"remote:{base.removesuffix('/retrieve')}"
        self._httpx = require("search", "httpx", needed_by="the retrieval-server client (backend='remote')")
        self._client: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def _http(self) -> Any:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._httpx.Client(timeout=self.config.attempt_timeout_s)
                self._pid = os.getpid()
            return self._client

    def search_many(self, queries: list[str], k: int) -> list[list[Hit]]:
        """One request for a batch of queries."""
        check_batch(queries, k)
        if not queries:
            return []
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        backoff, last = cfg.backoff_s, "no attempt was made"
        body = {"queries": queries, "topk": k, "return_scores": True}
        for attempt in range(cfg.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                resp = self._http().post(self.endpoint, json=body, timeout=min(left, cfg.attempt_timeout_s))
            except self._httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200] or 'no answer'}"
            else:
                if resp.status_code < 400:
                    return self._parse(resp, len(queries), k)
                detail = resp.text[:200]
                if resp.status_code < 500:
                    raise SearchError(f"the retrieval server at {self.endpoint} refused the query "
                                      f"(HTTP {resp.status_code}: {detail})")
                last = f"HTTP {resp.status_code}: {detail}"
            if attempt < cfg.retries:
                pause = min(backoff, deadline - time.monotonic())
                if pause <= 0:
                    break
                time.sleep(pause)
                backoff *= 2
        raise SearchError(f"the retrieval server at {self.endpoint} is not answering ({last}); "
                          "is it running? (start one with `arpo serve-retriever`)")

    def _parse(self, resp: Any, n: int, k: int) -> list[list[Hit]]:
        try:
            result = resp.json()["result"]
            if not isinstance(result, list) or len(result) != n:
                raise ValueError(f"{n} result lists expected")
            return [[parse_document(item) for item in row][:k] for row in result]
        except (ValueError, KeyError, TypeError) as exc:
            raise SearchError(f"the retrieval server at {self.endpoint} sent an answer that is not the "
                              f"Search-R1 layout ({exc})") from None

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_many([query], k)[0]

    def __deepcopy__(self, memo: dict) -> RemoteBackend:
        return self  # stateless client: env forks share it
