"""Search benchmark: every backend side by side: recall@5/@10 per question set, query p50/p95, index build
and reload time; plus the SQLite cache latency. Prints one JSON object.

Run with the project installed (``pip install -e '.[search,dense]'``): ``python bench/search.py``.
Everything is offline (the bundled corpus, a temporary cache dir unless ``--cache-dir``).

- Backends (``--backends``): ``bm25``; ``dense`` (all-MiniLM-L6-v2); ``rrf`` (BM25 + dense, reciprocal-rank
  fusion only); ``hybrid`` (the default hybrid: fusion + title-link hop + feedback round); ``remote`` (the
  hybrid index behind ``arpo serve-retriever`` on 127.0.0.1, through the HTTP client).
- Sets (``--sets``, plus any ``--questions FILE``): ``hotpotqa`` (100, passage recall), ``2wiki`` (37, answer
  recall), ``tune`` (184, answer recall: what the hybrid weights were chosen on); see
  :mod:`arpo_env.envs.search.evaluate`. All backends return k distinct passages.
- ``build_s``: the index from scratch (dense: encode every passage); ``load_s``: a new backend object
  that loads the saved index from disk (what a second process pays). ``query_ms``: one query at a time,
  k=10, the HotpotQA questions, after a warm-up pass. Threads: torch uses ``--threads`` (default 2).
- ``--sweep-threads 1,2``: bm25, dense and hybrid timed interleaved query by query at each torch thread
  count, with the p50 ratio to BM25: the number to trust on a shared machine.
- ``--tune``: grid over the hybrid weights on the ``tune`` set only (prints the table, best first).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _ms(xs: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(xs, 0.5) * 1e3, 3), "p95": round(_pct(xs, 0.95) * 1e3, 3),
            "mean": round(statistics.fmean(xs) * 1e3, 3), "n": len(xs)}


def _latency(backend: Any, queries: list[str], passes: int) -> dict[str, float]:
    for q in queries[:20]:
        backend.search(q, 10)
    lat = []
    for _ in range(passes):
        for q in queries:
            t0 = time.perf_counter()
            backend.search(q, 10)
            lat.append(time.perf_counter() - t0)
    return _ms(lat)


def _side_by_side(backends: dict[str, Any], queries: list[str], passes: int) -> dict[str, Any]:
    """Latency of each backend with the backends interleaved query by query (so a shared, busy machine
    loads them alike), plus each backend's p50 over BM25's p50 (``ratio_to_bm25``)."""
    for q in queries[:20]:
        for b in backends.values():
            b.search(q, 10)
    lat: dict[str, list[float]] = {n: [] for n in backends}
    for _ in range(passes):
        for q in queries:
            for n, b in backends.items():
                t0 = time.perf_counter()
                b.search(q, 10)
                lat[n].append(time.perf_counter() - t0)
    out: dict[str, Any] = {n: _ms(x) for n, x in lat.items()}
    if "bm25" in out:
        out["ratio_to_bm25"] = {n: round(out[n]["p50"] / out["bm25"]["p50"], 2) for n in backends if n != "bm25"}
    return out


def _tune(bm25: Any, dense: Any, questions: list[dict]) -> list[dict]:
    import numpy as np

    from arpo_env.envs.search.evaluate import recall
    from arpo_env.envs.search.hybrid import HybridBackend, HybridConfig
    enc = dense.encode_queries
    memo: dict[str, Any] = {}

    def encode(qs: list[str]) -> Any:
        todo = list(dict.fromkeys(q for q in qs if q not in memo))
        if todo:
            memo.update(zip(todo, enc(todo)))
        return np.stack([memo[q] for q in qs])
    dense.encode_queries = encode
    rows = []
    ranks: dict[str, list[int]] = {}
    shared = HybridBackend(bm25, dense)
    grid = itertools.product([1.0], [0.5, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0], [1, 2, 3], [0.0, 0.5, 1.0])
    for wb, wd, wl, lf, wp in grid:
        if wl == 0 and lf != 1:
            continue
        cfg = HybridConfig(w_bm25=wb, w_dense=wd, w_links=wl, link_from=lf, w_prf=wp)
        hybrid = HybridBackend(bm25, dense, cfg)
        hybrid._linker, hybrid._links = shared._linker, shared._links  # one link index for the whole grid
        plain = hybrid._bm25_ranks
        hybrid._bm25_ranks = lambda q, plain=plain: ranks[q] if q in ranks else ranks.setdefault(q, plain(q))
        r = recall(hybrid, questions)
        rows.append({"w_bm25": wb, "w_dense": wd, "w_links": wl, "link_from": lf, "w_prf": wp, **r})
    dense.encode_queries = enc
    return sorted(rows, key=lambda r: (-r["recall@5"], -r["recall@10"]))


def _sweep_encoders(args: argparse.Namespace, passages: list, bm25: Any, queries: list[str],
                    sets: dict[str, list[dict]]) -> dict[str, Any]:
    """Each encoder's index (built or loaded), recall, and dense/hybrid latency interleaved with BM25."""
    from arpo_env.envs.search.dense import DenseBackend, DenseConfig
    from arpo_env.envs.search.evaluate import recall
    from arpo_env.envs.search.hybrid import HybridBackend
    trio: dict[str, Any] = {"bm25": bm25}
    info: dict[str, Any] = {}
    for enc in args.sweep_encoders.split(","):
        # without --cache-dir each encoder builds its own index from scratch (onnx and torch would share one)
        where = None if args.cache_dir else Path(os.environ["ARPO_ENV_CACHE_DIR"]) / f"sweep-{enc}"
        t0 = time.perf_counter()
        d = DenseBackend(passages=passages, config=DenseConfig(threads=args.threads, encoder=enc), index_dir=where)
        first_open = time.perf_counter() - t0
        h = HybridBackend(bm25, d)
        trio[f"dense[{enc}]"], trio[f"hybrid[{enc}]"] = d, h
        info[enc] = {"encoder": d.encoder_kind, "build_s": round(d.build_seconds, 3),
                     "first_open_s": round(first_open, 3),
                     "built_in_this_run": not d.loaded_from_disk,
                     "recall": {n: {"dense": recall(d, q), "hybrid": recall(h, q)} for n, q in sets.items()}}
    return {"per_encoder": info, "side_by_side": _side_by_side(trio, queries, args.passes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="bm25,dense,rrf,hybrid,remote")
    ap.add_argument("--sets", default="hotpotqa,2wiki", help="shipped question sets (hotpotqa, 2wiki, tune)")
    ap.add_argument("--questions", action="append", default=[], help="a user question set (JSON lines)")
    ap.add_argument("--passes", type=int, default=2, help="passes over the queries for latency")
    ap.add_argument("--threads", type=int, default=2, help="encoder threads (DenseConfig.threads)")
    ap.add_argument("--encoder", default="auto", help="DenseConfig.encoder: auto, onnx-int8, onnx, torch")
    ap.add_argument("--sweep-encoders", default="", help="e.g. torch,onnx-int8: also build/load each encoder's "
                    "index and time its dense and hybrid interleaved query by query with bm25 (recall too)")
    ap.add_argument("--sweep-threads", default="", help="e.g. 1,2: also time bm25/dense/hybrid interleaved "
                    "at each torch thread count (side_by_side in the output)")
    ap.add_argument("--latency-queries", type=int, default=100, help="how many HotpotQA questions are timed")
    ap.add_argument("--cache-dir", help="keep/reuse indexes here (default: a temporary dir, built from scratch)")
    ap.add_argument("--tune", action="store_true", help="grid-search the hybrid weights on the tune set")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="arpo-bench-search-")
    os.environ["ARPO_ENV_CACHE_DIR"] = args.cache_dir or tmp
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from arpo_env.envs.search.bm25 import BM25Backend
    from arpo_env.envs.search.cache import CachedBackend, SearchCache
    from arpo_env.envs.search.corpus import BUNDLED_CORPUS, corpus_hash, load_corpus
    from arpo_env.envs.search.evaluate import load_question_set, recall

    names = [b for b in args.backends.split(",") if b]
    passages = load_corpus()
    sets = {s: load_question_set(s) for s in args.sets.split(",") if s}
    sets.update({Path(p).name: load_question_set(p) for p in args.questions})
    queries = [q["question"] for q in load_question_set("hotpotqa")][:args.latency_queries]
    out: dict[str, Any] = {"bench": "search", "corpus": {"file": BUNDLED_CORPUS.name, "passages": len(passages),
                                                          "hash": corpus_hash(passages)},
                           "sets": {s: {"questions": len(q), "metric": "passage recall" if "titles" in q[0]
                                        else "answer recall"} for s, q in sets.items()}, "backends": {}}

    t0 = time.perf_counter()
    BM25Backend(passages=passages, use_disk_cache=False)
    bm25_build = time.perf_counter() - t0
    BM25Backend(passages=passages)
    t0 = time.perf_counter()
    bm25 = BM25Backend(passages=passages)
    backends: dict[str, Any] = {"bm25": bm25}
    timing: dict[str, dict[str, Any]] = {"bm25": {"build_s": round(bm25_build, 3),
                                                  "load_s": round(time.perf_counter() - t0, 3)}}
    dense = server = None
    if set(names) - {"bm25"} or args.tune or args.sweep_threads:
        from arpo_env.envs.search.dense import DenseBackend, DenseConfig
        from arpo_env.envs.search.hybrid import HybridBackend, HybridConfig
        cfg = DenseConfig(threads=args.threads, encoder=args.encoder)
        t0 = time.perf_counter()
        first = DenseBackend(passages=passages, config=cfg)
        dense_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = DenseBackend(passages=passages, config=cfg)
        timing["dense"] = {"build_s": round(first.build_seconds, 3), "first_open_s": round(dense_first, 3),
                           "built_in_this_run": not first.loaded_from_disk,
                           "load_s": round(time.perf_counter() - t0, 3), "threads": args.threads,
                           "encoder": dense.encoder_kind}
        backends["dense"] = dense
        backends["rrf"] = HybridBackend(bm25, dense, HybridConfig(w_links=0, w_prf=0))
        t0 = time.perf_counter()
        backends["hybrid"] = HybridBackend(bm25, dense)
        timing["rrf"] = timing["hybrid"] = {**timing["dense"], "link_index_s": round(time.perf_counter() - t0, 3)}
        if "remote" in names:
            from arpo_env.envs.search.remote import RemoteBackend, RemoteConfig
            from arpo_env.envs.search.server import RetrievalServer
            server = RetrievalServer(backends["hybrid"], "127.0.0.1", 0).start()
            backends["remote"] = RemoteBackend(RemoteConfig(url=server.url))
            timing["remote"] = {**timing["hybrid"], "server": server.url, "served": "hybrid"}
    if args.tune:
        out["tune"] = _tune(bm25, dense, load_question_set("tune"))[:15]
    for name in names:
        b = backends[name]
        out["backends"][name] = {**timing[name], "query_ms": _latency(b, queries, args.passes),
                                 "recall": {s: recall(b, q) for s, q in sets.items()}}
    if server is not None:
        server.close()
    if args.sweep_threads and dense is not None:
        import torch
        default = torch.get_num_threads()
        out["side_by_side"] = {}
        for t in [int(x) for x in args.sweep_threads.split(",")]:
            torch.set_num_threads(t)
            trio = {n: backends[n] for n in ("bm25", "dense", "hybrid")}
            out["side_by_side"][f"threads={t}"] = _side_by_side(trio, queries, args.passes)
        torch.set_num_threads(default)
    if args.sweep_encoders:
        out["encoders"] = _sweep_encoders(args, passages, bm25, queries, sets)

    cache = SearchCache(Path(tmp) / "bench.sqlite")
    cached = CachedBackend(bm25, cache, "read-write")
    miss, hit = [], []
    for q in queries:
        t0 = time.perf_counter()
        cached.search(q, 10)
        miss.append(time.perf_counter() - t0)
    for q in queries:
        t0 = time.perf_counter()
        cached.search(q, 10)
        hit.append(time.perf_counter() - t0)
    out["cache"] = {"hit_ms": _ms(hit), "miss_and_write_ms": _ms(miss), "journal_mode": "wal"}
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                      "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(out, indent=2))
    cache.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
