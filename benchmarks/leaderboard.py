"""Leaderboards from result folders only (``results.jsonl`` + ``metadata.json``), never from memory.

Rows: model + method (folders with the same pair merge; a benchmark in two folders of the same row is an
error). Columns: benchmarks. A cell is the mean score x 100 +- its standard error, where each sample's
score is first averaged over its attempts and the standard error is taken over samples (so attempts do not
shrink it artificially); an episode that ended in an error counts as 0. ``Avg`` is the unweighted mean of the row's benchmark means; ``Tool calls`` the
mean per episode. Published rows (ARPO.md section 7) are marked and have no standard errors; their
``Avg`` is the paper's (over ARPO's 10 reasoning/knowledge sets), not recomputed.

Every cell names the metric that produced it, and a column whose cells share one metric names it in its
header (:data:`METRICS` explains each name under the table). With published rows, our rows are re-scored
from their stored predictions with the metric behind the published number where that metric runs offline
(ARPO's evaluation F1, ``arpo_f1``, for its QA sets); where it does not (ARPO's LLM judge, ``arpo_judge``),
our cell keeps its own metric and the cell says so: such numbers are not comparable.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arpo_env.benchmarks.metrics import SCORERS, mean_and_se, pass_at_k


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
    problems: list[str] = field(default_factory=list)
    """Incomplete shard sets shown anyway (``allow_incomplete``); empty otherwise."""


def _published(values: dict[str, float], qa_metric: str = "arpo_f1", other: str = "arpo_judge") -> dict[str, Cell]:
    qa = {"hotpotqa", "2wiki", "bamboogle", "musique"}
    return {k: Cell(v, None, metric=qa_metric if k in qa else other) for k, v in values.items()}


PUBLISHED: list[Row] = [
    Row("Qwen2.5-7B-Instruct", "ARPO", _published({
        "hotpotqa": 58.8, "2wiki": 76.1, "bamboogle": 71.5, "musique": 31.1, "aime24": 33.3, "aime25": 30.0,
        "math500": 88.8, "gsm8k": 92.2}), published=True, average_override=58.3,
        note="ARPO paper; Avg over its 10 reasoning/knowledge sets"),
    Row("Qwen2.5-7B-Instruct", "GRPO", {}, published=True, average_override=56.5,
        note="ARPO paper; Avg over its 10 reasoning/knowledge sets"),
    Row("Qwen3-14B", "ARPO", _published({"gaia": 43.7, "webwalker": 36.0, "hle": 10.0, "xbench": 32.0}),
        published=True, note="ARPO paper, deep search"),
    Row("Qwen3-14B", "GRPO", _published({"gaia": 36.9}), published=True, note="ARPO paper, deep search"),
    Row("Qwen3-14B", "AEPO", _published({"gaia": 47.6, "hle": 11.2, "webwalker": 43.0}),
        published=True, note="AEPO paper, pass@1"),
]
"""Published numbers (ARPO.md section 7), in percent, with the metric of each: ARPO's evaluation F1 on its
four QA sets (ARPO.md: "F1 for HotpotQA, 2Wiki, MuSiQue, Bamboogle"), its LLM judge on the others."""

METRICS = {
    "em": "official HotpotQA/SQuAD exact match",
    "f1": "official HotpotQA/SQuAD F1 (punctuation and articles dropped; yes/no must match exactly)",
    "cover_em": "gold contained in the answer on token boundaries",
    "math_equiv": "math-verify equivalence (a different value never scores 1)",
    "judge": "our LLM judge (rubric arpo-judge-v1)",
    "arpo_em": "ARPO's evaluation exact match (punctuation kept)",
    "arpo_f1": "ARPO's evaluation F1 (evaluation/src/metrics.py: punctuation kept, no yes/no rule)",
    "arpo_acc": "ARPO's evaluation acc (gold a plain substring of the answer)",
    "arpo_judge": "ARPO's LLM judge (not run offline; our cells in such a column use their own metric)",
}
"""What each metric name in a table means (docs/scorers.md has the references)."""


MODEL_FREE = {"oracle": "oracle", "scripted": "scripted"}
"""Backends and agents that play without a model: their rows are named after them, not after a model."""


def agent_label(meta: dict[str, Any]) -> str:
    """What a row calls the agent of a result folder (from its ``metadata.json``):

    - a training checkpoint (``metadata["checkpoint"] = {"run", "step"}``): ``<run folder name> @ step N``;
    - a model-free agent (backend ``oracle``, an agent whose ``describe()`` says ``agent: oracle``, or a
      ``ScriptedAgent``): ``oracle`` / ``scripted``;
    - otherwise the model (a local path shortened to its folder name).
    """
    ckpt = meta.get("checkpoint")
    if isinstance(ckpt, dict) and ckpt.get("step") is not None:
        run = str(ckpt.get("run") or meta.get("model") or "checkpoint")
        return f"{Path(run.rstrip('/')).name or run} @ step {int(ckpt['step'])}"
    raw = meta.get("agent")
    agent: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for name in (str(agent.get("agent") or ""), str(meta.get("backend") or "")):
        if name in MODEL_FREE:
            return MODEL_FREE[name]
    if str(agent.get("class", "")).endswith(".ScriptedAgent"):
        return "scripted"
    m = str(meta.get("model") or "default")
    return Path(m).name if "/" in m and Path(m).exists() else m


def _column_order(names: set[str]) -> list[str]:
    from arpo_env.benchmarks.registry import list_benchmarks

    order = [b.name for b in list_benchmarks()]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def build_table(folders: Sequence[str | Path], published: bool = False, pass_k: int | None = None,
                allow_incomplete: bool = False) -> Table:
    """Aggregate result folders (see the module docstring). Shard folders of one run (or a parent folder of
    them) are merged first (:func:`arpo_env.benchmarks.shards.merge_sources`: an overlap, a missing shard or
    missing items raise ``ShardSetError``; with ``allow_incomplete`` they are listed in ``Table.problems``)."""
    from arpo_env.benchmarks.shards import merge_sources
    targets = {b: c.metric for r in PUBLISHED for b, c in r.cells.items()} if published else {}
    rows: dict[tuple[str, str], Row] = {}
    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    problems: list[str] = []
    for source in merge_sources(folders, allow_incomplete):
        folder, meta, results = source.label, source.meta, source.rows
        problems += source.problems
        key = (agent_label(meta), str(meta.get("method", "base")))
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
            rescore = SCORERS.get(targets.get(bench, ""))
            if rescore is not None:
                scored = {sid: [0.0 if r.get("error") else float(rescore(r.get("prediction"), r["gold"])) for r in rs]
                          for sid, rs in samples.items()}
                metrics_used = [targets[bench]]
            else:
                scored = {sid: [float(r["score"]) for r in rs] for sid, rs in samples.items()}
                metrics_used = sorted({r.get("metric", "") for rs in samples.values() for r in rs})
            per_sample = [sum(v) / len(v) for v in scored.values()]
            mean, se = mean_and_se(per_sample)
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
    for row in out:
        for cell in row.cells.values():
            cell.metric = cell.metric or "?"
    columns = _column_order({b for r in out for b in r.cells})
    return Table(columns, out, pass_k, problems)


def _title(name: str) -> str:
    from arpo_env.benchmarks.registry import get_benchmark

    try:
        return get_benchmark(name).title
    except KeyError:
        return name


def _fmt(cell: Cell | None, pass_k: int | None, tag: bool = False) -> str:
    if cell is None:
        return ""
    text = f"{cell.mean:.1f}" if cell.se is None else f"{cell.mean:.1f} ± {cell.se:.1f}"
    if pass_k and cell.pass_k is not None:
        text += f" (p@{pass_k} {cell.pass_k:.1f})"
    return f"{text} [{cell.metric}]" if tag else text


def column_metrics(table: Table) -> dict[str, str | None]:
    """The metric of each column when all its cells share one, else ``None`` (the cells then say theirs)."""
    out: dict[str, str | None] = {}
    for c in table.columns:
        used = {r.cells[c].metric for r in table.rows if c in r.cells}
        out[c] = used.pop() if len(used) == 1 else None
    return out


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    shared = column_metrics(table)
    header = ["Model", "Method"]
    for c in table.columns:
        header.append(f"{_title(c)} ({shared[c]})" if shared[c] else f"{_title(c)} (metric per cell)")
    header += ["Avg", "Tool calls", "n"]
    body = []
    for r in table.rows:
        avg = r.average
        ns = sorted({c.n for c in r.cells.values() if c.n})
        body.append([r.model, r.method + (" (published)" if r.published else "")]
                    + [_fmt(r.cells.get(c), table.pass_k, tag=shared[c] is None) for c in table.columns]
                    + ["" if avg is None or math.isnan(avg) else f"{avg:.1f}",
                       "" if r.tool_calls is None else f"{r.tool_calls:.2f}",
                       "/".join(map(str, ns)) if ns else ""])
    return header, body


def legend(table: Table) -> list[str]:
    """One line per metric the table uses: its name and formula."""
    used = sorted({part for r in table.rows for c in r.cells.values() for part in c.metric.split("/")})
    return [f"{m}: {METRICS.get(m, 'recorded by the run')}" for m in used]


NOTE = ("Scores x100: mean ± standard error over samples (attempts averaged per sample). "
        "Published rows are the papers' numbers (ARPO.md s.7), not reproduced here.")


def render(table: Table, fmt: str = "md") -> str:
    """The table as Markdown (``md``, ending with the legend of the metrics used) or ``csv`` (numeric columns
    ``<bench>``, ``<bench>_se``, ``<bench>_n`` and ``<bench>_metric``). The standalone HTML page is
    :func:`arpo_env.benchmarks.html_report.html_page`."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model", "method", "published"] + [x for c in table.columns for x in (c, f"{c}_se", f"{c}_n", f"{c}_metric")]
                   + ["average", "tool_calls"])
        for r in table.rows:
            cells: list[object] = []
            for c in table.columns:
                cell = r.cells.get(c)
                cells += ["", "", "", ""] if cell is None else [f"{cell.mean:.4f}", "" if cell.se is None else f"{cell.se:.4f}",
                                                        cell.n or "", cell.metric]
            avg = r.average
            w.writerow([r.model, r.method, r.published] + cells + ["" if avg is None else f"{avg:.4f}",
                                                                  "" if r.tool_calls is None else f"{r.tool_calls:.4f}"])
        return buf.getvalue()
    header, body = _grid(table)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + f"\n\n{NOTE}\n\n" + "".join(f"- {x}\n" for x in legend(table))
    if fmt == "html":  # the page is a layer above this module (it embeds the plots, which import it)
        raise ValueError("the HTML page is arpo_env.benchmarks.html_report.html_page(table) "
                         "(`arpo leaderboard --format html`)")
    raise ValueError(f"unknown format {fmt!r}; use md or csv (html: html_report.html_page)")
