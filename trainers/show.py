"""``arpo show RUN --step N``: the trajectories a training run sampled at a step (``RUN/samples.jsonl``,
written by :mod:`arpo_env.trainers.samples`), printed with rich.

Each leaf: its reward, answer and gold, where it branched from (``>> branch``: parent leaf, token, entropy,
probability), then its response turn by turn: model turns, tool results, the tool calls (name, arguments,
error), and a ``>> branch`` line after the segment where another leaf was forked from it. Segments a
forked leaf inherited from its parent are dimmed and marked ``(shared)``.

Not covered: steps not sampled (``samples_per_step: 0``) or runs trained before samples existed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

BRANCH = ">> branch"
"""The marker of a branch point in the output."""


def _clip(text: str, limit: int) -> str:
    return text if limit <= 0 or len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more chars]"


def print_sample(console: Console, r: dict[str, Any], max_chars: int = 800) -> None:
    """One sampled leaf (see the module docstring)."""
    console.rule(f"[bold]step {r['step']} · prompt {r['prompt']} · leaf {r['leaf']}[/]")
    console.print(f"[bold]question:[/] {escape(str(r.get('question')))}")
    console.print(f"[bold]reward:[/] {r['reward']:.3f}   [bold]answer:[/] {escape(repr(r.get('answer')))}   "
                  f"[bold]gold:[/] {escape(str(r.get('gold')))}   [dim]({escape(str(r.get('finish_reason')))})[/]")
    b = r.get("branch")
    if b:
        extra = (f"; H {b['entropy']:.3f}, ΔH {b['delta']:+.3f}, p {b['probability']:.2f}"
                 if "entropy" in b else "")
        console.print(f"[magenta]{escape(BRANCH)}: forked from leaf {b['parent']} at token {b['at']}{extra}[/]")
    calls = {int(c["turn"]): c for c in r.get("tool_calls", [])}
    forks: dict[int, list[dict[str, Any]]] = {}
    for f in r.get("forks", []):
        forks.setdefault(int(f["at"]), []).append(f)
    turn, inherited = 0, False
    for s in r.get("segments", []):
        shared = " (shared)" if s.get("shared") and b else ""
        if inherited and not shared and b:
            console.print(f"[magenta]{escape(BRANCH)} point: leaf {r['leaf']} leaves leaf {b['parent']} here[/]")
        inherited = bool(shared)
        style = "dim " if shared else ""
        text = escape(_clip(str(s["text"]), max_chars))
        if s["kind"] == "model":
            console.print(f"[{style}green]model turn {turn}{shared}:[/] {text}")
            c = calls.get(turn)
            if c is not None:
                err = " " + escape("[error]") if c["error"] else ""
                console.print(f"[{style}yellow]  tool call: {escape(str(c['name']))}({escape(str(c['args']))}){err}[/]")
            turn += 1
        else:
            console.print(f"[{style}cyan]tool result{shared}:[/] {text}")
        for f in forks.get(int(s["end"]), []):
            console.print(f"[magenta]{escape(BRANCH)} here: leaf {f['child']} forked at token {f['at']} "
                          f"(H {f['entropy']:.3f}, p {f['probability']:.2f})[/]")


def show_command(
    run: str = typer.Argument(..., help="A training run's output_dir."),
    step: Optional[int] = typer.Option(None, "--step", "-s", help="The step to show (default: the last sampled)."),
    max_chars: int = typer.Option(800, help="Cut each segment's text after this many characters (0: never)."),
) -> None:
    """Show the trajectories a training run sampled at a step: text, tool calls and results, reward, branch
    points (from RUN/samples.jsonl)."""
    from arpo_env.trainers.samples import SAMPLES, read_samples

    path = Path(run) / SAMPLES
    if not path.exists():
        typer.echo(f"arpo show: {path} does not exist; train with samples_per_step > 0 (the default) "
                   "to write it", err=True)
        raise typer.Exit(2)
    rows = read_samples(path)
    steps = sorted({int(r["step"]) for r in rows})
    if not steps:
        typer.echo(f"arpo show: {path} holds no samples yet", err=True)
        raise typer.Exit(2)
    want = steps[-1] if step is None else step
    mine = [r for r in rows if int(r["step"]) == want]
    if not mine:
        typer.echo(f"arpo show: no samples for step {want} in {path}; sampled steps: "
                   f"{steps[0]}..{steps[-1]} ({len(steps)} steps)", err=True)
        raise typer.Exit(2)
    console = Console(highlight=False, soft_wrap=True)
    for r in mine:
        print_sample(console, r, max_chars)


def register(app: typer.Typer) -> None:
    """Add ``arpo show`` to the app."""
    app.command("show")(show_command)
