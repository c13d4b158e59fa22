"""Decontamination: generated training questions must not be questions of a shipped benchmark test set.

Questions are compared after :func:`normalize` (lower case, alphanumerics, single spaces).
:func:`benchmark_answers` gives the gold answers of the QA benchmarks, for generators that write single-hop
questions whose answer could be the last hop of a test question (``arpo_env.trainers.fact_questions``).
Not covered: paraphrases or partial overlaps (only exact normalised matches are caught).
"""
from __future__ import annotations

import re

from arpo_env.trainers.sft_data import Example


class DecontaminationError(RuntimeError):
    """A generated question appears in a shipped benchmark test set."""


def normalize(q: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", q.lower()).split())


def benchmark_questions() -> set[str]:
    """Normalised questions of every registered benchmark whose data is shipped (others are skipped)."""
    from arpo_env.benchmarks.registry import list_benchmarks
    out: set[str] = set()
    for b in list_benchmarks():
        try:
            tasks = b.load()
        except Exception:  # noqa: BLE001 - data not shipped / not installed: nothing to check against
            continue
        out.update(normalize(t.question) for t in tasks)
    return out


def benchmark_answers(category: str = "qa") -> set[str]:
    """Normalised gold answers (every alias) of the shipped benchmarks of ``category``."""
    from arpo_env.benchmarks.registry import list_benchmarks
    out: set[str] = set()
    for b in list_benchmarks():
        if b.category != category:
            continue
        try:
            tasks = b.load()
        except Exception:  # noqa: BLE001 - data not shipped / not installed: nothing to check against
            continue
        out.update(normalize(a) for t in tasks for a in t.answer)
    return out


def check_decontaminated(examples: list[Example], questions: set[str] | None = None) -> None:
    """Raise :class:`DecontaminationError` listing the examples whose question is a benchmark question."""
    questions = benchmark_questions() if questions is None else questions
    bad = [e.user for e in examples if normalize(e.user) in questions]
    if bad:
        raise DecontaminationError(f"{len(bad)} generated questions are in a benchmark test set, e.g. {bad[0]!r}")
