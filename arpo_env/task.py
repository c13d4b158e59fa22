"""Tasks: what an episode is about (a question, its gold answers, free metadata) and where they come from.

An env takes its task through ``reset(options={"question": ..., "answer": ...})`` or draws one from its
default :class:`TaskSource` with the env's seeded RNG, so ``check_env`` and random exploration work.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Task:
    """One problem to solve."""

    question: str
    """The question shown to the agent."""
    answer: list[str] = field(default_factory=list)
    """Gold answers (aliases); scores take the best match over them. Empty when unknown."""
    id: str | None = None
    """Stable identifier (benchmark row id), if any."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free data for the env or the metric (e.g. the expression behind a calculator question)."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Task:
        """Build a task from ``reset`` options: ``{"question", "answer", "id"?, "metadata"?}``.

        ``answer`` may be a string or a list of strings; a ``Task`` under the key ``"task"`` is taken as is.
        Raises ``ValueError`` with the missing key named when the options are not a task.
        """
        if isinstance(options.get("task"), Task):
            return copy.deepcopy(options["task"])
        if "question" not in options:
            raise ValueError(
                "reset(options=...) needs at least {'question': str}; got keys " f"{sorted(options)}"
            )
        question = options["question"]
        if not isinstance(question, str):
            raise ValueError(f"options['question'] must be a str, got {type(question).__name__}")
        answer = options.get("answer", [])
        if isinstance(answer, (str, int, float)):
            answer = [str(answer)]
        elif isinstance(answer, Sequence):
            answer = [str(a) for a in answer]
        else:
            raise ValueError(f"options['answer'] must be a str or a list of str, got {type(answer).__name__}")
        return cls(
            question=question,
            answer=answer,
            id=None if options.get("id") is None else str(options["id"]),
            metadata=dict(options.get("metadata") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for ``info`` and result files)."""
        return {"question": self.question, "answer": list(self.answer), "id": self.id,
                "metadata": copy.deepcopy(self.metadata)}


@runtime_checkable
class TaskSource(Protocol):
    """Anything that can hand an env a task given a seeded generator (a dataset, a task generator)."""

    def sample(self, rng: np.random.Generator) -> Task:
        """Return one task; must be a pure function of ``rng``'s state so seeded resets are reproducible."""
        ...


class ListTaskSource:
    """A fixed list of tasks, drawn uniformly."""

    def __init__(self, tasks: Sequence[Task]):
        if not tasks:
            raise ValueError("ListTaskSource needs at least one task")
        self.tasks = list(tasks)

    def sample(self, rng: np.random.Generator) -> Task:
        return copy.deepcopy(self.tasks[int(rng.integers(len(self.tasks)))])

    def __len__(self) -> int:
        return len(self.tasks)
