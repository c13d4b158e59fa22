"""What a benchmark is: :class:`Benchmark` (data files, parser, metric, default env, prompt) ; its samples are
:class:`arpo_env.Task` s (``id`` the row's stable id, ``question`` as in the data, ``answer`` the gold
aliases, ``metadata`` extra fields carried into results).

:mod:`~arpo_env.benchmarks.catalog` (the built-ins) and :mod:`~arpo_env.benchmarks.registry` (lookup by
name) both build on this module and not on each other.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arpo_env.benchmarks.data import DatasetFormatError, find_file, read_records
from arpo_env.checkpoints import sha256_file
from arpo_env.task import Task

METRICS = ("em", "f1", "cover_em", "math_equiv", "judge")
"""Names a benchmark may use as its metric (see :mod:`arpo_env.benchmarks.metrics`)."""


RowParser = Callable[[dict[str, Any]], tuple[str | None, str, list[str], dict[str, Any]]]
"""Maps one record to ``(id or None, question, golds, metadata)``; raises ``KeyError``/``ValueError``."""


def qa_parser(question_keys: Sequence[str] = ("question", "problem", "Question", "prompt"),
              answer_keys: Sequence[str] = ("answer", "answers", "Final answer"),
              id_keys: Sequence[str] = ("id", "_id", "task_id", "unique_id", "idx"),
              meta_keys: Sequence[str] = (),
              answer_fn: Callable[[Any], Any] | None = None) -> RowParser:
    """A parser taking the first present key of each kind; ``answer_fn`` transforms the raw answer."""

    def first(rec: dict[str, Any], keys: Sequence[str], what: str) -> Any:
        for k in keys:
            if k in rec and rec[k] is not None:
                return rec[k]
        if what == "id":
            return None
        raise KeyError(f"no {what} field (tried {', '.join(keys)}; the record has {', '.join(rec) or 'none'})")

    def parse(rec: dict[str, Any]) -> tuple[str | None, str, list[str], dict[str, Any]]:
        question = first(rec, question_keys, "question")
        raw = first(rec, answer_keys, "answer")
        raw = answer_fn(raw) if answer_fn else raw
        golds = [str(a) for a in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty or not a string")
        rid = first(rec, id_keys, "id")
        return (None if rid is None else str(rid)), question, golds, {k: rec[k] for k in meta_keys if k in rec}

    return parse


@dataclass
class Benchmark:
    """A registered benchmark."""

    name: str
    """Short id used on the command line (``gsm8k``)."""
    title: str
    """Display name (``GSM8K``), used as the leaderboard column."""
    category: str
    """``math``, ``qa`` (multi-hop QA), ``deepsearch`` or ``other``: picks defaults and groupings."""
    metric: str
    """Primary metric, one of :data:`METRICS` (the leaderboard's number)."""
    env_id: str
    """Default environment id (``arpo/Python-v0``); ``arpo eval --env`` overrides it."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Default keyword arguments for ``arpo_env.make`` (e.g. ``max_tool_calls``); ``--env-kwargs`` merges."""
    files: tuple[str, ...] = ()
    """Relative paths looked for in user data directories (``gaia/test.jsonl``)."""
    shipped: str | None = None
    """File name under ``benchmarks/data`` when the set ships with the package."""
    parser: RowParser = field(default_factory=qa_parser)
    """Record -> task fields."""
    reader: Callable[[Path], list[tuple[int, dict[str, Any]]]] = read_records
    """File -> ``(line, record)`` pairs (the xbench reader decrypts here)."""
    keep: Callable[[dict[str, Any]], bool] | None = None
    """Record filter (e.g. HLE's text-only questions); ``None`` keeps all."""
    prompt: str = "{question}"
    """Template of the user prompt; ``{question}`` is replaced by the sample's question."""
    fallback_metric: str | None = None
    """Reported instead of ``metric`` when it is unavailable (the judge without ``--judge``)."""
    how_to_get: str = ""
    """Where users obtain a set that is not shipped."""
    source: str = ""
    """Provenance of the data."""

    def __post_init__(self) -> None:
        for m in (self.metric, self.fallback_metric):
            if m is not None and m not in METRICS:
                raise ValueError(f"benchmark {self.name!r}: unknown metric {m!r}; choose from {METRICS}")
        if "{question}" not in self.prompt:
            raise ValueError(f"benchmark {self.name!r}: the prompt template must contain {{question}}")

    def path(self, data_dir: str | Path | None = None) -> Path:
        """The data file used (user data directories first, then the shipped copy)."""
        return find_file(self.files, shipped=self.shipped, data_dir=data_dir, benchmark=self.name,
                         how_to_get=self.how_to_get)

    def load(self, data_dir: str | Path | None = None, limit: int | None = None) -> list[Task]:
        """The samples as tasks, in file order (the first ``limit`` when given); each task's ``id`` is the
        file's id field, else the 0-based row index (stable within the benchmark). Raises
        ``DatasetFormatError`` naming file and line for a bad record, ``DatasetMissingError`` when no file
        is found."""
        path = self.path(data_dir)
        out: list[Task] = []
        seen: set[str] = set()
        for idx, (line, rec) in enumerate(self.reader(path)):
            if self.keep is not None and not self.keep(rec):
                continue
            try:
                rid, question, golds, meta = self.parser(rec)
            except (KeyError, ValueError, TypeError) as exc:
                msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise DatasetFormatError(path, line, f"benchmark {self.name!r}: {msg}") from None
            sid = rid if rid is not None else str(idx)
            if sid in seen:
                raise DatasetFormatError(path, line, f"benchmark {self.name!r}: duplicate id {sid!r}")
            seen.add(sid)
            out.append(Task(question, golds, id=sid, metadata=meta))
            if limit is not None and len(out) >= limit:
                break
        return out

    def render(self, sample: Task) -> str:
        """The user prompt for ``sample``."""
        return self.prompt.replace("{question}", sample.question)

    def episode_task(self, sample: Task) -> Task:
        """The task an env plays for ``sample``: the rendered prompt as question, the same gold answers and
        id, and ``metadata`` with ``benchmark`` set to this benchmark's name."""
        return Task(self.render(sample), list(sample.answer), id=sample.id,
                    metadata={"benchmark": self.name, **sample.metadata})

    def describe(self, data_dir: str | Path | None = None) -> dict[str, Any]:
        """Plain data for ``metadata.json``: everything about the benchmark that determines scores."""
        try:
            p = self.path(data_dir)
            data: dict[str, str | None] = {"data_file": str(p), "data_sha256": sha256_file(p)}
        except FileNotFoundError:
            data = {"data_file": None, "data_sha256": None}
        return {"name": self.name, "title": self.title, "category": self.category, "metric": self.metric,
                "fallback_metric": self.fallback_metric, "env_id": self.env_id,
                "env_kwargs": dict(self.env_kwargs), "prompt": self.prompt,
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16], **data}
