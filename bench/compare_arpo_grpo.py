"""Train the same model with ARPO and with GRPO (same task, steps, rollout budget) and plot the curves.

Writes ``bench/results/<tag>_arpo.jsonl``, ``<tag>_grpo.jsonl`` (the runs' metrics.jsonl) and
``<tag>_arpo_vs_grpo.png`` (reward, accuracy, tool calls per sample per step), then prints a JSON summary.

GPU run of the issue (SmolLM2-135M-Instruct, >= 20 steps):
    python bench/compare_arpo_grpo.py --model PATH_OR_EMPTY_FOR_EMBEDDED --steps 20 --prompts 16 \
        --generations 8 --tag smollm2_calculator
CPU pipeline check (tiny random model; proves the pipeline, says nothing about learning):
    python bench/compare_arpo_grpo.py --model tiny --steps 3 --prompts 2 --generations 4 --tag cpu_tiny_pipeline
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="model path/id; '' for the embedded SmolLM2-135M-Instruct")
    p.add_argument("--env-id", default="arpo/Calculator-v0")
    p.add_argument("--data", default="env")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--completion-tokens", type=int, default=1024)
    p.add_argument("--turn-tokens", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args()

    from arpo_env.trainers.config import BranchingConfig, TrainConfig
    from arpo_env.trainers.metrics import read_metrics
    from arpo_env.trainers.trainer import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    model = args.model if args.model else None
    for algo in ("arpo", "grpo"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(model=model or "HuggingFaceTB/SmolLM2-135M-Instruct",
                              env_id=args.env_id, data=args.data, steps=args.steps, prompts_per_step=args.prompts,
                              rollout=BranchingConfig(algorithm=algo, rollouts_per_prompt=args.generations,
                                                  initial_rollouts=max(1, args.generations // 2)),
                              max_response_tokens=args.completion_tokens, max_turn_tokens=args.turn_tokens,
                              lr=args.lr, seed=args.seed, output_dir=tmp, save_every=0, tensorboard=False,
                              progress=True, resume=False)
            if model is None:  # the embedded model through agents' loader
                from arpo_env.agents.models import load_model_and_tokenizer
                m, tok = load_model_and_tokenizer(None, dtype="float32")
                tr = Trainer(cfg, model=m, tokenizer=tok)
            else:
                tr = Trainer(cfg)
            tr.train()
            tr.close()
            dst = out / f"{args.tag}_{algo}.jsonl"
            shutil.copy(Path(tmp) / "metrics.jsonl", dst)
            curves[algo] = read_metrics(dst)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("reward", "reward"), ("accuracy", "accuracy"), ("tool_calls_per_sample", "tool calls / sample")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (k, label) in zip(axes, keys):
        for algo, rows in curves.items():
            ax.plot([r["step"] for r in rows], [r[k] for r in rows], marker="o", label=algo.upper())
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"ARPO vs GRPO: {args.tag} (model {args.model or 'SmolLM2-135M-Instruct'}, {args.env_id})")
    fig.tight_layout()
    png = out / f"{args.tag}_arpo_vs_grpo.png"
    fig.savefig(png, dpi=110)
    summary = {algo: {k: sum(r[k] for r in rows) / len(rows) for k, _ in keys} | {
        "total_tool_calls": sum(r["tool_calls_per_sample"] * args.prompts * args.generations for r in rows),
        "branches": sum(r["branches"] for r in rows)} for algo, rows in curves.items()}
    print(json.dumps({"bench": "compare_arpo_grpo", "args": vars(args), "png": str(png), "mean_over_steps": summary},
                     indent=1))


if __name__ == "__main__":
    main()
