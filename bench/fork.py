"""Fork latency of the calculator env (stateless fork) and of the same env forked by replay, at
episode depths 1, 10 and 100 steps. Prints JSON (microseconds, median and p95 over repeats).

    python bench/fork.py [--repeats 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import arpo_env


def fork_latency_us(kind: str | None, depth: int, repeats: int) -> dict[str, float]:
    env = arpo_env.make("arpo/Calculator-v0", fork_kind=kind, max_tool_calls=depth + 1, max_turns=depth + 2)
    env.reset(seed=0)
    for i in range(depth):
        env.step(f"<calculator>{i} * 3 + 1</calculator>")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        child = env.fork()
        times.append((time.perf_counter() - start) * 1e6)
        child.close()
    times.sort()
    return {"p50_us": round(statistics.median(times), 1), "p95_us": round(times[int(0.95 * (len(times) - 1))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    results = {}
    for label, kind in (("calculator_stateless", None), ("calculator_replay", "replay")):
        results[label] = {f"depth_{d}": fork_latency_us(kind, d, args.repeats if d < 100 else args.repeats // 4)
                          for d in (1, 10, 100)}
    print(json.dumps({"bench": "fork", "python": platform.python_version(), "machine": platform.machine(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
