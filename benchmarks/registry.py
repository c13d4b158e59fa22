"""The benchmark registry: what a benchmark is (its data, prompt, metric and default environment) and
how to add one.

A :class:`Benchmark` turns the records of a data file into :class:`arpo_env.Task` s (``id`` the row's
stable id, ``question`` as in the data, ``answer`` the gold aliases, ``metadata`` extra fields carried into
results); the benchmark's prompt template is applied at evaluation. Add yours with one call::

    from arpo_env.benchmarks import register_jsonl
    register_jsonl("mybench", "data/mybench.jsonl", metric="f1", env_id="arpo/MultiTool-v0")

or pass the path of a JSON-lines file (``question`` and ``answer`` keys) straight to ``arpo eval
--benchmarks path/to/mybench.jsonl``. Built-in benchmarks are listed in :mod:`arpo_env.benchmarks.catalog`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from arpo_env.benchmarks.data import DatasetFormatError, file_sha256, find_file, read_records
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
            data = {"data_file": str(p), "data_sha256": file_sha256(p)}
        except FileNotFoundError:
            data = {"data_file": None, "data_sha256": None}
        return {"name": self.name, "title": self.title, "category": self.category, "metric": self.metric,
                "fallback_metric": self.fallback_metric, "env_id": self.env_id,
                "env_kwargs": dict(self.env_kwargs), "prompt": self.prompt,
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16], **data}


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(bench: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add ``bench``; a second registration of a name raises unless ``replace``."""
    if bench.name in _REGISTRY and not replace:
        raise ValueError(f"benchmark {bench.name!r} is already registered (pass replace=True)")
    _REGISTRY[bench.name] = bench
    return bench


def register_jsonl(name: str, path: str | Path, *, metric: str = "f1", env_id: str = "arpo/MultiTool-v0",
                   env_kwargs: dict[str, Any] | None = None, title: str | None = None,
                   category: str = "other", prompt: str = "{question}", replace: bool = False,
                   **parser_keys: Any) -> Benchmark:
    """Register a JSON-lines file (records with ``question`` and ``answer``; see :func:`qa_parser` for
    other key names, passed as ``question_keys=``, ``answer_keys=``, ``id_keys=``, ``meta_keys=``)."""
    path = Path(path).resolve()
    bench = Benchmark(name=name, title=title or name, category=category, metric=metric, env_id=env_id,
                      env_kwargs=dict(env_kwargs or {}), files=(str(path),), parser=qa_parser(**parser_keys),
                      prompt=prompt, source=str(path))
    return register_benchmark(bench, replace=replace)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (case-insensitive); a path to a ``.jsonl`` file registers it on the
    fly. Raises ``KeyError`` with close matches."""
    _ensure_catalog()
    key = name.strip()
    if key in _REGISTRY:
        return _REGISTRY[key]
    lower = {k.lower(): v for k, v in _REGISTRY.items()}
    if key.lower() in lower:
        return lower[key.lower()]
    if key.endswith((".jsonl", ".jsonl.gz")) and Path(key).is_file():
        stem = Path(key).name.split(".")[0]
        if stem in _REGISTRY and _REGISTRY[stem].files != (str(Path(key).resolve()),):
            raise KeyError(f"{key}: a benchmark named {stem!r} already exists; rename the file")
        return _REGISTRY.get(stem) or register_jsonl(stem, key)
    close = difflib.get_close_matches(key.lower(), list(lower), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown benchmark {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}; or give the "
                   "path of a .jsonl file with question/answer fields.")


def list_benchmarks() -> list[Benchmark]:
    """Every registered benchmark, built-ins first in catalog order."""
    _ensure_catalog()
    return list(_REGISTRY.values())


def _ensure_catalog() -> None:
    import arpo_env.benchmarks.catalog  # noqa: F401  (registers the built-ins on import)


def dumps_compact(obj: Any) -> str:
    """Canonical JSON (sorted keys) used for fingerprints."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
