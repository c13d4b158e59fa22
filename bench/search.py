"""Search benchmark: BM25 index build/load time, query latency, recall@5/@10 and cache latency.

Prints one JSON object. Run with the project installed (``pip install -e '.[search]'``): ``python bench/search.py``.
Everything is offline: the bundled corpus, the bundled 100 HotpotQA questions, a temporary cache dir.

- ``build_s``: tokenise and index the whole bundled corpus (no disk cache), median of ``--repeats``;
  ``load_s``: load the saved index from disk (what a new process pays after the first build).
- ``query_ms``: p50/p95/mean over the 100 questions as queries (k=10), after one warm-up pass.
- ``recall``: share of gold supporting passages (HotpotQA ``supporting_facts`` titles) in the top 5/10,
  query = the question text; ``all_found@k``: share of questions with both gold passages retrieved.
- ``cache``: SQLite cache (WAL) hit latency, and miss latency (BM25 query + write), p50/p95.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _ms(xs: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(xs, 0.5) * 1e3, 3), "p95": round(_pct(xs, 0.95) * 1e3, 3),
            "mean": round(statistics.fmean(xs) * 1e3, 3), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="index builds to time")
    ap.add_argument("--passes", type=int, default=3, help="passes over the 100 queries for latency")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="arpo-bench-search-")
    os.environ["ARPO_ENV_CACHE_DIR"] = tmp

    from arpo_env.envs.search.bm25 import BM25Backend
    from arpo_env.envs.search.cache import CachedBackend, SearchCache
    from arpo_env.envs.search.corpus import BUNDLED_CORPUS, corpus_hash, load_corpus, load_hotpotqa_questions
    from arpo_env.envs.search.env import recall_at_k

    t0 = time.perf_counter()
    passages = load_corpus()
    corpus_load_s = time.perf_counter() - t0
    builds = []
    for _ in range(args.repeats):
        b = BM25Backend(passages=passages, use_disk_cache=False)
        builds.append(b.build_seconds)
    BM25Backend(passages=passages)  # writes the disk cache
    t0 = time.perf_counter()
    backend = BM25Backend(passages=passages)
    load_s = time.perf_counter() - t0
    assert backend.loaded_from_disk

    questions = load_hotpotqa_questions()
    queries = [q["question"] for q in questions]
    for q in queries:  # warm-up
        backend.search(q, 10)
    lat = []
    for _ in range(args.passes):
        for q in queries:
            t0 = time.perf_counter()
            backend.search(q, 10)
            lat.append(time.perf_counter() - t0)
    recall = recall_at_k(backend, questions, (5, 10))

    cache = SearchCache(Path(tmp) / "bench.sqlite")
    cached = CachedBackend(backend, cache, "read-write")
    miss, hit = [], []
    for q in queries:
        t0 = time.perf_counter()
        cached.search(q, 10)
        miss.append(time.perf_counter() - t0)
    for _ in range(args.passes):
        for q in queries:
            t0 = time.perf_counter()
            cached.search(q, 10)
            hit.append(time.perf_counter() - t0)
    assert cached.misses == len(queries) and cached.hits == len(queries) * args.passes

    print(json.dumps({
        "bench": "search",
        "corpus": {"file": BUNDLED_CORPUS.name, "passages": len(passages), "hash": corpus_hash(passages),
                   "load_s": round(corpus_load_s, 3)},
        "bm25": {"build_s": round(statistics.median(builds), 3), "build_runs_s": [round(x, 3) for x in builds],
                 "load_from_disk_s": round(load_s, 3), "stemmer": backend._effective["stemmer"],
                 "query_ms": _ms(lat), "k": 10},
        "recall": recall,
        "cache": {"hit_ms": _ms(hit), "miss_and_write_ms": _ms(miss), "journal_mode": "wal"},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }, indent=2))
    cache.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
