"""What the policy sampled: a few trajectories of every training step in ``output_dir/samples.jsonl``.

One JSON row per sampled leaf (``TrainConfig.samples_per_step`` per step, 0 disables), written when the
step's rollout is done, flushed and fsynced. A row holds:

- ``step``, ``prompt`` (index of the prompt in the step), ``data_pos`` (its position in the task stream),
  ``leaf`` (the trajectory's id in its tree), ``question``, ``gold``, ``reward``, ``answer``,
  ``finish_reason``, ``tool_calls`` (name, args, error, turn of each);
- ``segments``: the response cut into model turns (``kind: "model"``) and tool results (``kind: "tool"``),
  decoded, with their token range ``[start, end)`` and ``shared`` = inherited from the parent branch;
- ``branch``: for a forked leaf, its parent, the token where it diverges and the fork's entropy and
  probability (``None`` for a leaf sampled from scratch); ``forks``: the leaves forked from this one, with
  their branch tokens (every branch point of the leaf, so both sides of a fork are visible).

Which leaves: those that take part in a branch (forked, or forked from) come first, then the others,
each group by prompt then leaf id, so an ARPO step with any branch shows one.

Resume: rows of steps after the resumed checkpoint (written before a crash, then redone) are dropped
when the writer opens, so every step appears once; a torn last line is dropped too. A fresh run (no
resume) starts a new file. TensorBoard, when on, gets the same rows as text (tag ``samples``).

Not covered: the prompt's system text (only the question is kept); the token ids themselves.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from arpo_env.agent import Trajectory
from arpo_env.trainers.arpo_rollout import RolloutBatch
from arpo_env.trainers.tree import RolloutTree

SAMPLES = "samples.jsonl"
Decode = Callable[[Sequence[int]], str]


class TextWriter(Protocol):
    """The part of TensorBoard's ``SummaryWriter`` used here."""

    def add_text(self, tag: str, text_string: str, global_step: int | None = None) -> None: ...


def segments(traj: Trajectory, decode: Decode) -> list[dict[str, Any]]:
    """The response as model turns and tool results (the tokens between turns), decoded."""
    out: list[dict[str, Any]] = []
    pos, n = traj.prompt_len, len(traj.token_ids)
    cut = traj.branch_at if traj.branch_at is not None else traj.prompt_len

    def add(kind: str, start: int, end: int) -> None:
        if end > start:
            out.append({"kind": kind, "start": start, "end": end, "shared": end <= cut,
                        "text": decode(traj.token_ids[start:end])})
    for start, end in traj.turn_spans:
        add("tool", pos, start)
        add("model", start, end)
        pos = max(pos, end)
    add("tool", pos, n)
    return out


def choose(batch: RolloutBatch, count: int) -> list[tuple[int, Trajectory]]:
    """``count`` (prompt index, leaf) pairs: leaves in a branch first (see the module docstring)."""
    picks = []
    for p, tree in enumerate(batch.trees):
        in_branch = {e.parent for e in tree.events} | {e.child for e in tree.events}
        picks += [(0 if leaf.id in in_branch else 1, p, leaf.id, leaf) for leaf in tree.leaves]
    picks.sort(key=lambda x: x[:3])
    return [(p, leaf) for _, p, _, leaf in picks[:count]]


def sample_row(step: int, prompt: int, data_pos: int, tree: RolloutTree, leaf: Trajectory,
               decode: Decode) -> dict[str, Any]:
    """The JSON row of one leaf (fields in the module docstring)."""
    event = next((e for e in tree.events if e.child == leaf.id), None)
    branch = None
    if leaf.parent is not None:
        branch = {"parent": leaf.parent, "at": leaf.branch_at,
                  **({"entropy": event.entropy, "delta": event.delta, "probability": event.probability,
                      "round": event.round} if event is not None else {})}
    forks = [{"child": e.child, "at": e.branch_at, "entropy": e.entropy, "probability": e.probability}
             for e in tree.events if e.parent == leaf.id]
    task = leaf.task or {}
    return {"step": step, "prompt": prompt, "data_pos": data_pos, "leaf": leaf.id,
            "question": task.get("question"), "gold": task.get("answer"), "reward": leaf.reward,
            "answer": leaf.answer, "finish_reason": leaf.finish_reason,
            "tool_calls": [{"name": c.name, "args": c.args, "error": c.error, "turn": c.turn} for c in leaf.tool_calls],
            "branch": branch, "forks": forks, "segments": segments(leaf, decode)}


def as_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as Markdown text (TensorBoard's text panel)."""
    parts = []
    for r in rows:
        b = r["branch"]
        head = f"**prompt {r['prompt']} leaf {r['leaf']}**, reward {r['reward']:.3f}"
        if b:
            head += f", branched from leaf {b['parent']} at token {b['at']}"
        body = "\n".join(f"[{s['kind']}{' shared' if s['shared'] else ''}] {s['text']}" for s in r["segments"])
        parts.append(f"{head}\n\n```\n{body}\n```")
    return "\n\n".join(parts)


class SampleWriter:
    """Appends each step's sample to ``output_dir/samples.jsonl`` (see the module docstring)."""

    def __init__(self, output_dir: str | Path, count: int, decode: Decode, *, resume_step: int | None = None,
                 tensorboard: TextWriter | None = None):
        self.path = Path(output_dir) / SAMPLES
        self.count, self.decode, self.tb = count, decode, tensorboard
        if self.path.exists():
            if resume_step is None:
                self.path.unlink()
            else:
                keep = [r for r in read_samples(self.path) if int(r.get("step", 0)) <= resume_step]
                tmp = self.path.with_name(f"{SAMPLES}.{os.getpid()}.tmp")
                tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")
                os.replace(tmp, self.path)

    def write(self, step: int, batch: RolloutBatch, first_data_pos: int = 0) -> list[dict[str, Any]]:
        """Write the sample of one step; returns its rows (none when ``count`` is 0)."""
        if self.count <= 0:
            return []
        rows = [sample_row(step, p, first_data_pos + p, batch.trees[p], leaf, self.decode)
                for p, leaf in choose(batch, self.count)]
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        if self.tb is not None and rows:
            self.tb.add_text("samples", as_markdown(rows), step)
        return rows


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``samples.jsonl``; lines that do not parse (a line torn by a kill) are skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
