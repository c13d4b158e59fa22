"""Rollout-loop throughput vs the raw backend: generated tokens/s of ``Agent.rollout`` and of
``backend.generate`` on the same prompts, and the loop's overhead (time outside the backend).

    python bench/rollout.py                       # embedded SmolLM2, CPU (or CUDA if present)
    python bench/rollout.py --batch 256 --max-new-tokens 256   # the GPU acceptance setting
    python bench/rollout.py --model tiny          # random tiny Llama (harness only)

Prints one JSON object. ``raw`` is one ``generate`` call over the prompts (same sampling, same stop
strings, ``max_new_tokens`` per row); ``loop`` is a full multi-turn rollout over calculator envs, whose
backend time is measured separately, so ``loop.overhead_share`` is the share of the loop's wall time
spent outside ``generate`` (templating, parsing, env steps, bookkeeping).
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

    def generate(self, contexts, params):
        t0 = time.perf_counter()
        out = self.inner.generate(contexts, params)
        self.seconds += time.perf_counter() - t0
        self.tokens += sum(len(g.token_ids) for g in out)
        self.calls += 1
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description="rollout loop vs raw generate")
    ap.add_argument("--model", default=None, help="model dir; 'tiny' for a random tiny Llama; default SmolLM2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-response-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1, help="untimed generate calls first (compilation)")
    args = ap.parse_args()

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
        backend = HFBackend.from_pretrained(args.model)
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
