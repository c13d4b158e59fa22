"""PNG plots of a leaderboard (matplotlib, Agg backend: no display needed).

- ``scores.png``: score per benchmark, one bar per row, standard-error bars (published rows hatched).
- ``score_vs_tool_calls.png``: each evaluated row's average score against its mean tool calls per episode
  (published rows have no tool-call counts and are left out).
"""
from __future__ import annotations

from pathlib import Path

from arpo_env.benchmarks.leaderboard import Table, _title
from arpo_env.extras import require


def save_plots(table: Table, folder: str | Path) -> list[Path]:
    """Write the plots into ``folder``; returns their paths."""
    matplotlib = require("bench", "matplotlib", needed_by="leaderboard plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    cols, rows = table.columns, table.rows
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cols) + 2), 4.5))
    for i, r in enumerate(rows):
        xs = [j + i * width - 0.4 + width / 2 for j, c in enumerate(cols) if c in r.cells]
        ys = [r.cells[c].mean for c in cols if c in r.cells]
        errs = [r.cells[c].se or 0.0 for c in cols if c in r.cells]
        ax.bar(xs, ys, width, yerr=errs, capsize=2, hatch="//" if r.published else None,
               label=f"{r.model} / {r.method}" + (" (published)" if r.published else ""))
    ax.set_xticks(range(len(cols)), [_title(c) for c in cols], rotation=30, ha="right")
    ax.set_ylabel("score (x100)")
    ax.set_ylim(0, 100)
    ax.set_title("Score per benchmark (mean ± s.e.)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(folder / "scores.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for r in rows:
        if r.tool_calls is None or r.average is None:
            continue
        ax.scatter([r.tool_calls], [r.average], s=40)
        ax.annotate(f"{r.model} / {r.method}", (r.tool_calls, r.average), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("mean tool calls per episode")
    ax.set_ylabel("average score (x100)")
    ax.set_title("Score vs tool calls")
    fig.tight_layout()
    paths.append(folder / "score_vs_tool_calls.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
