"""The ``arpo`` command line.

Core commands live here (``arpo envs``, ``arpo episode``). Other packages add theirs without editing this
file: each module in :data:`COMMAND_MODULES` (and each entry point of the group ``arpo_env.cli``) exposes
``register(app: typer.Typer) -> None``. Those modules must import heavy libraries (torch, vLLM) inside
their commands, not at import time, so ``arpo --help`` stays fast and works on the core install.

A command that needs a missing extra (:class:`arpo_env.extras.MissingExtra`) prints one line, e.g.
``arpo: arpo/Search-v0's BM25 index needs 'bm25s', which is not installed: pip install 'arpo-env[search]'``,
and exits with status 2 (no traceback).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import arpo_env
from arpo_env.extras import MissingExtra, pip_command

app = typer.Typer(help="arpo-env: tool-use environments, agents, benchmarks and the ARPO trainer.",
                  no_args_is_help=True, add_completion=False)
console = Console()
log = logging.getLogger(__name__)

#: Modules that contribute sub-commands (skipped when not installed).
COMMAND_MODULES = ("arpo_env.envs.cli", "arpo_env.benchmarks.cli", "arpo_env.trainers.cli")


@app.command("envs")
def envs_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                 module: Optional[list[str]] = typer.Option(
                     None, "--module", "-m", help="Import this module first (one that calls arpo_env.register).")) -> None:
    """List registered environments with their tools, fork kind and the extras they need."""
    for name in module or []:
        importlib.import_module(name)
    rows = []
    for rec in arpo_env.list_envs():
        extras, missing = list(rec.extras), rec.missing_extras()
        try:
            cls = rec.load()
            tools = ", ".join(getattr(cls, "declared_tools", ())) or "-"
            kind = getattr(getattr(cls, "fork_kind", None), "value", "?")
            desc = rec.description or (cls.__doc__ or "").strip().splitlines()[0]
        except MissingExtra as exc:  # a plugin env whose module imports a missing extra
            tools, kind, desc = "?", "?", str(exc)
            extras += [exc.extra] if exc.extra not in extras else []
            missing += [exc.extra] if exc.extra not in missing else []
        except Exception as exc:  # an env whose module fails to import is still listed, with the reason
            tools, kind, desc = "?", "?", f"(cannot import: {type(exc).__name__}: {exc})"
        rows.append({"id": rec.id, "tools": tools, "fork_kind": kind, "source": rec.source, "extras": extras,
                     "missing_extras": missing, "description": desc})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="arpo-env environments")
    table.add_column("id", no_wrap=True, style="bold")  # ids are what users copy: never cut them
    table.add_column("tools", min_width=10)  # "calculator" stays whole
    table.add_column("fork kind", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("extras", min_width=16)  # "search (missing)" stays on one line
    table.add_column("description", ratio=1)
    for r in rows:
        needs = ", ".join(e + (" (missing)" if e in r["missing_extras"] else "") for e in r["extras"]) or "-"
        table.add_row(*(escape(str(r[k])) for k in ("id", "tools", "fork_kind", "source")), escape(needs),
                      escape(str(r["description"])))
    console.print(table)
    missing_all = sorted({e for r in rows for e in r["missing_extras"]})
    if missing_all:
        console.print("Extras not installed: " + "; ".join(f"{e}: {escape(pip_command(e))}" for e in missing_all),
                      highlight=False, soft_wrap=True)


@app.command("episode")
def episode_command(env_id: str = typer.Argument("arpo/Calculator-v0", help="Environment id."),
                    seed: int = typer.Option(0, help="Seed of the task draw."),
                    question: Optional[str] = typer.Option(None, help="Ask this instead of a drawn task."),
                    answer: Optional[str] = typer.Option(None, help="Gold answer for --question."),
                    action: Optional[list[str]] = typer.Option(None, "--action", "-a",
                                                               help="Actions to play (default: the env's scripted ones).")) -> None:
    """Play a scripted episode and print every turn, the reward and a fork of the episode."""
    env = arpo_env.make(env_id)
    options = {"question": question, "answer": answer or ""} if question else None
    prompt, info = env.reset(seed=seed, options=options)
    console.rule(f"[bold]{env_id}[/] (fork kind: {env.fork_kind.value})")
    console.print(f"[dim]system:[/] {info['system_prompt']}\n[bold]user:[/] {prompt}")
    actions = list(action) if action else env.example_actions()
    reward = 0.0
    for i, act in enumerate(actions):
        if i == 1:
            branch = env.fork()
            console.print(f"[magenta]forked after turn 1: the branch is at turn {branch.episode.turns}, "
                          f"{branch.episode.tool_calls} tool call(s) made[/]")
            branch.close()
        obs, reward, terminated, truncated, info = env.step(act)
        console.print(f"[green]agent:[/] {act}")
        if obs:
            console.print(f"[cyan]env:[/] {obs}")
        if info["error"]:
            console.print(f"[red]error:[/] {info['error']}")
        if terminated or truncated:
            break
    ep = env.episode
    console.print(f"[bold]answer:[/] {ep.answer!r}  [bold]gold:[/] {ep.task.answer}  [bold]reward:[/] {reward}  "
                  f"[bold]tool calls:[/] {ep.tool_calls}  ({'terminated' if ep.terminated else 'truncated' if ep.truncated else 'running'})")
    env.close()


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the module does not exist yet: nothing to add
                continue
            raise
        module.register(app)
    for ep in importlib.metadata.entry_points(group="arpo_env.cli"):
        try:
            ep.load()(app)
        except Exception as exc:
            log.warning("arpo: CLI plugin %r failed to load: %s", ep.name, exc)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``arpo`` console script (``argv``: the arguments, default ``sys.argv[1:]``)."""
    try:
        _load_command_modules()
        app(args=argv, prog_name="arpo")
    except MissingExtra as exc:
        print(f"arpo: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
