"""``arpo demo``: the default model on a small slice of a few benchmarks, offline, with each benchmark's
default tools, ending in a leaderboard table. Minutes on a laptop CPU with the default settings.

A benchmark whose default env is not installed (e.g. the search env in a partial checkout) runs with
``arpo/Calculator-v0`` instead, and the demo says so. Results go to an ordinary result folder, so the
demo resumes like ``arpo eval`` and its folder works with ``arpo leaderboard``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)
FALLBACK_ENV = "arpo/Calculator-v0"


def _env_available(env_id: str) -> bool:
    """Whether ``env_id`` is registered, its extras are installed and its class imports."""
    from arpo_env.registry import get_record

    try:
        record = get_record(env_id)
        if record.missing_extras():
            return False
        record.load()
        return True
    except (KeyError, ImportError, AttributeError):
        return False


def _install_hint(env_id: str) -> str:
    from arpo_env.extras import pip_command
    from arpo_env.registry import get_record

    try:
        missing = get_record(env_id).missing_extras()
    except KeyError:
        return "not registered"
    return "; ".join(map(pip_command, missing)) or "its module does not import"


def run_demo(out: str = "arpo-demo", limit: int = 3, benchmarks: Sequence[str] = ("gsm8k", "hotpotqa_offline"),
             model: str | None = None, backend: str = "hf", max_new_tokens: int = 192,
             max_response_tokens: int = 1024, concurrency: int | None = None, progress: bool = True,
             base_only: bool = False) -> str:
    """Run the demo; returns (and prints) the Markdown leaderboard.

    With the embedded model (``model=None``, backend ``hf``) and a shipped tool-use adapter, two rows are
    played: the fine-tuned default (method ``sft``, folder ``out``) and the raw model (method ``base``,
    folder ``out-base``); ``base_only`` plays the raw model alone. ``max_response_tokens`` counts tool
    results: one search result (5 pages of up to 500 characters) is 300 to 600 tokens, so the default leaves
    room for a search and the answer after it (512 cut most search episodes before their answer).
    ``concurrency`` (episodes generated as one batch; default: every sample of a row at once, at most 16):
    on 2 CPU cores one batch of 6 took 33 s where 4 + 2 took 47 s."""
    from rich.console import Console
    from rich.markup import escape

    from arpo_env.agent import SamplingParams
    from arpo_env.benchmarks.agents_bridge import load_agent
    from arpo_env.benchmarks.leaderboard import build_table, render
    from arpo_env.benchmarks.registry import get_benchmark
    from arpo_env.benchmarks.runner import EvalConfig, run_eval

    console = Console(stderr=True)
    t0 = time.perf_counter()
    console.print(f"[bold]arpo demo[/]: {backend} model {model or 'SmolLM2-135M-Instruct (embedded)'} on "
                  f"{limit} samples of {', '.join(benchmarks)}, offline")
    kw = {"max_response_tokens": max_response_tokens} if backend != "oracle" else {}
    rows: list[tuple[str, str, dict]] = [(out, "demo", kw)]
    if model is None and backend == "hf":
        from arpo_env.agents.models import default_adapter
        if base_only or default_adapter() is None:
            rows = [(out, "base", {**kw, "base_only": True})]
        else:
            rows = [(out, "sft", kw), (f"{out}-base", "base", {**kw, "base_only": True})]
    sampling = SamplingParams(max_new_tokens=max_new_tokens)
    if concurrency is None:
        concurrency = max(1, min(16, limit * len(benchmarks)))
    groups: dict[str | None, list[str]] = {}
    for name in benchmarks:
        env_id = get_benchmark(name).env_id
        if _env_available(env_id):
            groups.setdefault(None, []).append(name)
        else:
            console.print(f"[yellow]{name}: its env {env_id} is not installed ({escape(_install_hint(env_id))}); "
                          f"using {FALLBACK_ENV}[/]")
            groups.setdefault(FALLBACK_ENV, []).append(name)
    folders = []
    for row_out, method, row_kw in rows:
        agent = load_agent(backend=backend, model=model, **row_kw)
        for i, (env, names) in enumerate(groups.items()):
            folder = row_out if i == 0 else f"{row_out}-{(env or 'default').split('/')[-1]}"
            cfg = EvalConfig(out=folder, benchmarks=names, model=model, backend=backend, method=method,
                             limit=limit, sampling=sampling, env=env, concurrency=concurrency, progress=progress)
            summary = run_eval(cfg, agent)
            console.print(f"{folder}: {summary['done']} new, {summary['skipped']} already done, "
                          f"{summary['errors']} errors")
            folders.append(folder)
    table = render(build_table(folders), "md")
    print(table)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; results in {', '.join(folders)} "
                  f"(arpo leaderboard {' '.join(folders)} --plots plots/)")
    return table
