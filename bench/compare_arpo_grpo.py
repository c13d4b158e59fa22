"""Train the same model with ARPO and with GRPO (same task, steps, rollout budget M, seeds) and plot the curves.

Per seed and algorithm it writes ``bench/results/<tag>_<algo>_seed<k>.jsonl`` (the run's metrics.jsonl), then
``<tag>_arpo_vs_grpo.png`` (reward, accuracy, tool calls per sample, branches per step; the mean over seeds,
thin lines per seed) and ``<tag>_summary.json`` (printed too): per algorithm the first/last-5-step accuracy,
tool calls per sample (as listed in each leaf, and as executed: a branch inherits its parent's calls), branches
per step and seconds per step.

The model is SmolLM2-135M-Instruct (embedded) with a LoRA adapter merged in (``--adapter``, default the
shipped agents/adapters/smollm2-tools; ``none`` for the raw model); its sha256 goes into the summary.

CPU run of bench/results/README.md and docs/arpo-vs-grpo.md (Python-v0, 20 steps x 1 prompt x M=4):
    python bench/compare_arpo_grpo.py --env-id arpo/Python-v0 --steps 20 --prompts 1 --generations 4 \
        --completion-tokens 320 --turn-tokens 128 --lr 1e-4 --lora-layers -4 -3 -2 -1 --seeds 0 --tag smollm2_python
Redraw the plot and summary from the JSONL files already there (e.g. after adding a seed):
    python bench/compare_arpo_grpo.py --plot-only --seeds 0 1 --tag smollm2_python (plus the run's flags)
CPU pipeline check (tiny random model; proves the pipeline, says nothing about learning):
    python bench/compare_arpo_grpo.py --model tiny --steps 3 --prompts 2 --generations 4 --tag cpu_tiny_pipeline
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ADAPTER = ROOT / "agents" / "adapters" / "smollm2-tools"
PANELS = [("reward", "reward"), ("accuracy", "accuracy (reward >= 1)"),
          ("tool_calls_per_sample", "tool calls / sample"), ("branches", "branches / step")]


def load_model(model: str, adapter: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, provenance): ``model`` '' is the embedded SmolLM2 (+ ``adapter`` unless 'none')."""
    import torch

    from arpo_env.agents.models import load_model_and_tokenizer, merge_adapter
    if model == "tiny":
        from arpo_env.agents.testing import tiny_model_and_tokenizer
        m, tok = tiny_model_and_tokenizer(seed=0)
        return m, tok, {"model": "tiny", "adapter": None}
    m, tok = load_model_and_tokenizer(model or None, dtype=torch.float32, base_only=True)
    info: dict[str, Any] = {"model": model or "SmolLM2-135M-Instruct (embedded)", "adapter": None}
    if adapter != "none":
        m = merge_adapter(m, adapter)
        info["adapter"] = {"path": adapter, **m.arpo_adapter}
    return m, tok, info


def run_one(args: argparse.Namespace, algo: str, seed: int, out: Path) -> Path:
    from arpo_env.trainers.config import BranchingConfig, TrainConfig
    from arpo_env.trainers.trainer import Trainer

    model, tok, info = load_model(args.model, args.adapter)
    m = args.generations
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = str(Path(args.runs_dir) / f"{args.tag}_{algo}_seed{seed}") if args.runs_dir else tmp_dir
        cfg = TrainConfig(model=args.model or None, env_id=args.env_id, env_kwargs=json.loads(args.env_kwargs),
                          data=args.data, steps=args.steps, prompts_per_step=args.prompts,
                          rollout=BranchingConfig(algorithm=algo, rollouts_per_prompt=m,
                                                  initial_rollouts=args.initial_rollouts or max(1, m // 2)),
                          max_response_tokens=args.completion_tokens, max_turn_tokens=args.turn_tokens,
                          lr=args.lr, lora=bool(args.lora_layers), lora_layers=list(args.lora_layers),
                          lora_r=args.lora_r, lora_alpha=2 * args.lora_r, reuse_old_logprobs=True,
                          seed=seed, data_seed=seed, output_dir=tmp, save_every=0,
                          tensorboard=False, progress=True, resume=False, samples_per_step=2,
                          micro_batch_size=args.micro_batch)
        with Trainer(cfg, model=model, tokenizer=tok) as tr:
            tr.train()
        dst = out / f"{args.tag}_{algo}_seed{seed}.jsonl"
        shutil.copy(Path(tmp) / "metrics.jsonl", dst)
        (out / f"{args.tag}_{algo}_seed{seed}.config.json").write_text(
            json.dumps({"provenance": info, "config": cfg.to_dict()}, indent=1, default=str) + "\n")
    return dst


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means over the run, over its first k and last k steps (k = min(5, steps // 2), at least 1)."""
    def mean(key: str, part: list[dict[str, Any]]) -> float:
        vals = [r[key] for r in part if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else float("nan")
    k = max(1, min(5, len(rows) // 2))
    first, last = rows[:k], rows[-k:]
    out: dict[str, float] = {"steps": len(rows), "k": k}
    for key in ("reward", "accuracy", "tool_calls_per_sample", "tool_calls_executed_per_sample", "branches",
                "time_step"):
        out[f"{key}_mean"] = mean(key, rows)
        out[f"{key}_first_k"] = mean(key, first)
        out[f"{key}_last_k"] = mean(key, last)
    return out


def plot_and_summarize(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from arpo_env.trainers.metrics import read_metrics

    curves = {algo: {s: read_metrics(out / f"{args.tag}_{algo}_seed{s}.jsonl") for s in args.seeds}
              for algo in args.algorithms}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(17, 3.8))
    colors = {"arpo": "tab:blue", "grpo": "tab:orange"}
    for ax, (key, label) in zip(axes, PANELS):
        for algo, by_seed in curves.items():
            n = min(len(r) for r in by_seed.values())
            steps = [r["step"] for r in next(iter(by_seed.values()))[:n]]
            vals = np.array([[float(r[key]) for r in rows[:n]] for rows in by_seed.values()])
            if len(by_seed) > 1:
                for v in vals:
                    ax.plot(steps, v, color=colors.get(algo), alpha=0.25, lw=0.8)
            ax.plot(steps, vals.mean(0), color=colors.get(algo), marker="o", ms=3, label=algo.upper())
            if key == "tool_calls_per_sample" and algo == "arpo":
                ex = np.array([[float(r.get("tool_calls_executed_per_sample", np.nan)) for r in rows[:n]]
                               for rows in by_seed.values()])
                ax.plot(steps, ex.mean(0), color=colors["arpo"], ls="--", label="ARPO executed")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend(fontsize=8)
    fig.suptitle(f"ARPO vs GRPO: {args.tag} ({args.env_id} {args.env_kwargs}; mean of seeds {args.seeds})")
    fig.tight_layout()
    png = out / f"{args.tag}_arpo_vs_grpo.png"
    fig.savefig(png, dpi=110)
    summary = {"bench": "compare_arpo_grpo", "args": vars(args), "png": str(png.relative_to(ROOT))
               if png.is_relative_to(ROOT) else str(png),
               "per_seed": {algo: {str(s): summarize(rows) for s, rows in by_seed.items()}
                            for algo, by_seed in curves.items()}}
    summary["mean_over_seeds"] = {algo: {k: float(np.mean([v[k] for v in per.values()]))
                                         for k in next(iter(per.values()))}
                                  for algo, per in summary["per_seed"].items()}
    (out / f"{args.tag}_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="model path/id; '' for the embedded SmolLM2-135M-Instruct; tiny")
    p.add_argument("--adapter", default=str(SHIPPED_ADAPTER), help="LoRA adapter merged first; 'none' for none")
    p.add_argument("--env-id", default="arpo/Calculator-v0")
    p.add_argument("--env-kwargs", default="{}", help='JSON, e.g. \'{"digits": 4, "terms": 5}\'')
    p.add_argument("--data", default="env")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--generations", type=int, default=4, help="M: leaves per prompt (both algorithms)")
    p.add_argument("--initial-rollouts", type=int, default=0, help="ARPO's N (0: M // 2)")
    p.add_argument("--completion-tokens", type=int, default=384)
    p.add_argument("--turn-tokens", type=int, default=192)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--lora-layers", type=int, nargs="*", default=[],
                   help="train a fresh LoRA on these decoder layers only (e.g. -4 -3 -2 -1); none: all weights")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--algorithms", nargs="+", default=["arpo", "grpo"], choices=["arpo", "grpo"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared box)")
    p.add_argument("--tag", default="run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--runs-dir", default="", help="keep each run folder here (default: a temporary one)")
    p.add_argument("--plot-only", action="store_true", help="only redraw from the JSONL files in --out")
    args = p.parse_args()
    if args.adapter != "none" and not (Path(args.adapter) / "adapter_model.safetensors").exists():
        p.error(f"--adapter {args.adapter}: no adapter_model.safetensors there (or pass --adapter none)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        import torch
        torch.set_num_threads(args.threads)
        for seed in args.seeds:
            for algo in args.algorithms:
                t0 = time.perf_counter()
                dst = run_one(args, algo, seed, out)
                print(json.dumps({"run": str(dst), "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    print(json.dumps(plot_and_summarize(args, out), indent=1))


if __name__ == "__main__":
    main()
