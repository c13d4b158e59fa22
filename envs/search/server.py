"""``arpo serve-retriever``: one search index served over HTTP with Search-R1's retrieval protocol.

Protocol (Search-R1's ``retrieval_server.py``): ``POST /retrieve`` with JSON
``{"queries": [str, ...], "topk": int, "return_scores": bool}`` answers
``{"result": [[{"document": {"id", "contents", "title", "text", "url"}, "score": float}, ...], ...]}``
(one list per query; without ``return_scores`` each item is the document itself). ``contents`` is
Search-R1's ``"\\"Title\\"\\ntext"``; ``title``/``text``/``url`` are extra keys its client ignores.
``GET /health`` answers ``{"status": "ok", "backend": NAME, "passages": N}``. Bad requests get status
400 and ``{"error": message}``; a backend failure 500.

Batching: request threads hand their queries to one batcher thread, which waits at most
``max_wait_ms`` for more, then answers everything pending with one ``search_many`` call (one encoder
batch for the dense and hybrid backends), so many trainer ranks and env workers share one index and
one model. Uses the standard library's threading HTTP server (keep it on a trusted network: no
authentication, no TLS). Not covered: streaming, per-request corpora, query-time options beyond topk.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from arpo_env.envs.search.base import Hit, SearchBackend
from arpo_env.envs.search.evaluate import search_batch

log = logging.getLogger(__name__)
MAX_QUERIES = 1024
MAX_QUERY_CHARS = 4000


def hit_document(h: Hit) -> dict[str, Any]:
    """A hit as a Search-R1 document (``contents`` = quoted title, newline, text)."""
    return {"id": h.id, "contents": f'"{h.title}"\n{h.snippet}', "title": h.title, "text": h.snippet, "url": h.url}


class _Batcher:
    def __init__(self, backend: SearchBackend, max_batch: int, max_wait_s: float):
        self.backend, self.max_batch, self.max_wait_s = backend, max_batch, max_wait_s
        self._q: queue.Queue[tuple[list[str], int, Future] | None] = queue.Queue()
        self.batches = 0
        self._thread = threading.Thread(target=self._loop, name="retriever-batcher", daemon=True)
        self._thread.start()

    def submit(self, queries: list[str], k: int) -> Future:
        fut: Future = Future()
        self._q.put((queries, k, fut))
        return fut

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            jobs = [first]
            n = len(first[0])
            while n < self.max_batch:
                try:
                    job = self._q.get(timeout=self.max_wait_s)
                except queue.Empty:
                    break
                if job is None:
                    self._q.put(None)
                    break
                jobs.append(job)
                n += len(job[0])
            self._run(jobs)

    def _run(self, jobs: list[tuple[list[str], int, Future]]) -> None:
        queries = [q for qs, _, _ in jobs for q in qs]
        kmax = max(k for _, k, _ in jobs)
        self.batches += 1
        try:
            results = search_batch(self.backend, queries, kmax)
        except Exception as exc:  # noqa: BLE001 - answered per request, one at a time, to isolate bad ones
            if len(jobs) == 1:
                jobs[0][2].set_exception(exc)
                return
            for job in jobs:
                self._run([job])
            return
        at = 0
        for qs, k, fut in jobs:
            fut.set_result([r[:k] for r in results[at:at + len(qs)]])
            at += len(qs)

    def close(self) -> None:
        self._q.put(None)


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # listen backlog: many ranks connect at once (the default of 5 drops them)
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("retriever: a client went away (%s)", client_address)  # e.g. it timed out first


class RetrievalServer:
    """Serves ``backend`` on ``host:port`` (port 0: any free one; see :attr:`url`). ``start()`` runs it in a
    background thread; ``serve_forever()`` in this one; ``close()`` stops it."""

    def __init__(self, backend: SearchBackend, host: str = "127.0.0.1", port: int = 8000, *,
                 default_topk: int = 3, max_topk: int = 100, max_batch: int = 64, max_wait_ms: float = 5.0):
        self.backend, self.default_topk, self.max_topk = backend, default_topk, max_topk
        self.batcher = _Batcher(backend, max_batch, max_wait_ms / 1000)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: headers and body go out as two writes; with Nagle the body waits for the client's
            # delayed ACK of the headers (about 40 ms per request on Linux)
            disable_nagle_algorithm = True

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("retriever: " + fmt, *args)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") == "/health":
                    self._send(200, {"status": "ok", "backend": backend.name,
                                     "passages": len(getattr(backend, "passages", []))})
                else:
                    self._send(404, {"error": f"unknown path {self.path}; use POST /retrieve or GET /health"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/retrieve":
                    self._send(404, {"error": f"unknown path {self.path}; use POST /retrieve"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", 0))
                    req = json.loads(self.rfile.read(length) or b"null")
                    queries, k, scores = server.parse(req)
                except ValueError as exc:
                    self._send(400, {"error": str(exc)})
                    return
                try:
                    results = server.batcher.submit(queries, k).result()
                except Exception as exc:  # noqa: BLE001 - reported to the client
                    self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                self._send(200, {"result": [[{"document": hit_document(h), "score": h.score} if scores
                                             else hit_document(h) for h in hits] for hits in results]})

        self.httpd = _Server((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def parse(self, req: Any) -> tuple[list[str], int, bool]:
        """Validate a request body: ``(queries, topk, return_scores)``; ``ValueError`` says what is wrong."""
        if not isinstance(req, dict) or not isinstance(req.get("queries"), list):
            raise ValueError('the body must be JSON {"queries": [str, ...], "topk": int, "return_scores": bool}')
        queries = req["queries"]
        if not queries or len(queries) > MAX_QUERIES:
            raise ValueError(f"'queries' needs 1 to {MAX_QUERIES} strings, got {len(queries)}")
        if not all(isinstance(q, str) and q.strip() and len(q) <= MAX_QUERY_CHARS for q in queries):
            raise ValueError(f"every query must be a non-empty string of at most {MAX_QUERY_CHARS} characters")
        k = self.default_topk if req.get("topk") is None else req["topk"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_topk:
            raise ValueError(f"'topk' must be an integer from 1 to {self.max_topk}, got {k!r}")
        return [" ".join(q.split()) for q in queries], k, bool(req.get("return_scores", False))

    def start(self) -> RetrievalServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="retriever-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.batcher.close()
