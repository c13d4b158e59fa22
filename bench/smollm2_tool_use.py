"""Does the embedded SmolLM2-135M-Instruct call its tools, raw (``--base-only``) and with the shipped adapter?

Plays held-out tasks through ``agents.Agent`` with the ``hf`` backend and ARPO's evaluation sampling
(T 0.6, top-p 0.95, top-k 20, repetition penalty 1.1) and prints JSON per (model, suite): the share of
episodes with at least one well-formed tool call, correct answers (reward > 0 for generated tasks; the
benchmark F1 for ``hotpotqa``), mean reward, and time. Suites: ``calculator`` and ``python`` on seeds
0..N-1 (``arpo traces --seed 1`` trains on seeds >= 100003), ``hotpotqa``: the first N questions of
``hotpotqa_offline`` in Search-v0 (the traces use synthetic corpus questions only).

    python bench/smollm2_tool_use.py --tasks 20 --suites calculator,python,hotpotqa
    python bench/smollm2_tool_use.py --models adapter --adapter runs/new-adapter   # a candidate adapter

Suite ``gsm8k``: the first N GSM8K test questions in ``arpo/Python-v0`` (its benchmark env, 3 calls),
scored by the env's reward (> 0 = correct).
"""
from __future__ import annotations

import argparse
import json
import time


def run_suite(agent, suite: str, n: int, params, search_backend: str | None = None) -> dict:
    import arpo_env
    from arpo_env.benchmarks.metrics import arpo_eval_f1, f1
    options = None
    if suite in ("hotpotqa", "gsm8k"):
        from arpo_env.benchmarks.registry import get_benchmark
        tasks = get_benchmark({"hotpotqa": "hotpotqa_offline", "gsm8k": "gsm8k"}[suite]).load(limit=n)
        env_id, kw = (("arpo/Search-v0", {"backend": search_backend} if search_backend else {}) if suite == "hotpotqa"
                      else ("arpo/Python-v0", {"max_tool_calls": 3}))
        envs = [arpo_env.make(env_id, **kw) for _ in tasks]
        options = [{"task": t} for t in tasks]
    else:
        env_id = {"calculator": "arpo/Calculator-v0", "python": "arpo/Python-v0"}[suite]
        envs = [arpo_env.make(env_id) for _ in range(n)]
    t0 = time.perf_counter()
    trajs = agent.rollout(envs, params, options=options, seeds=list(range(len(envs))))
    wall = time.perf_counter() - t0
    for e in envs:
        e.close()
    k = len(trajs)
    row = {"tasks": k, "share_calling_tool": sum(bool(t.tool_calls) for t in trajs) / k,
           "share_answered": sum(t.answer is not None for t in trajs) / k,
           "mean_reward": sum(t.reward for t in trajs) / k, "rollout_s": round(wall, 1)}
    if suite == "hotpotqa":  # the benchmark's metric (official HotpotQA F1) and ARPO's evaluation F1
        golds = [o["task"].answer for o in options or []]
        row["f1"] = sum(f1(t.answer, g) for t, g in zip(trajs, golds)) / k
        row["arpo_f1"] = sum(arpo_eval_f1(t.answer, g) for t, g in zip(trajs, golds)) / k
        row["predictions"] = [[t.answer, g[0]] for t, g in zip(trajs, golds)]
    else:
        row["accuracy"] = sum(t.reward > 0 for t in trajs) / k
    row["example"] = trajs[0].text[:300]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--suites", default="calculator,python,hotpotqa")
    ap.add_argument("--models", default="base,sft",
                    help="base (raw), sft (embedded default = base + shipped adapter), adapter (base + --adapter)")
    ap.add_argument("--adapter", default=None, help="a LoRA adapter folder for the 'adapter' model (e.g. a new run)")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="per model turn")
    ap.add_argument("--max-response-tokens", type=int, default=640)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search-backend", default=None,
                    help="hotpotqa suite: Search-v0's backend (bm25 = a README install; default: auto)")
    args = ap.parse_args()

    import torch

    import arpo_env
    from arpo_env.agents import load_agent

    out: dict = {"bench": "smollm2_tool_use", "threads": torch.get_num_threads(), "args": vars(args), "results": {}}
    for name in args.models.split(","):
        torch.manual_seed(args.seed)
        agent = load_agent("hf", None, max_response_tokens=args.max_response_tokens, base_only=(name != "sft"))
        if name == "adapter":
            from arpo_env.agents.models import merge_adapter
            if not args.adapter:
                ap.error("--models adapter needs --adapter DIR")
            agent.backend.model = merge_adapter(agent.backend.model, args.adapter)
        params = arpo_env.SamplingParams(temperature=args.temperature, top_p=0.95, top_k=20, repetition_penalty=1.1,
                                         max_new_tokens=args.max_new_tokens, seed=args.seed)
        for suite in args.suites.split(","):
            out["results"][f"{name}/{suite}"] = run_suite(agent, suite, args.tasks, params, args.search_backend)
            print(json.dumps({f"{name}/{suite}": out["results"][f"{name}/{suite}"]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
