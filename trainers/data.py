"""Task streams for training: deterministic by position, so a checkpoint's data position resumes exactly.

- :class:`EnvTasks`: the env's own generator (e.g. ``arpo/Calculator-v0``'s arithmetic questions); task i is
  drawn with ``np.random.default_rng([seed, i])``: an endless stream.
- :class:`FileTasks`: rows of a ``.parquet`` in verl's RL format (``prompt`` chat messages,
  ``reward_model.ground_truth``; ARPO's train_10k) or a ``.jsonl`` with ``question``/``answer`` (GSM8K's
  ``answer`` "rationale #### N" becomes ``N``). Epochs are seeded permutations. verl files store ``\\b`` of
  ``\\boxed`` as a backspace character: :func:`repair_backspace` fixes it on load. The row's own system
  prompt goes to ``metadata["system_prompt"]``, and with ``use_data_system_prompt`` also to the options'
  ``system_prompt`` (the env then shows it instead of its own): :meth:`TaskStream.options` builds the
``reset`` options ``{"task": Task, "system_prompt"?}``.

A stream yields :class:`arpo_env.Task` s; the options dict exists only at the env's ``reset`` boundary.
Not covered: streaming datasets larger than memory.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arpo_env.extras import require
from arpo_env.task import Task


class TaskStream(Protocol):
    def get(self, index: int) -> Task:
        """Task number ``index`` (a pure function of the index)."""
        ...

    def options(self, task: Task) -> dict[str, Any]:
        """The ``reset`` options that play ``task`` (``{"task": task}``, plus the row's own
        ``system_prompt`` where the stream is told to use it)."""
        ...


def reset_options(task: Task, use_system_prompt: bool = False) -> dict[str, Any]:
    """``{"task": task}``, with ``"system_prompt": task.metadata["system_prompt"]`` when
    ``use_system_prompt`` and the task has one (``TextEnv.reset`` then shows it instead of its own)."""
    opts: dict[str, Any] = {"task": task}
    system = task.metadata.get("system_prompt")
    if use_system_prompt and system:
        opts["system_prompt"] = system
    return opts


def repair_backspace(text: str) -> str:
    """verl parquet files hold ``\\x08oxed`` for ``\\boxed``: put the backslash-b back."""
    return text.replace("\x08", "\\b")


class EnvTasks:
    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, seed: int = 0):
        import arpo_env
        env = arpo_env.make(env_id, **(env_kwargs or {}))
        self.source = env.unwrapped.task_source
        env.close()
        self.seed = seed

    def get(self, index: int) -> Task:
        task = self.source.sample(np.random.default_rng([self.seed, index]))
        return Task(task.question, list(task.answer), id=task.id or f"gen-{index}",
                    metadata=copy.deepcopy(task.metadata))

    def options(self, task: Task) -> dict[str, Any]:
        return reset_options(task)


class FileTasks:
    def __init__(self, path: str | Path, seed: int = 0, use_system_prompt: bool = False):
        self.path = Path(path)
        self.use_system_prompt = use_system_prompt
        if not self.path.exists():
            raise FileNotFoundError(f"training data {self.path} does not exist")
        self.rows: list[Task] = self._load()
        if not self.rows:
            raise ValueError(f"{self.path} holds no tasks")
        self.seed = seed
        self._perm: dict[int, np.ndarray] = {}

    def _load(self) -> list[Task]:
        if self.path.suffix == ".parquet":
            require("train", "pyarrow", needed_by=f"reading {self.path}")
            import pyarrow.parquet as pq
            rows = []
            for i, r in enumerate(pq.read_table(self.path).to_pylist()):
                msgs = r.get("prompt") or []
                user = next((m["content"] for m in reversed(msgs) if m.get("role") == "user"), None)
                system = next((m["content"] for m in msgs if m.get("role") == "system"), None)
                question = (r.get("extra_info") or {}).get("question") or user
                gold = (r.get("reward_model") or {}).get("ground_truth")
                if question is None or gold is None:
                    continue
                meta = {"data_source": r.get("data_source"), "ability": r.get("ability")}
                if system:
                    meta["system_prompt"] = repair_backspace(system)
                rows.append(Task(repair_backspace(question), [repair_backspace(str(gold))],
                                 id=f"{self.path.stem}-{i}", metadata=meta))
            return rows
        rows = []
        with open(self.path) as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                r = json.loads(line)
                q = r.get("question") or r.get("problem")
                a = r.get("answer")
                if isinstance(a, str) and "####" in a:
                    a = a.split("####")[-1].strip().replace(",", "")
                rows.append(Task(q, a if isinstance(a, list) else [str(a)], id=str(r.get("id", r.get("idx", i)))))
        return rows

    def get(self, index: int) -> Task:
        n = len(self.rows)
        epoch, pos = divmod(index, n)
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(n)}
        return copy.deepcopy(self.rows[int(self._perm[epoch][pos])])

    def options(self, task: Task) -> dict[str, Any]:
        return reset_options(task, self.use_system_prompt)


def make_task_stream(cfg: Any) -> TaskStream:
    """The stream named by ``cfg.data`` (see :class:`arpo_env.trainers.config.TrainConfig`)."""
    if cfg.data == "env":
        return EnvTasks(cfg.env_id, cfg.env_kwargs, cfg.data_seed)
    if cfg.data == "gsm8k":
        if not cfg.data_path:
            raise ValueError("data=gsm8k needs data_path= a GSM8K train .jsonl (question, answer '... #### N'); "
                             "the shipped gsm8k file is the test set and is not used for training")
        return FileTasks(cfg.data_path, cfg.data_seed)
    return FileTasks(cfg.data_path or cfg.data, cfg.data_seed, bool(cfg.use_data_system_prompt))
