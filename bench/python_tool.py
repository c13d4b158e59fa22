"""Benchmark of the Python sandbox: prints one JSON object.

- ``call``: p50/p95 latency (ms) of a trivial cell (``1 + 1``) on a warm session, per tier, against
  ``fresh_python_c``: a new ``python -c`` process per call, as the public ARPO code runs its tool.
- ``fork``: p50/p95 round-trip latency (ms) of forking a session holding 0, 50 and 200 MB, per tier, and
  the median time of the ``os.fork()`` call itself inside the sandbox (``kernel_fork_ms``).
- ``start``: seconds to start a tree (sandbox + zygote) and spawn a first session, per tier.

Usage: ``python bench/python_tool.py [--calls 200] [--forks 20] [--tiers subprocess,bwrap,docker]``.
Tiers that cannot run here are reported with the reason instead of numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from arpo_env.envs.python.config import TIERS, SandboxConfig
from arpo_env.envs.python.session import Tree
from arpo_env.envs.python.tiers import get_tier
from arpo_env.envs.python.tool import PythonTool


def pct(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"p50": round(statistics.median(v), 3), "p95": round(v[min(len(v) - 1, int(0.95 * len(v)))], 3),
            "n": len(v)}


def bench_tier(name: str, calls: int, forks: int) -> dict:
    tier = get_tier(name)
    config = SandboxConfig(sandbox=name, memory_mb=2048)
    ok, why = tier.available(config)
    if not ok:
        return {"available": False, "reason": why}
    t0 = time.perf_counter()
    tree = Tree(tier, config)
    session = tree.spawn()
    out: dict = {"available": True, "start_s": round(time.perf_counter() - t0, 3)}
    try:
        session.execute("1 + 1")
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            res = session.execute("1 + 1")
            lat.append((time.perf_counter() - t) * 1e3)
            assert res.output.strip() == "2", res
        out["call_ms"] = pct(lat)
        out["fork"] = {}
        held = 0
        for mb in (0, 50, 200):
            if mb > held:
                res = session.execute(f"blob{mb} = bytearray({mb - held} * 2**20)\n"
                                      f"blob{mb}[::4096] = b'x' * len(blob{mb}[::4096])")
                assert res.error is None, res.output
                held = mb
            wall, kern = [], []
            for _ in range(forks):
                t = time.perf_counter()
                child = session.fork()
                wall.append((time.perf_counter() - t) * 1e3)
                kern.append(child.fork_seconds * 1e3)
                child.close()
            out["fork"][f"{mb}MB"] = {**pct(wall), "kernel_fork_ms": round(statistics.median(kern), 3)}
        spawn = []
        for _ in range(10):
            t = time.perf_counter()
            s = tree.spawn()
            spawn.append((time.perf_counter() - t) * 1e3)
            s.close()
        out["spawn_ms"] = pct(spawn)
    finally:
        session.close()
    return out


def bench_new_episode(name: str, episodes: int, pool_size: int) -> dict:
    """ms from building a new episode's tool to its first call's answer (a new sandbox each time), with
    ``pool_size`` pre-started sandboxes (0: started on demand). Episodes are spaced so the pool refills."""
    from arpo_env.envs.python.pool import close_pools
    times = []
    for _ in range(episodes):
        tool = PythonTool(SandboxConfig(sandbox=name, pool_size=pool_size))
        t0 = time.perf_counter()
        tool("1")
        times.append((time.perf_counter() - t0) * 1000)
        tool.close()
        time.sleep(0.6)  # an episode's own work; lets the pool refill
    close_pools()
    return pct(times[1:] if pool_size else times)  # the first pooled episode fills the pool


def bench_fresh(calls: int) -> dict:
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1 + 1)"], capture_output=True, check=True)
        lat.append((time.perf_counter() - t) * 1e3)
    return pct(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--fresh-calls", type=int, default=30)
    ap.add_argument("--forks", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=10, help="new episodes timed per tier and pool size")
    ap.add_argument("--tiers", default=",".join(TIERS))
    args = ap.parse_args()
    result = {"bench": "python_tool", "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                "root": os.geteuid() == 0,
                                                "load_avg_1m": round(os.getloadavg()[0], 2)},
              "fresh_python_c_ms": bench_fresh(args.fresh_calls), "tiers": {}}
    for name in args.tiers.split(","):
        try:
            result["tiers"][name] = bench_tier(name, args.calls, args.forks)
            result["tiers"][name]["new_episode_first_call_ms"] = {
                f"pool_{n}": bench_new_episode(name, args.episodes, n) for n in (0, 2)}
        except Exception as exc:
            result["tiers"][name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
