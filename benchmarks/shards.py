"""Sharded evaluation: ``arpo eval --shard i/n`` runs one deterministic part of the work list, and
``arpo leaderboard`` merges the shard folders of one run.

- The work list is every ``(benchmark, sample, attempt)`` of the run in order (benchmarks as given, samples
  in file order up to ``limit``, attempts); shard ``i`` of ``n`` (0-based) takes positions ``i, i+n, i+2n...``.
  Every shard of the same command computes the same list, so the shards are a partition of it.
- Each shard folder records ``metadata.json["shard"] = {"index", "count", "fingerprint", "work_items"}``
  and ``shard.json`` (the same plus ``keys``: the items it owns). ``fingerprint`` hashes what determines
  the numbers (:data:`arpo_env.benchmarks.provenance.FINGERPRINT_KEYS`, the benchmarks' descriptions without
  file paths, ``limit`` and ``attempts``); shards of one run have equal fingerprints.
- Resume works per shard folder as for any result folder; resuming a folder with another shard spec is a
  settings change (refused without ``--new-run``/``--force``).
- :func:`merge_sources` (used by ``build_table``) expands a parent folder into its result subfolders,
  groups shard folders by fingerprint, and merges each complete group into one source. It raises
  :class:`ShardSetError` naming the problem: two folders with the same shard index, mixed shard counts,
  a key present in two shards (overlap), a missing shard, or a shard whose folder lacks some of its items
  (``allow_incomplete=True`` turns the missing-items cases into warnings in :attr:`MergedSource.problems`).

Not covered: re-sharding a run with another ``n`` (run it again), shards of different code revisions
(``git`` is recorded but not part of the fingerprint).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from arpo_env.benchmarks.provenance import FINGERPRINT_KEYS
from arpo_env.benchmarks.results import METADATA, Key, load_folder, row_key
from arpo_env.errors import UserError

SHARD_FILE = "shard.json"
T = TypeVar("T")


class ShardSetError(UserError, ValueError):
    """Shard folders that do not merge into one complete run (overlap, missing shard or items)."""


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"i/n"`` with ``0 <= i < n``; anything else is a :class:`UserError` naming the form."""
        a, sep, b = str(text).partition("/")
        try:
            spec = cls(int(a), int(b))
        except ValueError:
            spec = None
        if not sep or spec is None or spec.count < 1 or not 0 <= spec.index < spec.count:
            raise UserError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/2 and 1/2), got {text!r}")
        return spec

    def select(self, work: Sequence[T]) -> list[T]:
        """This shard's part of the full work list (positions ``index, index + count, ...``)."""
        return list(work[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def fingerprint(meta: dict[str, Any]) -> str:
    """sha256 over what determines a run's numbers (see the module docstring)."""
    benches = {n: {k: v for k, v in d.items() if k != "data_file"} for n, d in (meta.get("benchmarks") or {}).items()}
    core = {k: meta.get(k) for k in FINGERPRINT_KEYS}
    core.update(benchmarks=benches, limit=meta.get("limit"), attempts=meta.get("attempts"))
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()


def record_shard(folder: str | Path, meta: dict[str, Any], spec: ShardSpec, keys: Sequence[Key],
                 work_items: int) -> None:
    """Put the shard spec into ``meta`` (written by the runner) and write ``shard.json`` with its keys."""
    info = {"index": spec.index, "count": spec.count, "fingerprint": fingerprint(meta), "work_items": work_items}
    meta["shard"] = info
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / SHARD_FILE).write_text(json.dumps({**info, "keys": [list(k) for k in keys]}), encoding="utf-8")


@dataclass
class MergedSource:
    """One entry of a leaderboard: a plain result folder, or the merged shards of one run."""

    label: str
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)


def _expand(folders: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for f in map(Path, folders):
        if not (f / METADATA).exists() and f.is_dir():
            subs = sorted(p.parent for p in f.glob(f"*/{METADATA}"))
            if subs:
                out += subs
                continue
        out.append(f)
    return out


def merge_sources(folders: Sequence[str | Path], allow_incomplete: bool = False) -> list[MergedSource]:
    """Load result folders (a parent folder stands for its result subfolders) and merge shard groups."""
    plain: list[MergedSource] = []
    groups: dict[str, list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]] = {}
    for folder in _expand(folders):
        meta, rows = load_folder(folder)
        shard = meta.get("shard")
        if isinstance(shard, dict):
            groups.setdefault(str(shard.get("fingerprint")), []).append((folder, meta, rows))
        else:
            plain.append(MergedSource(str(folder), meta, rows))
    return plain + [_merge(members, allow_incomplete) for members in groups.values()]


def _merge(members: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]], allow_incomplete: bool) -> MergedSource:
    counts = {int(m["shard"]["count"]) for _, m, _ in members}
    names = ", ".join(f"{f} ({m['shard']['index']}/{m['shard']['count']})" for f, m, _ in members)
    if len(counts) > 1:
        raise ShardSetError(f"shard folders of one run disagree on the shard count: {names}")
    n = counts.pop()
    by_index: dict[int, Path] = {}
    owner: dict[Key, Path] = {}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for folder, meta, folder_rows in members:
        i = int(meta["shard"]["index"])
        if i in by_index:
            raise ShardSetError(f"shard {i}/{n} appears twice: {by_index[i]} and {folder}; give each shard once")
        by_index[i] = folder
        for r in folder_rows:
            k = row_key(r)
            if k in owner:
                raise ShardSetError(f"{k[0]}/{k[1]} attempt {k[2]} is in two shard folders: {owner[k]} and {folder} "
                                    "(overlapping shards; run each shard into its own folder)")
            owner[k] = folder
            rows.append(r)
        expected = _expected_keys(folder)
        missing = [k for k in expected if k not in {row_key(r) for r in folder_rows}]
        if missing:
            shown = ", ".join(f"{b}/{s}#{a}" for b, s, a in missing[:5]) + (" ..." if len(missing) > 5 else "")
            problems.append(f"shard {i}/{n} ({folder}) is incomplete: {len(missing)} of {len(expected)} items "
                            f"missing ({shown}); resume it with the same `arpo eval ... --shard {i}/{n}`")
    absent = [i for i in range(n) if i not in by_index]
    if absent:
        problems.insert(0, f"shard{'s' if len(absent) > 1 else ''} {', '.join(f'{i}/{n}' for i in absent)} of the "
                           f"run in {names} {'are' if len(absent) > 1 else 'is'} missing")
    if problems and not allow_incomplete:
        raise ShardSetError("; ".join(problems) + " (or pass --allow-incomplete to show the partial numbers)")
    first = min(members, key=lambda m: int(m[1]["shard"]["index"]))[1]
    meta = {k: v for k, v in first.items() if k != "shard"}
    return MergedSource(" + ".join(str(by_index[i]) for i in sorted(by_index)), meta, rows, problems)


def _expected_keys(folder: Path) -> list[Key]:
    p = folder / SHARD_FILE
    if not p.exists():
        return []
    return [(str(b), str(s), int(a)) for b, s, a in json.loads(p.read_text(encoding="utf-8"))["keys"]]
