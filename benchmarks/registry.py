"""The benchmark registry: benchmarks by name, and how to add one (what a benchmark is, its data,
prompt, metric and default environment, is :class:`arpo_env.benchmarks.benchmark.Benchmark`).

A ``Benchmark`` turns the records of a data file into :class:`arpo_env.Task` s. Add yours with one call::

    from arpo_env.benchmarks import register_jsonl
    register_jsonl("mybench", "data/mybench.jsonl", metric="f1", env_id="arpo/MultiTool-v0")

or pass the path of a JSON-lines file (``question`` and ``answer`` keys) straight to ``arpo eval
--benchmarks path/to/mybench.jsonl``. Built-in benchmarks are listed in :mod:`arpo_env.benchmarks.catalog`.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from arpo_env.benchmarks.benchmark import Benchmark, qa_parser
from arpo_env.benchmarks.catalog import BUILTIN
from arpo_env.errors import UserError


class UnknownBenchmarkError(UserError, KeyError):
    """No benchmark of that name (a ``KeyError``); the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

_REGISTRY: dict[str, Benchmark] = {b.name: b for b in BUILTIN}
"""Every registered benchmark by name: the built-ins first, in catalog order."""


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
    fly. Raises :class:`UnknownBenchmarkError` (a ``KeyError``) with close matches, and
    ``FileNotFoundError`` for a ``.jsonl``/``.jsonl.gz`` path (or any name with a ``/``) that is not a file."""
    key = name.strip()
    if key in _REGISTRY:
        return _REGISTRY[key]
    lower = {k.lower(): v for k, v in _REGISTRY.items()}
    if key.lower() in lower:
        return lower[key.lower()]
    if key.endswith((".jsonl", ".jsonl.gz")) and Path(key).is_file():
        stem = Path(key).name.split(".")[0]
        if stem in _REGISTRY and _REGISTRY[stem].files != (str(Path(key).resolve()),):
            raise UnknownBenchmarkError(f"{key}: a benchmark named {stem!r} already exists; rename the file")
        return _REGISTRY.get(stem) or register_jsonl(stem, key)
    if key.endswith((".jsonl", ".jsonl.gz", ".json")) or "/" in key or "\\" in key:
        import errno
        import os
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), key)
    close = difflib.get_close_matches(key.lower(), list(lower), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownBenchmarkError(f"unknown benchmark {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}; or give the "
                   "path of a .jsonl file with question/answer fields.")


def list_benchmarks() -> list[Benchmark]:
    """Every registered benchmark, built-ins first in catalog order."""
    return list(_REGISTRY.values())
