"""Leaderboards from result folders only (``results.jsonl`` + ``metadata.json``), never from memory.

Rows: model + method (folders with the same pair merge; a benchmark in two folders of the same row is an
error). Columns: benchmarks. A cell is the mean score x 100 +- its standard error, where each sample's
score is first averaged over its attempts and the standard error is taken over samples (so attempts do not
shrink it artificially); an episode that ended in an error counts as 0. ``Avg`` is the unweighted mean of the row's benchmark means; ``Tool calls`` the
mean per episode. Published rows (ARPO.md section 7) are marked and have no standard errors; their
``Avg`` is the paper's (over ARPO's 10 reasoning/knowledge sets), not recomputed.
"""
from __future__ import annotations

import csv
import html
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arpo_env.benchmarks.metrics import mean_and_se, pass_at_k
from arpo_env.benchmarks.results import load_folder


@dataclass
class Cell:
    mean: float
    """Mean score x 100."""
    se: float | None
    """Standard error x 100 (``None`` for published numbers)."""
    n: int = 0
    """Samples."""
    metric: str = ""
    pass_k: float | None = None
    """pass@k x 100 when asked for."""


@dataclass
class Row:
    model: str
    method: str
    cells: dict[str, Cell] = field(default_factory=dict)
    tool_calls: float | None = None
    published: bool = False
    average_override: float | None = None
    note: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def average(self) -> float | None:
        if self.published:  # only the paper's own average; never one over a subset of its sets
            return self.average_override
        vals = [c.mean for c in self.cells.values()]
        return sum(vals) / len(vals) if vals else None


@dataclass
class Table:
    columns: list[str]
    rows: list[Row]
    pass_k: int | None = None


PUBLISHED: list[Row] = [
    Row("Qwen2.5-7B-Instruct", "ARPO", {k: Cell(v, None) for k, v in {
        "hotpotqa": 58.8, "2wiki": 76.1, "bamboogle": 71.5, "musique": 31.1, "aime24": 33.3, "aime25": 30.0,
        "math500": 88.8, "gsm8k": 92.2}.items()}, published=True, average_override=58.3,
        note="ARPO paper; Avg over its 10 reasoning/knowledge sets"),
    Row("Qwen2.5-7B-Instruct", "GRPO", {}, published=True, average_override=56.5,
        note="ARPO paper; Avg over its 10 reasoning/knowledge sets"),
    Row("Qwen3-14B", "ARPO", {k: Cell(v, None) for k, v in {
        "gaia": 43.7, "webwalker": 36.0, "hle": 10.0, "xbench": 32.0}.items()}, published=True, note="ARPO paper, deep search"),
    Row("Qwen3-14B", "GRPO", {"gaia": Cell(36.9, None)}, published=True, note="ARPO paper, deep search"),
    Row("Qwen3-14B", "AEPO", {k: Cell(v, None) for k, v in {"gaia": 47.6, "hle": 11.2, "webwalker": 43.0}.items()},
        published=True, note="AEPO paper, pass@1"),
]
"""Published numbers (ARPO.md section 7), in percent."""


def _model_label(meta: dict[str, Any]) -> str:
    m = str(meta.get("model") or "default")
    return Path(m).name if "/" in m and Path(m).exists() else m


def _column_order(names: set[str]) -> list[str]:
    from arpo_env.benchmarks.registry import list_benchmarks

    order = [b.name for b in list_benchmarks()]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def build_table(folders: Sequence[str | Path], published: bool = False, pass_k: int | None = None) -> Table:
    """Aggregate result folders (see the module docstring)."""
    rows: dict[tuple[str, str], Row] = {}
    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    for folder in folders:
        meta, results = load_folder(folder)
        key = (_model_label(meta), str(meta.get("method", "base")))
        row = rows.setdefault(key, Row(*key))
        row.sources.append(str(folder))
        by_bench: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in results:
            by_bench[r["benchmark"]][str(r["sample_id"])].append(r)
            calls[key].append(float(r.get("tool_calls") or 0))
        for bench, samples in by_bench.items():
            if bench in row.cells:
                raise ValueError(f"{key[0]} / {key[1]}: benchmark {bench!r} appears in two result folders "
                                 f"({', '.join(row.sources)}); give one folder per (model, method, benchmark)")
            per_sample = [sum(float(r["score"]) for r in rs) / len(rs) for rs in samples.values()]
            mean, se = mean_and_se(per_sample)
            metrics_used = sorted({r.get("metric", "") for rs in samples.values() for r in rs})
            cell = Cell(100 * mean, 100 * se, len(per_sample), "/".join(metrics_used))
            if pass_k:
                vals = [pass_at_k(len(rs), sum(bool(r.get("correct")) for r in rs), pass_k)
                        for rs in samples.values() if len(rs) >= pass_k]
                cell.pass_k = 100 * sum(vals) / len(vals) if vals else None
            row.cells[bench] = cell
    for key, row in rows.items():
        row.tool_calls = sum(calls[key]) / len(calls[key]) if calls[key] else None
    out = list(rows.values())
    if published:
        out += [Row(r.model, r.method, dict(r.cells), None, True, r.average_override, r.note) for r in PUBLISHED]
    columns = _column_order({b for r in out for b in r.cells})
    return Table(columns, out, pass_k)


def _title(name: str) -> str:
    from arpo_env.benchmarks.registry import get_benchmark

    try:
        return get_benchmark(name).title
    except KeyError:
        return name


def _fmt(cell: Cell | None, pass_k: int | None) -> str:
    if cell is None:
        return ""
    text = f"{cell.mean:.1f}" if cell.se is None else f"{cell.mean:.1f} ± {cell.se:.1f}"
    if pass_k and cell.pass_k is not None:
        text += f" (p@{pass_k} {cell.pass_k:.1f})"
    return text


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Method"]
    for c in table.columns:
        metric = next((r.cells[c].metric for r in table.rows if c in r.cells and r.cells[c].metric), "")
        header.append(f"{_title(c)} ({metric})" if metric else _title(c))
    header += ["Avg", "Tool calls", "n"]
    body = []
    for r in table.rows:
        avg = r.average
        ns = sorted({c.n for c in r.cells.values() if c.n})
        body.append([r.model, r.method + (" (published)" if r.published else "")]
                    + [_fmt(r.cells.get(c), table.pass_k) for c in table.columns]
                    + ["" if avg is None or math.isnan(avg) else f"{avg:.1f}",
                       "" if r.tool_calls is None else f"{r.tool_calls:.2f}",
                       "/".join(map(str, ns)) if ns else ""])
    return header, body


NOTE = ("Scores x100: mean ± standard error over samples (attempts averaged per sample). "
        "Published rows are the papers' numbers (ARPO.md s.7), not reproduced here.")


def render(table: Table, fmt: str = "md") -> str:
    """The table as Markdown (``md``), ``csv`` (numeric columns, ``<bench>`` and ``<bench>_se``) or ``html``."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model", "method", "published"] + [x for c in table.columns for x in (c, f"{c}_se", f"{c}_n")]
                   + ["average", "tool_calls"])
        for r in table.rows:
            cells: list[object] = []
            for c in table.columns:
                cell = r.cells.get(c)
                cells += ["", "", ""] if cell is None else [f"{cell.mean:.4f}", "" if cell.se is None else f"{cell.se:.4f}", cell.n or ""]
            avg = r.average
            w.writerow([r.model, r.method, r.published] + cells + ["" if avg is None else f"{avg:.4f}",
                                                                  "" if r.tool_calls is None else f"{r.tool_calls:.4f}"])
        return buf.getvalue()
    header, body = _grid(table)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + f"\n\n{NOTE}\n"
    if fmt == "html":
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in body)
        return (f"<table class=\"arpo-leaderboard\"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>\n"
                f"<p>{html.escape(NOTE)}</p>\n")
    raise ValueError(f"unknown format {fmt!r}; use md, csv or html")
