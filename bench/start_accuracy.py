"""Start accuracy of a model on an env's held-out tasks, sampled as training samples them (temperature 1).

Picks a task for an RL comparison: RL has signal where a prompt's samples disagree (some right, some wrong),
so it prints the accuracy over ``--prompts`` x ``--samples`` and how many prompts were mixed. The tasks are
the trainer's held-out stream (positions 10**9 + i, as the built-in evaluation uses), never training tasks.

    python bench/start_accuracy.py --env-id arpo/Python-v0 --prompts 8 --samples 2
    python bench/start_accuracy.py --env-kwargs '{"digits": 4, "terms": 5}' --prompts 8 --samples 2
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_arpo_grpo import SHIPPED_ADAPTER, load_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="'' for the embedded SmolLM2-135M-Instruct")
    p.add_argument("--adapter", default=str(SHIPPED_ADAPTER), help="LoRA adapter merged first; 'none' for none")
    p.add_argument("--env-id", default="arpo/Calculator-v0")
    p.add_argument("--env-kwargs", default="{}")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--completion-tokens", type=int, default=256)
    p.add_argument("--turn-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import numpy as np
    import torch

    from arpo_env.trainers.config import BranchingConfig, TrainConfig
    from arpo_env.trainers.trainer import Trainer

    torch.set_num_threads(args.threads)
    model, tok, info = load_model(args.model, args.adapter)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(env_id=args.env_id, env_kwargs=json.loads(args.env_kwargs), steps=0,
                          prompts_per_step=args.prompts,
                          rollout=BranchingConfig(algorithm="grpo", rollouts_per_prompt=args.samples,
                                                  initial_rollouts=args.samples),
                          max_response_tokens=args.completion_tokens, max_turn_tokens=args.turn_tokens,
                          output_dir=tmp, tensorboard=False, progress=False, resume=False)
        with Trainer(cfg, model=model, tokenizer=tok) as tr:
            t0 = time.perf_counter()
            batch = tr.collect([tr.tasks.get(10 ** 9 + i) for i in range(args.prompts)])
            secs = time.perf_counter() - t0
    right = [[leaf.reward >= 1.0 for leaf in tree.leaves] for tree in batch.trees]
    leaves = [leaf for tree in batch.trees for leaf in tree.leaves]
    print(json.dumps({"bench": "start_accuracy", "args": vars(args), "provenance": info,
                      "accuracy": float(np.mean(right)), "reward": float(np.mean([x.reward for x in leaves])),
                      "tool_calls_per_sample": float(np.mean([len(x.tool_calls) for x in leaves])),
                      "mixed_prompts": sum(0 < sum(r) < len(r) for r in right), "prompts": args.prompts,
                      "response_tokens": float(np.mean([len(x.token_ids) - x.prompt_len for x in leaves])),
                      "seconds": round(secs, 1)}, indent=1, default=str))


if __name__ == "__main__":
    main()
