"""SFT data: multi-turn tool trajectories as ShareGPT rows, and their tokenisation as the agent sees them.

Accepted inputs (:func:`load_examples`; the schema is documented in ``docs/sft.md``):

- ShareGPT JSON / JSONL (LLaMA-Factory ``formatting: sharegpt``, columns ``messages: conversations``,
  ``system: system``, as ARPO's cold-start set): ``{"system": str?, "conversations": [{"from": "human",
  "value": ...}, {"from": "gpt", "value": ...}, {"from": "observation", "value": "<result>...</result>"},
  ...]}``. A ``gpt`` value may hold its tool results inline (ARPO's released rows do): every
  ``<result>...</result>`` block inside it is split out and treated as an observation (masked).
- an ``arpo eval`` result folder (a folder with ``results.jsonl``): rows whose ``score`` is at least
  ``min_score`` (rejection sampling); the user turn is the row's ``question``, the system prompt that of
  the benchmark's default env, and ``model_text`` is split at its ``<result>`` blocks.
- ``arpo traces`` output: ShareGPT JSONL as above.

Tokenisation (:func:`tokenize_example`) reuses :class:`arpo_env.agents.Agent`'s own helpers, so a sequence is
the one a rollout would build: ``Agent.prompt_ids(messages)`` (chat template, generation prompt added), then
each model turn encoded without special tokens (loss mask 1) and each observation by
``Agent.observation_ids`` (loss mask 0). No EOS follows the final ``</answer>`` (a rollout stops there).

Not covered: multi-turn human follow-ups after the first (a second ``human`` turn is an error), images,
JSON function-call columns (``function_call``/``tools``).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_BLOCK = re.compile(r"<result>.*?</result>", re.DOTALL)
ROLES = {"human": "user", "user": "user", "gpt": "model", "assistant": "model", "observation": "tool",
         "tool": "tool", "function": "tool", "system": "system"}


@dataclass
class Example:
    """One trajectory: the chat prompt (system, user) and the response as (text, is_model) segments."""

    system: str | None
    user: str
    segments: list[tuple[str, bool]] = field(default_factory=list)
    source: str = ""

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*head, {"role": "user", "content": self.user}]

    def to_sharegpt(self) -> dict[str, Any]:
        conv = [{"from": "human", "value": self.user}]
        conv += [{"from": "gpt" if m else "observation", "value": t} for t, m in self.segments]
        return {"system": self.system, "conversations": conv}


def split_results(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into model segments and ``<result>...</result>`` blocks (observations)."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in RESULT_BLOCK.finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], True))
        out.append((m.group(0), False))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], True))
    return out


def from_sharegpt(row: dict[str, Any], where: str = "") -> Example:
    """One ShareGPT row as an :class:`Example`; ``ValueError`` naming ``where`` for a malformed one."""
    conv = row.get("conversations", row.get("messages"))
    if not isinstance(conv, list) or not conv:
        raise ValueError(f"{where}: a ShareGPT row needs a non-empty 'conversations' list")
    system = row.get("system")
    user: str | None = None
    segments: list[tuple[str, bool]] = []
    for i, turn in enumerate(conv):
        who = ROLES.get(str(turn.get("from", turn.get("role", ""))))
        value = turn.get("value", turn.get("content"))
        if who is None or not isinstance(value, str):
            raise ValueError(f"{where}: turn {i} needs 'from' in {sorted(ROLES)} and a string 'value'")
        if who == "system":
            system = value
        elif who == "user":
            if user is not None:
                raise ValueError(f"{where}: turn {i}: only one human turn is supported")
            user = value
        elif user is None:
            raise ValueError(f"{where}: turn {i}: the first non-system turn must be 'human'")
        elif who == "model":
            segments += split_results(value)
        else:
            segments.append((value, False))
    if user is None or not any(m for _, m in segments):
        raise ValueError(f"{where}: a row needs a human turn and at least one gpt turn")
    return Example(system, user, segments, source=where)


def _read_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
        for i, r in enumerate(rows):
            yield f"{path}[{i}]", r
        return
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield f"{path}:{i}", json.loads(line)


def load_eval_folder(folder: Path, min_score: float) -> list[Example]:
    """Rows of ``folder/results.jsonl`` with ``score >= min_score`` and no error (rejection sampling)."""
    import arpo_env
    from arpo_env.benchmarks.registry import get_benchmark

    systems: dict[str, str] = {}
    out = []
    for where, row in _read_rows(folder / "results.jsonl"):
        if row.get("error") or float(row.get("score") or 0.0) < min_score or not row.get("model_text"):
            continue
        name = str(row["benchmark"])
        if name not in systems:
            env = arpo_env.make(get_benchmark(name).env_id, **get_benchmark(name).env_kwargs)
            systems[name] = env.unwrapped.system_prompt
            env.close()
        out.append(Example(systems[name], str(row["question"]), split_results(str(row["model_text"])),
                           source=where))
    return out


def load_examples(paths: Iterable[str | Path], min_score: float = 1.0) -> list[Example]:
    """Every example of ``paths`` (ShareGPT ``.json``/``.jsonl`` files, or ``arpo eval`` folders)."""
    out: list[Example] = []
    for p in map(Path, paths):
        if p.is_dir():
            if not (p / "results.jsonl").exists():
                raise ValueError(f"{p}: a folder must hold an arpo eval results.jsonl")
            out += load_eval_folder(p, min_score)
        elif p.is_file():
            out += [from_sharegpt(r, w) for w, r in _read_rows(p)]
        else:
            raise FileNotFoundError(f"--data {p}: no such file or folder")
    return out


def data_hash(paths: Iterable[str | Path]) -> str:
    """SHA-256 over the data files (an eval folder: its results.jsonl), in order."""
    h = hashlib.sha256()
    for p in map(Path, paths):
        f = p / "results.jsonl" if p.is_dir() else p
        h.update(f.read_bytes())
    return h.hexdigest()


def tokenize_example(ex: Example, agent: Any, max_len: int | None = None) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of ``ex`` exactly as ``agent`` (an :class:`arpo_env.agents.Agent`) builds a
    rollout; cut to ``max_len`` tokens."""
    ids = list(agent.prompt_ids(ex.messages()))
    mask = [0] * len(ids)
    for text, is_model in ex.segments:
        piece = (list(agent.tokenizer.encode(text, add_special_tokens=False)) if is_model
                 else agent.observation_ids(text))
        ids += piece
        mask += [int(is_model)] * len(piece)
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask
