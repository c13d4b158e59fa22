"""Reading benchmark files: JSON lines (plain or gzip), JSON lists, CSV, and xbench's encrypted CSV.

Errors say what to do: a malformed line raises :class:`DatasetFormatError` naming the file and the
1-based line; a missing file raises :class:`DatasetMissingError` naming every place looked in and where
to put the file. Nothing here downloads anything.

Data directories, in the order searched for sets that are not shipped (GAIA, HLE) or to override a
shipped one: the ``data_dir`` argument (``--data-dir``), then ``$ARPO_DATA_DIR``. Inside a data directory a
file ``<rel>`` is looked for as ``<dir>/<rel>`` and ``<dir>/benchmarks/<rel>``, so both the folder that
holds ``gaia/`` and its parent work.
"""
from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
"""Where the shippable sets live inside the package."""
DATA_DIR_ENV = "ARPO_DATA_DIR"
"""Environment variable naming a data directory (see the module docstring)."""


class DatasetError(Exception):
    """Base class of the data errors."""


class DatasetFormatError(DatasetError, ValueError):
    """A record that cannot be read; the message names the file and line."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


class DatasetMissingError(DatasetError, FileNotFoundError):
    """No file for a benchmark; the message lists where it was looked for and where to put it."""


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The user data directories to search, in order (``data_dir`` first, then ``$ARPO_DATA_DIR``)."""
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get(DATA_DIR_ENV):
        dirs.append(Path(os.environ[DATA_DIR_ENV]))
    return dirs


def candidate_paths(rel: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every path where the file ``rel`` may be, in search order."""
    out: list[Path] = []
    for d in data_dirs(data_dir):
        out += [d / rel, d / "benchmarks" / rel]
    return out


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` of a JSON-lines file (``.gz`` allowed); blank lines are skipped.

    Raises :class:`DatasetFormatError` for a line that is not a JSON object.
    """
    path = Path(path)
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(path, n, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise DatasetFormatError(path, n, f"expected a JSON object, got {type(rec).__name__}")
            yield n, rec


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """All records of a data file as ``(line_or_row_number, record)``.

    ``.jsonl``/``.jsonl.gz``: JSON lines. ``.json``: a JSON list of objects, or JSON lines despite the
    name (HLE's ``top.json``). ``.csv``: rows as dicts, numbered by their line in the file.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".csv"):
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            try:
                return [(i + 2, dict(row)) for i, row in enumerate(reader)]
            except csv.Error as exc:
                raise DatasetFormatError(path, reader.line_num, f"bad CSV: {exc}") from None
    if name.endswith(".json"):
        text = path.read_text(encoding="utf-8-sig")
        if text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
            bad = [i for i, r in enumerate(data) if not isinstance(r, dict)]
            if bad:
                raise DatasetFormatError(path, None, f"item {bad[0]} of the list is not an object")
            return list(enumerate(data, 1))
    return list(iter_jsonl(path))




def xbench_decrypt(ciphertext_b64: str, canary: str) -> str:
    """Decrypt one field of xbench's official CSV: base64-decode, then XOR with the UTF-8 bytes of the
    row's ``canary`` string repeated to the data's length (the scheme github.com/xbench-ai/xbench-evals
    documents), then UTF-8-decode. Raises ``ValueError`` when the result is not text (a wrong key)."""
    data = base64.b64decode(ciphertext_b64)
    key = canary.encode("utf-8")
    if not key:
        raise ValueError("xbench: empty canary, cannot derive the key")
    plain = bytes(b ^ key[i % len(key)] for i, b in enumerate(data))
    return plain.decode("utf-8")


def find_file(rels: Sequence[str], *, shipped: str | None, data_dir: str | Path | None,
              benchmark: str, how_to_get: str = "") -> Path:
    """Resolve a benchmark's file: a user data directory first (so users can override), then the copy
    shipped in the package. Raises :class:`DatasetMissingError` saying where to put it."""
    looked: list[Path] = []
    absolute = [Path(r) for r in rels if Path(r).is_absolute()]
    for p in absolute:
        looked.append(p)
        if p.is_file():
            return p
    if absolute:
        raise DatasetMissingError(f"benchmark {benchmark!r}: no data file at {', '.join(map(str, absolute))}. "
                                  f"Put it there or register the benchmark with the file's real path.")
    for rel in rels:
        for p in candidate_paths(rel, data_dir):
            looked.append(p)
            if p.is_file():
                return p
    if shipped:
        p = PACKAGE_DATA / shipped
        looked.append(p)
        if p.is_file():
            return p
    where = " or ".join(f"<DATA_DIR>/{r}" for r in rels) or f"{PACKAGE_DATA}/{shipped}"
    tried = "; ".join(str(p) for p in looked) or "(no data directory given)"
    raise DatasetMissingError(
        f"benchmark {benchmark!r}: no data file found. Put it at {where} and pass --data-dir DATA_DIR "
        f"(or set {DATA_DIR_ENV}=DATA_DIR). {how_to_get} Looked in: {tried}".replace("  ", " "))
