"""Result folders: an append-only ``results.jsonl`` (one row per sample and attempt) and ``metadata.json``.

Crash safety: each row is written as one line, flushed and fsynced before the runner moves on, so a
crash (even SIGKILL) loses at most the rows in flight. A torn last line (no newline, or not JSON) is
dropped when the folder is read for resuming and cut from the file, so the next append starts on a clean
line. A bad line anywhere else is a real corruption and raises, naming the line.

A row's key is ``(benchmark, sample_id, attempt)``; :func:`latest_rows` keeps one row per key (the last
one written), which is what leaderboards read.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"
METADATA = "metadata.json"
Key = tuple[str, str, int]


def row_key(row: dict[str, Any]) -> Key:
    """``(benchmark, sample_id, attempt)`` of a result row."""
    return (str(row["benchmark"]), str(row["sample_id"]), int(row["attempt"]))


class ResultsCorrupt(ValueError):
    """A line that is not the torn last line cannot be parsed."""


def read_rows(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """All rows of a ``results.jsonl``. A torn last line is ignored, and cut from the file if ``repair``.

    Raises :class:`ResultsCorrupt` for an unparsable line that is not the last one.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    pos, line_no, good_end = 0, 0, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl == -1 else nl + 1
        line, line_no = data[pos:end], line_no + 1
        last = end >= len(data)
        try:
            row = json.loads(line) if line.strip() else None
            ok = nl != -1 or not line.strip()  # a final line without newline may be torn even if it parses
            if row is not None and not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError:
            ok, row = False, None
        if not ok:
            if last:
                break
            raise ResultsCorrupt(f"{path}, line {line_no}: not a JSON row; the file is corrupt (only the last "
                                 "line may be torn by a crash)")
        if row is not None:
            rows.append(row)
        pos = good_end = end
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return rows


def latest_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: the last written (a retried error is replaced by its retry)."""
    by_key: dict[Key, dict[str, Any]] = {}
    for r in rows:
        by_key[row_key(r)] = r
    return list(by_key.values())


class ResultsWriter:
    """Appends rows durably (write, flush, fsync per row); thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            self._f.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """``metadata.json`` of a result folder, or ``None``."""
    p = Path(folder) / METADATA
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def write_metadata(folder: str | Path, meta: dict[str, Any]) -> None:
    """Write ``metadata.json`` atomically (temp file named per process, fsync, rename)."""
    p = Path(folder) / METADATA
    tmp = p.with_name(f"{METADATA}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def load_folder(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(metadata, latest rows)`` of a result folder; raises ``FileNotFoundError`` if it is not one."""
    folder = Path(folder)
    meta = read_metadata(folder)
    if meta is None or not (folder / RESULTS).exists():
        raise FileNotFoundError(f"{folder} is not a result folder (needs {METADATA} and {RESULTS}; "
                                "make one with `arpo eval --out`)")
    return meta, latest_rows(read_rows(folder / RESULTS))
