"""Throughput of the evaluation runner, printed as JSON.

- ``scripted``: the runner driving a scripted policy (``arpo_env.agents.scripted.ScriptedAgent``, the agent
  ``--backend oracle`` also uses) through the real env, scoring and durable writes: harness overhead, in samples/s.
- ``default_model``: the runner with the default model (embedded SmolLM2-135M-Instruct, hf backend),
  short generations (``--max-new-tokens``), in samples/s.
Both at concurrency 1 and 4 (episodes per batched rollout). Env: ``arpo/Calculator-v0`` (always present).

    python bench/eval.py [--samples 200] [--model-samples 8] [--max-new-tokens 48] [--skip-model]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from arpo_env.agent import SamplingParams
from arpo_env.benchmarks.runner import EvalConfig, run_eval

ENV = "arpo/Calculator-v0"


def scripted_agent():
    from arpo_env.agents.scripted import ScriptedAgent

    return ScriptedAgent(["<calculator>2+3</calculator>", "<answer>\\boxed{5}</answer>"]), "arpo_env.agents.scripted.ScriptedAgent"


def measure(agent, n: int, concurrency: int, sampling: SamplingParams, label: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg = EvalConfig(out=d, benchmarks=["gsm8k"], limit=n, env=ENV, concurrency=concurrency,
                         sampling=sampling, progress=False, backend=label)
        t0 = time.perf_counter()
        s = run_eval(cfg, agent)
        wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "samples": s["done"], "errors": s["errors"], "wall_s": round(wall, 3),
            "samples_per_s": round(s["done"] / wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200, help="GSM8K samples for the scripted runs")
    ap.add_argument("--model-samples", type=int, default=8, help="GSM8K samples for the model runs")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--skip-model", action="store_true")
    a = ap.parse_args()
    agent, name = scripted_agent()
    out = {"bench": "eval", "env": ENV, "benchmark": "gsm8k", "cpu_count": os.cpu_count(),
           "python": platform.python_version(), "scripted_agent": name,
           "scripted": [measure(agent, a.samples, c, SamplingParams(), "scripted") for c in (1, 4)]}
    if not a.skip_model:
        from arpo_env.benchmarks.agents_bridge import load_agent

        t0 = time.perf_counter()
        model = load_agent("hf", None, max_response_tokens=2 * a.max_new_tokens)
        out["model_load_s"] = round(time.perf_counter() - t0, 2)
        sp = SamplingParams(max_new_tokens=a.max_new_tokens)
        out["default_model"] = {"model": "SmolLM2-135M-Instruct (embedded)", "max_new_tokens": a.max_new_tokens,
                                "runs": [measure(model, a.model_samples, c, sp, "hf") for c in (1, 4)]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
