"""Rollout-loop throughput vs the raw backend: generated tokens/s of ``Agent.rollout`` and of
``backend.generate`` on the same prompts, and the loop's overhead (time outside the backend).

    python bench/rollout.py                       # embedded SmolLM2, CPU (or CUDA if present)
    python bench/rollout.py --batch 256 --max-new-tokens 256   # the GPU acceptance setting
    python bench/rollout.py --model tiny          # random tiny Llama (harness only)

Prints one JSON object. ``raw`` is one ``generate`` call over the prompts (same sampling, same stop
strings, ``max_new_tokens`` per row); ``loop`` is a full multi-turn rollout over calculator envs, whose
backend time is measured separately, so ``loop.overhead_share`` is the share of the loop's wall time
spent outside ``generate`` (templating, parsing, env steps, bookkeeping).

``--multi-turn`` (issue 17): the same calculator episodes (``--batch`` envs, seeds 0..batch-1, ``--turns``
rounds of ``--max-new-tokens`` each) played with the HF backend with KV reuse on and off, interleaved,
``--repeats`` times, and with vLLM when ``--vllm-python`` names a Python with vLLM (run afterwards in a
subprocess of that Python, its engine started once; ``VLLM_CPU_OMP_THREADS_BIND`` defaults to ``0-1``).
Reports per configuration the median generated tok/s over the rounds' wall time, the context tokens the
model encoded (prefill + decode steps; from ``HFBackend.kv_stats``) against the minimum (prompt +
observations fed to a later round + generated tokens), and the ratios::

    python bench/rollout.py --multi-turn --model embedded --batch 16 --turns 3 --max-new-tokens 128 \
        --repeats 3 --vllm-python /path/venv-vllm/bin/python --out bench/results/rollout_kv_reuse.json

``--compare-share`` adds ``hf_kv_reuse_noshare`` (reuse on, ``share_prefix_tokens=0``: distinct first-turn
prompts each encode the system prompt they share) and reports ``share_prefix_speedup``. vLLM's prefix cache is
reset between repeats (``VLLMBackend.clear_kv_cache``), as the HF cache is. ``--compare-stock`` adds ``hf_kv_reuse_stock`` (reuse on, ``kv_buffer=False, dedup_prefill=False``: the stock
``DynamicCache`` and one prefill per row) to the interleaved runs and reports ``kv_buffer_dedup_speedup``
(``hf_kv_reuse`` over it). ``--group G`` plays G episodes per env seed, so each first turn holds groups of G
identical prompts as in GRPO (the minimum counts them once per row, so dedup can encode less than it)::

    python bench/rollout.py --multi-turn --model embedded --batch 16 --group 4 --turns 3 --max-new-tokens 128 \
        --repeats 3 --compare-stock --vllm-python /path/venv-vllm/bin/python
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time


class TimedBackend:
    def __init__(self, inner):
        self.inner, self.seconds, self.tokens, self.calls = inner, 0.0, 0, 0
        self.minimum = 0  # prompt + new observation + generated tokens (what must be encoded at least)
        self._seen: list[tuple[int, ...]] = []  # every earlier context + its generation

    def generate(self, contexts, params):
        t0 = time.perf_counter()
        out = self.inner.generate(contexts, params)
        self.seconds += time.perf_counter() - t0
        self.tokens += sum(len(g.token_ids) for g in out)
        self.calls += 1
        for c, g in zip(contexts, out):
            known = max((len(x) for x in self._seen if len(x) <= len(c) and tuple(c[:len(x)]) == x), default=0)
            self.minimum += len(c) - known + len(g.token_ids)
            self._seen.append(tuple(c) + tuple(g.token_ids))
        return out


def play(backend, tok, args):
    """``args.turns`` rounds of the calculator episodes; returns the measured row."""
    import arpo_env
    from arpo_env.agents import Agent
    timed = TimedBackend(backend)
    agent = Agent(timed, tok, max_response_tokens=args.max_response_tokens)
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(args.batch)]
    states = [agent.start(e, seed=s // args.group) for s, e in enumerate(envs)]  # --group copies per seed
    params = arpo_env.SamplingParams(temperature=args.temperature, top_p=0.95, top_k=20, repetition_penalty=1.1,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed)
    stats = getattr(backend, "kv_stats", None)
    before = stats.as_dict() if stats is not None else None
    t0 = time.perf_counter()
    rounds = 0
    for _ in range(args.turns):
        if all(s.done for s in states):
            break
        agent.advance(states, params)
        rounds += 1
    wall = time.perf_counter() - t0
    for e in envs:
        e.close()
    row = {"generated_tokens": timed.tokens, "seconds": round(wall, 3), "tok_per_s": round(timed.tokens / wall, 1),
           "backend_seconds": round(timed.seconds, 3), "rounds": rounds, "calls": timed.calls,
           "min_tokens": timed.minimum}
    if stats is not None:
        after = stats.as_dict()
        d = {k: after[k] - before[k] for k in after}
        row.update(encoded_tokens=d["encoded_tokens"], prefill_tokens=d["prefill_tokens"],
                   reused_tokens=d["reused_tokens"], decode_tokens=d["decode_tokens"],
                   dedup_tokens=d.get("dedup_tokens", 0),
                   encoded_vs_min=round(d["encoded_tokens"] / timed.minimum, 3))
    if hasattr(backend, "clear_kv_cache"):  # HF and vLLM alike: the next repeat starts cold, as a new batch
        backend.clear_kv_cache()           # of episodes would (vLLM's prefix cache kept the warm-up's prompts)
    return row


def _median(rows, key):
    import statistics
    return statistics.median(r[key] for r in rows)


def _summary(rows):
    out = {"tok_per_s": _median(rows, "tok_per_s"), "seconds": _median(rows, "seconds"),
           "generated_tokens": _median(rows, "generated_tokens"), "min_tokens": _median(rows, "min_tokens")}
    if "encoded_tokens" in rows[0]:
        out.update(encoded_tokens=_median(rows, "encoded_tokens"), encoded_vs_min=_median(rows, "encoded_vs_min"),
                   prefill_tokens=_median(rows, "prefill_tokens"), reused_tokens=_median(rows, "reused_tokens"))
    return {**out, "runs": rows}


def multi_turn(args) -> None:
    import os
    import subprocess

    import torch
    if args.backend == "vllm":  # the subprocess side: vLLM only, JSON rows on stdout
        from arpo_env.agents.backends.vllm import VLLMBackend
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        t0 = time.perf_counter()
        import tempfile
        from pathlib import Path

        from arpo_env.agents.models import load_model_and_tokenizer
        from arpo_env.trainers.rollout_engine import export_engine_folder
        # the HF side's weights exactly: the embedded model with its tool-use adapter merged, in float32
        model, tok = load_model_and_tokenizer(None, device="cpu", dtype=torch.float32)
        folder = Path(tempfile.mkdtemp(prefix="arpo-bench-vllm-"))
        export_engine_folder(model, tok, folder)
        del model
        backend = VLLMBackend.from_pretrained(str(folder), dtype="float32", enforce_eager=True, seed=args.seed,
                                              max_model_len=args.max_response_tokens + 1024,
                                              # CPU: the KV space is this share of host memory; vLLM's 0.92
                                              # fails to start when anything else holds 2 GiB
                                              gpu_memory_utilization=0.5)
        load_s = time.perf_counter() - t0
        play(backend, backend.tokenizer, argparse.Namespace(**{**vars(args), "turns": 1, "max_new_tokens": 8}))  # warm-up
        rows = [play(backend, backend.tokenizer, args) for _ in range(args.repeats)]
        print(json.dumps({"vllm": rows, "load_s": round(load_s, 2),
                          "omp_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}))
        return
    from arpo_env.agents.backends.hf import HFBackend
    if args.model == "tiny":
        from arpo_env.agents.testing import tiny_model_and_tokenizer
        model, tok = tiny_model_and_tokenizer("llama", stop_boost=3.0)
    else:
        loaded = HFBackend.from_pretrained(None if args.model in (None, "embedded") else args.model)
        model, tok = loaded.model, loaded.tokenizer
    backends = {"hf_kv_reuse": HFBackend(model, tok, cache="dynamic"),
                "hf_full_prefill": HFBackend(model, tok, cache="dynamic", kv_reuse=False)}
    if args.compare_stock:  # reuse on, but the stock DynamicCache (torch.cat per step) and no prefill dedup
        backends["hf_kv_reuse_stock"] = HFBackend(model, tok, cache="dynamic", kv_buffer=False, dedup_prefill=False)
    if args.compare_share:  # reuse on, but a prefix common to different contexts of a call is not shared
        backends["hf_kv_reuse_noshare"] = HFBackend(model, tok, cache="dynamic", share_prefix_tokens=0)
    for b in backends.values():
        play(b, tok, argparse.Namespace(**{**vars(args), "turns": 1, "max_new_tokens": 8}))  # warm-up
    runs: dict[str, list] = {k: [] for k in backends}
    for _ in range(args.repeats):  # interleaved: on, off, on, off, ...
        for name, b in backends.items():
            runs[name].append(play(b, tok, args))
    result = {"bench": "rollout_multi_turn", "model": args.model or "embedded",
              "dtype": str(next(model.parameters()).dtype),
              "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads; box shared)",
              "episodes": args.batch, "group": args.group, "turns": args.turns, "max_new_tokens": args.max_new_tokens,
              "temperature": args.temperature, "repeats": args.repeats,
              **{k: _summary(v) for k, v in runs.items()}}
    on, off = result["hf_kv_reuse"], result["hf_full_prefill"]
    result["kv_reuse_speedup"] = round(on["tok_per_s"] / off["tok_per_s"], 3)
    if args.compare_share:
        result["share_prefix_speedup"] = round(on["tok_per_s"] / result["hf_kv_reuse_noshare"]["tok_per_s"], 3)
    if args.compare_stock:
        result["kv_buffer_dedup_speedup"] = round(on["tok_per_s"] / result["hf_kv_reuse_stock"]["tok_per_s"], 3)
    result["encoded_le_min"] = all(r["encoded_tokens"] <= r["min_tokens"] for r in on["runs"])
    if args.vllm_python:
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0-1")}
        cmd = [args.vllm_python, __file__, "--multi-turn", "--backend", "vllm", "--batch", str(args.batch),
               "--turns", str(args.turns), "--max-new-tokens", str(args.max_new_tokens),
               "--max-response-tokens", str(args.max_response_tokens), "--temperature", str(args.temperature),
               "--seed", str(args.seed), "--repeats", str(args.repeats), "--group", str(args.group)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("{")), None)
        if proc.returncode or line is None:
            result["vllm"] = {"error": (proc.stderr or proc.stdout)[-2000:]}
        else:
            got = json.loads(line)
            result["vllm"] = {**_summary(got["vllm"]), "load_s": got["load_s"], "omp_bind": got["omp_bind"],
                              "note": "run after the HF runs, in its own process (vLLM venv)"}
            result["hf_kv_reuse_vs_vllm"] = round(on["tok_per_s"] / result["vllm"]["tok_per_s"], 3)
            result["hf_full_prefill_vs_vllm"] = round(off["tok_per_s"] / result["vllm"]["tok_per_s"], 3)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description="rollout loop vs raw generate")
    ap.add_argument("--model", default=None, help="model dir; 'tiny' for a random tiny Llama; default (or "
                    "'embedded') SmolLM2")
    ap.add_argument("--multi-turn", action="store_true", help="HF with/without KV reuse (and vLLM) on "
                    "multi-turn episodes (see the module docstring)")
    ap.add_argument("--turns", type=int, default=3, help="--multi-turn: rounds per episode")
    ap.add_argument("--repeats", type=int, default=3, help="--multi-turn: repeats (medians reported)")
    ap.add_argument("--group", type=int, default=1, help="--multi-turn: episodes per env seed (a GRPO group: "
                    "identical first-turn prompts)")
    ap.add_argument("--compare-share", action="store_true", help="--multi-turn: also HF with reuse but "
                    "share_prefix_tokens=0 (each row encodes the system prompt the rows have in common)")
    ap.add_argument("--compare-stock", action="store_true", help="--multi-turn: also HF with reuse but the stock "
                    "DynamicCache and no prefill dedup (kv_buffer=False, dedup_prefill=False), interleaved")
    ap.add_argument("--vllm-python", default=None, help="--multi-turn: a Python with vLLM to compare with")
    ap.add_argument("--backend", default="hf", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="--multi-turn: also write the JSON here")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-response-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1, help="untimed generate calls first (compilation)")
    args = ap.parse_args()
    if args.multi_turn:
        if args.max_response_tokens < args.turns * args.max_new_tokens:
            args.max_response_tokens = args.turns * (args.max_new_tokens + 64)
        multi_turn(args)
        return

    import torch

    import arpo_env
    from arpo_env.agents import Agent
    from arpo_env.agents.backends.hf import HFBackend

    t0 = time.perf_counter()
    if args.model == "tiny":
        from arpo_env.agents.testing import tiny_model_and_tokenizer
        model, tok = tiny_model_and_tokenizer("llama", stop_boost=3.0)
        backend = HFBackend(model, tok)
    else:
        backend = HFBackend.from_pretrained(None if args.model == "embedded" else args.model)
        tok = backend.tokenizer
    load_s = time.perf_counter() - t0
    timed = TimedBackend(backend)
    agent = Agent(timed, tok, max_response_tokens=args.max_response_tokens)
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(args.batch)]
    seeds = list(range(args.batch))
    params = arpo_env.SamplingParams(temperature=args.temperature, top_p=0.95, top_k=20, repetition_penalty=1.1,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed)
    states = [agent.start(e, seed=s) for e, s in zip(envs, seeds)]
    prompts = [s.trajectory.token_ids for s in states]
    raw_params = dataclasses.replace(params, stop=envs[0].stop_strings)
    for _ in range(args.warmup):
        backend.generate(prompts, dataclasses.replace(raw_params, max_new_tokens=min(8, args.max_new_tokens)))
    t0 = time.perf_counter()
    raw = backend.generate(prompts, raw_params)
    raw_s = time.perf_counter() - t0
    raw_tokens = sum(len(g.token_ids) for g in raw)

    t0 = time.perf_counter()
    trajs = agent.rollout(envs, params, seeds=seeds)
    loop_s = time.perf_counter() - t0
    loop_tokens = sum(sum(t.loss_mask) for t in trajs)
    dev = backend.device
    print(json.dumps({
        "bench": "rollout", "model": args.model or "SmolLM2-135M-Instruct (embedded)",
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu ({platform.machine()}, "
                  f"{torch.get_num_threads()} threads)",
        "dtype": str(next(backend.model.parameters()).dtype), "batch": args.batch,
        "max_new_tokens": args.max_new_tokens, "max_response_tokens": args.max_response_tokens,
        "cache": "static" if backend._static() else "dynamic", "compiled": backend._static() and backend._compile_enabled(),
        "raw": {"generated_tokens": raw_tokens, "seconds": round(raw_s, 3), "tok_per_s": round(raw_tokens / raw_s, 1)},
        "loop": {"generated_tokens": loop_tokens, "seconds": round(loop_s, 3),
                 "tok_per_s": round(loop_tokens / loop_s, 1), "backend_seconds": round(timed.seconds, 3),
                 "backend_calls": timed.calls, "overhead_share": round(1 - timed.seconds / loop_s, 4),
                 "mean_turns": sum(len(t.turn_spans) for t in trajs) / len(trajs)},
        "loop_vs_raw": round((loop_tokens / loop_s) / (raw_tokens / raw_s), 3),
        "load_s": round(load_s, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
