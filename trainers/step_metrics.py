"""A step's rollout metrics from per-leaf lists, so that ranks' shares combine into the global step's.

:func:`rollout_summary` keeps what the metrics need of one rank's :class:`RolloutBatch` (lists per leaf,
per prompt, per branch; summed counters; times); :func:`merge` concatenates lists, sums counters and takes
the max of times (the slowest rank sets the step's pace); :func:`rollout_metrics` applies the formulas the
single-process trainer always used, so world size 1 logs exactly what it logged before and a run of
world size W logs the metrics of its global batch (means over every leaf of every rank).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from arpo_env.trainers.arpo_rollout import RolloutBatch

SUMS = ("tool_calls_executed", "branches", "branch_attempts", "topups", "generated_tokens", "gen_total", "gen_unique",
        "prompts")
MAXES = ("time_gen", "time_tools", "time_rollout", "time_update", "time_step")


def rollout_summary(batch: RolloutBatch, time_rollout: float, time_update: float) -> dict[str, Any]:
    """Lists and counters of one rank's rollout (see the module docstring)."""
    leaves = [t for tree in batch.trees for t in tree.leaves]
    st = batch.stats
    return {
        "rewards": [float(t.reward) for t in leaves], "tool_calls": [len(t.tool_calls) for t in leaves],
        "response_tokens": [len(t.token_ids) - t.prompt_len for t in leaves],
        "branch_entropies": [float(h) for h in st.branch_entropies], "initial_n": list(st.initial_n),
        "tool_calls_executed": st.tool_calls,  # each call once: branches inherit their parents' calls
        "branches": st.branches, "branch_attempts": st.branch_attempts, "topups": st.topups,
        "generated_tokens": st.generated_tokens, "prompts": len(batch.trees),
        "gen_total": sum(tree.generated_tokens()[0] for tree in batch.trees),
        "gen_unique": sum(tree.generated_tokens()[1] for tree in batch.trees),
        "time_gen": st.gen_seconds, "time_tools": st.tool_seconds,
        "time_rollout": time_rollout, "time_update": time_update, "time_step": time_rollout + time_update,
    }


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several ranks' (lists concatenated in rank order, counters summed, times maxed)."""
    out: dict[str, Any] = {}
    for key in parts[0]:
        if key in MAXES:
            out[key] = max(p[key] for p in parts)
        elif key in SUMS:
            out[key] = sum(p[key] for p in parts)
        else:
            out[key] = [v for p in parts for v in p[key]]
    return out


def rollout_metrics(s: dict[str, Any]) -> dict[str, Any]:
    """The step's rollout metrics (the keys and formulas of ``metrics.jsonl``) from a summary."""
    gen_total, gen_unique = s["gen_total"], s["gen_unique"]
    return {
        "reward": float(np.mean(s["rewards"])),
        "accuracy": float(np.mean([r >= 1.0 for r in s["rewards"]])),
        "tool_calls_per_sample": float(np.mean(s["tool_calls"])),
        "tool_calls_executed": s["tool_calls_executed"],
        "tool_calls_executed_per_sample": s["tool_calls_executed"] / len(s["rewards"]) if s["rewards"] else 0.0,
        "branches": s["branches"], "branch_attempts": s["branch_attempts"], "topups": s["topups"],
        "branch_entropy": float(np.mean(s["branch_entropies"])) if s["branch_entropies"] else float("nan"),
        "initial_n": float(np.mean(s["initial_n"])),
        "response_tokens": float(np.mean(s["response_tokens"])),
        "generated_tokens": s["generated_tokens"], "leaf_model_tokens": gen_total,
        "prefix_saved_share": 1.0 - gen_unique / gen_total if gen_total else 0.0,
        "time_gen": s["time_gen"], "time_tools": s["time_tools"],
        "time_rollout": s["time_rollout"], "time_update": s["time_update"], "time_step": s["time_step"],
    }
