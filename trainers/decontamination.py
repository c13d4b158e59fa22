"""Decontamination: generated training questions must not be questions of a shipped benchmark test set.

Questions are compared after :func:`normalize` (lower case, alphanumerics, single spaces).
:func:`benchmark_answers` gives the gold answers of the QA benchmarks, for generators that write single-hop
questions whose answer could be the last hop of a test question (``arpo_env.trainers.fact_questions``).
Not covered: paraphrases or partial overlaps (only exact normalised matches are caught).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from arpo_env.task import Task
from arpo_env.trainers.sft_data import Example


class DecontaminationError(RuntimeError):
    """A generated question appears in a shipped benchmark test set."""


def normalize(q: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", q.lower()).split())


def _shipped_tasks(category: str | None = None) -> Iterator[Task]:
    """The tasks of every registered benchmark (of ``category``, if given) whose data is shipped."""
    from arpo_env.benchmarks.registry import list_benchmarks
    for b in list_benchmarks():
        if category is not None and b.category != category:
            continue
        try:
            tasks = b.load()
        except Exception:  # noqa: BLE001 - data not shipped / not installed: nothing to check against
            continue
        yield from tasks


def benchmark_questions() -> set[str]:
    """Normalised questions of every registered benchmark whose data is shipped (others are skipped)."""
    return {normalize(t.question) for t in _shipped_tasks()}


def benchmark_answers(category: str = "qa") -> set[str]:
    """Normalised gold answers (every alias) of the shipped benchmarks of ``category``."""
    return {normalize(a) for t in _shipped_tasks(category) for a in t.answer}


def check_decontaminated(examples: list[Example], questions: set[str] | None = None) -> None:
    """Raise :class:`DecontaminationError` listing the examples whose question is a benchmark question."""
    questions = benchmark_questions() if questions is None else questions
    bad = [e.user for e in examples if normalize(e.user) in questions]
    if bad:
        raise DecontaminationError(f"{len(bad)} generated questions are in a benchmark test set, e.g. {bad[0]!r}")
