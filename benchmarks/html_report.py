"""The leaderboard as one standalone HTML page that can be mailed or attached as a single file.

The page holds: ``<!DOCTYPE html>``, ``<meta charset="utf-8">`` (so ``±`` never turns into ``Â±``), a title,
a small inline stylesheet, the UTC time it was generated, the table (rows named by
:func:`~arpo_env.benchmarks.leaderboard.agent_label`), the metric of every column, the legend of the
metrics, the run folders behind each row with their model and data hashes (read from each folder's
``metadata.json``), and the plots of :mod:`arpo_env.benchmarks.plots` embedded as base64 PNG data URIs.
Nothing is fetched from the network when the page is opened.

Not covered: interactivity (sorting, filtering); plots when matplotlib (the ``bench`` extra) is missing:
the page then says so in place of the plots.
"""
from __future__ import annotations

import base64
import html
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from arpo_env.benchmarks.leaderboard import MODEL_FREE, NOTE, Table, _grid, _title, agent_label, column_metrics, legend
from arpo_env.benchmarks.results import read_metadata
from arpo_env.extras import MissingExtra

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #e8eef7; } tr:nth-child(even) td { background: #f6f8fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.published td { font-style: italic; color: #444; }
.wide { overflow-x: auto; } code { font-size: 0.88em; } img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0.8em 0.4em 0; }
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _short(h: object, n: int = 12) -> str:
    return str(h)[:n] if h else "-"


def _table_html(table: Table) -> str:
    header, body = _grid(table)
    numeric = set(range(2, len(header)))
    th = "".join(f"<th>{_e(h)}</th>" for h in header)
    trs = []
    for row, cells in zip(table.rows, body):
        cls = ' class="published"' if row.published else ""
        tds = "".join(f'<td class="num">{_e(x)}</td>' if i in numeric else f"<td>{_e(x)}</td>"
                      for i, x in enumerate(cells))
        trs.append(f"<tr{cls}>{tds}</tr>")
    return (f'<div class="wide"><table class="arpo-leaderboard"><thead><tr>{th}</tr></thead><tbody>{"".join(trs)}</tbody>'
            "</table></div>")


def _columns_html(table: Table) -> str:
    shared = column_metrics(table)
    items = []
    for c in table.columns:
        metric = shared[c] or "differs per cell (named in each cell)"
        items.append(f"<tr><td>{_e(_title(c))}</td><td><code>{_e(c)}</code></td><td>{_e(metric)}</td></tr>")
    return ("<table><thead><tr><th>Column</th><th>Benchmark</th><th>Metric</th></tr></thead><tbody>"
            + "".join(items) + "</tbody></table>")


def _runs_html(table: Table) -> str:
    """One row per result folder: its row label, model and hash, backend, each benchmark's data hash, git."""
    trs = []
    for row in table.rows:
        for folder in row.sources:
            meta: dict[str, Any] = read_metadata(folder) or {}
            data = "<br>".join(f"{_e(name)}: <code>{_e(_short(b.get('data_sha256')))}</code>"
                               for name, b in sorted((meta.get("benchmarks") or {}).items()))
            git = meta.get("git") or {}
            commit = _short(git.get("commit")) + (" (dirty)" if git.get("dirty") else "")
            ckpt = meta.get("checkpoint")
            ckpt_txt = f"<br>checkpoint {_e(ckpt.get('run'))} step {_e(ckpt.get('step'))}" if isinstance(ckpt, dict) else ""
            label = agent_label(meta)
            model = "(no model)" if label in MODEL_FREE.values() else meta.get("model", "-")
            trs.append(
                f"<tr><td>{_e(label)} / {_e(row.method)}</td><td><code>{_e(Path(folder).resolve())}</code></td>"
                f"<td>{_e(model)}{ckpt_txt}</td><td><code>{_e(_short(meta.get('model_sha256')))}</code></td>"
                f"<td>{_e(meta.get('backend', '-'))}</td><td>{data}</td><td><code>{_e(commit)}</code></td>"
                f"<td>{_e(meta.get('created', '-'))}</td></tr>")
    if not trs:
        return "<p>No run folders (published rows only).</p>"
    return ("<table><thead><tr><th>Row</th><th>Folder</th><th>Model</th><th>Model sha256</th><th>Backend</th>"
            "<th>Data sha256</th><th>Git</th><th>Created</th></tr></thead><tbody>" + "".join(trs) + "</tbody></table>")


def _plots_html(table: Table) -> str:
    try:
        from arpo_env.benchmarks.plots import save_plots

        with tempfile.TemporaryDirectory(prefix="arpo-plots-") as tmp:
            imgs = [(p.stem, base64.b64encode(p.read_bytes()).decode("ascii")) for p in save_plots(table, tmp)]
    except MissingExtra as exc:
        return f"<p>Plots left out: {_e(exc)}</p>"
    return "".join(f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">' for name, data in imgs)


def html_page(table: Table, title: str = "ARPO leaderboard", plots: bool = True,
              now: datetime | None = None) -> str:
    """The standalone page (see the module docstring); ``plots=False`` leaves the images out."""
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    legend_html = "".join(f"<li>{_e(x)}</li>" for x in legend(table))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(when)} by <code>arpo leaderboard</code> from {sum(len(r.sources) for r in table.rows)}'
        " result folder(s).</p>",
        _table_html(table), f"<p>{_e(NOTE)}</p>",
        "<h2>Metric of each column</h2>", _columns_html(table),
        "<h2>Metrics</h2>", f"<ul>{legend_html}</ul>",
        "<h2>Runs</h2>", _runs_html(table),
    ]
    if plots:
        parts += ["<h2>Plots</h2>", _plots_html(table)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
