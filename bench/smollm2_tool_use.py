"""How often does the embedded SmolLM2-135M-Instruct call the calculator when prompted as ARPO does?

Plays N calculator tasks (seeds 0..N-1) through ``agents.Agent`` with the ``hf`` backend and ARPO's
evaluation sampling (T 0.6, top-p 0.95, top-k 20, repetition penalty 1.1), and prints JSON: the share of
episodes with at least one well-formed calculator call, with a calculator call that returned no error,
with an answer, correct answers, mean reward, tokens and wall time.

    python bench/smollm2_tool_use.py --tasks 50 --max-new-tokens 96
"""
from __future__ import annotations

import argparse
import json
import platform
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=96, help="per model turn")
    ap.add_argument("--max-response-tokens", type=int, default=320)
    ap.add_argument("--model", default=None, help="model directory (default: embedded SmolLM2)")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    import arpo_env
    from arpo_env.agents import load_agent

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    agent = load_agent("hf", args.model, max_response_tokens=args.max_response_tokens)
    load_s = time.perf_counter() - t0
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(args.tasks)]
    params = arpo_env.SamplingParams(temperature=args.temperature, top_p=0.95, top_k=20, repetition_penalty=1.1,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed)
    t0 = time.perf_counter()
    trajs = agent.rollout(envs, params, seeds=list(range(args.tasks)))
    wall = time.perf_counter() - t0
    n = len(trajs)
    called = [any(c.name == "calculator" for c in t.tool_calls) for t in trajs]
    ok_call = [any(c.name == "calculator" and not c.error for c in t.tool_calls) for t in trajs]
    answered = [t.answer is not None for t in trajs]
    correct = [t.reward > 0 for t in trajs]
    generated = sum(sum(t.loss_mask) for t in trajs)
    example = next((t.text for t, c in zip(trajs, called) if c), trajs[0].text)
    print(json.dumps({
        "bench": "smollm2_tool_use", "model": args.model or "SmolLM2-135M-Instruct (embedded GGUF Q4_1)",
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "tasks": n, "sampling": {"temperature": args.temperature, "top_p": 0.95, "top_k": 20,
                                  "repetition_penalty": 1.1, "max_new_tokens": args.max_new_tokens,
                                  "max_response_tokens": args.max_response_tokens},
        "share_calling_calculator": sum(called) / n, "share_successful_calculator_call": sum(ok_call) / n,
        "share_answered": sum(answered) / n, "share_correct": sum(correct) / n,
        "mean_reward": sum(t.reward for t in trajs) / n,
        "mean_turns": sum(len(t.turn_spans) for t in trajs) / n,
        "finish_reasons": {r: sum(t.finish_reason == r for t in trajs) for r in {t.finish_reason for t in trajs}},
        "generated_tokens": generated, "rollout_s": round(wall, 2), "generated_tok_per_s": round(generated / wall, 1),
        "load_s": round(load_s, 2), "example_response": example[:600],
    }, indent=1))


if __name__ == "__main__":
    main()
