"""The ``arpo`` command line.

Core commands live here (``arpo envs``, ``arpo episode``). Other packages add theirs without editing this
file: each module in :data:`COMMAND_MODULES` (and each entry point of the group ``arpo_env.cli``) exposes
``register(app: typer.Typer) -> None``. Those modules must import heavy libraries (torch, vLLM) inside
their commands, not at import time, so ``arpo --help`` stays fast and works on the core install.

Errors: :func:`main` is the one error boundary. A user error (an unknown env id or benchmark, a missing
file, a wrong-typed or out-of-range value, a missing extra, an unreachable server, a malformed YAML file,
a bad flag; see :func:`arpo_env.errors.user_message`) prints one or two lines naming the flag, key or file
and the fix, e.g. ``arpo: arpo/Search-v0's BM25 index needs 'bm25s', which is not installed: pip install
'arpo-env[search]'``, and exits with status 2. ``--debug`` (anywhere on the line) or ``ARPO_DEBUG=1``
shows the traceback as well. Any other exception is a bug and keeps its traceback (exit 1).

Conventions shared by every command: ``--imports``/``-m``/``--module`` imports a module first (one that
calls ``arpo_env.register``, or holds a policy), and the current folder is importable (``main`` puts it on
``sys.path``, as ``python -m`` does); an env is chosen with ``--env`` or ``--env-id`` (both spellings);
``python -m arpo_env`` is the same as ``arpo``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import sys
import traceback
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import arpo_env
from arpo_env.errors import DEBUG_HINT, UserError, import_modules, user_message
from arpo_env.extras import MissingExtra, pip_command

app = typer.Typer(help="arpo-env: tool-use environments, agents, benchmarks and the ARPO trainer.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
log = logging.getLogger(__name__)

#: Modules that contribute sub-commands (skipped when not installed).
COMMAND_MODULES = ("arpo_env.envs.cli", "arpo_env.benchmarks.cli", "arpo_env.trainers.cli")
_debug_flag = [False]  # --debug of this call of main()
IMPORTS_HELP = "Import this module first (one that calls arpo_env.register); repeatable. The current folder is importable."


def imports_option() -> Optional[list[str]]:
    """The ``--imports``/``-m``/``--module`` option every command that makes envs takes."""
    return typer.Option(None, "--imports", "-m", "--module", help=IMPORTS_HELP)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors (or set ARPO_DEBUG=1).")
          ) -> None:
    """arpo-env: tool-use environments, agents, benchmarks and the ARPO trainer."""
    if debug:
        _debug_flag[0] = True


@app.command("envs")
def envs_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                 module: Optional[list[str]] = imports_option()) -> None:
    """List registered environments with their tools, fork kind and the extras they need."""
    import_modules(module or [], "--imports")
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
def episode_command(env_arg: Optional[str] = typer.Argument(None, metavar="[ENV_ID]",
                                                       help="Environment id (default arpo/Calculator-v0)."),
                    env_opt: Optional[str] = typer.Option(None, "--env", "--env-id", help="Environment id (same as the argument)."),
                    imports: Optional[list[str]] = imports_option(),
                    seed: int = typer.Option(0, help="Seed of the task draw."),
                    question: Optional[str] = typer.Option(None, help="Ask this instead of a drawn task."),
                    answer: Optional[str] = typer.Option(None, help="Gold answer for --question."),
                    action: Optional[list[str]] = typer.Option(None, "--action", "-a",
                                                               help="Actions to play (default: the env's scripted ones).")) -> None:
    """Play a scripted episode and print every turn, the reward and a fork of the episode."""
    if env_arg and env_opt and env_arg != env_opt:
        raise UserError(f"two env ids: {env_arg!r} (argument) and {env_opt!r} (--env); give one")
    env_id = env_opt or env_arg or "arpo/Calculator-v0"
    import_modules(imports or [], "--imports")
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


def _debug() -> bool:
    return _debug_flag[0] or os.environ.get("ARPO_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _click_kind(exc: BaseException) -> str | None:
    """``"usage"``, ``"click"`` (another ClickException), ``"exit"``, ``"abort"`` or ``None``, by class name:
    typer >= 0.16 vendors click (``typer._click``), older typer uses click itself."""
    names = {c.__name__ for c in type(exc).__mro__}
    for name, kind in (("UsageError", "usage"), ("ClickException", "click"), ("Exit", "exit"), ("Abort", "abort")):
        if name in names:
            return kind
    return None


def _usage_error(exc: Exception) -> str:
    """A click/typer usage error as two lines (its message; where the help is), without the box."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "arpo"
    return f"{command}: {exc.format_message()}\nTry '{command} --help' for help."  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``arpo`` console script (``argv``: the arguments, default ``sys.argv[1:]``).

    The error boundary (see the module docstring); always ends with ``SystemExit`` (the exit status)."""
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    _debug_flag[0] = "--debug" in args[:cut]  # accepted anywhere before "--", not only right after `arpo`
    args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # a console script does not see the current folder
        sys.path.insert(0, cwd)
    try:
        _load_command_modules()
        code = app(args=args, prog_name="arpo", standalone_mode=False)
    except KeyboardInterrupt:
        print("arpo: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:
        kind = _click_kind(exc)
        if kind == "exit":
            raise SystemExit(getattr(exc, "exit_code", 0)) from None
        if kind == "abort":
            print("arpo: aborted", file=sys.stderr)
            raise SystemExit(130) from None
        if kind in ("usage", "click"):  # bad flags: click's own message, as two lines, no box
            if exc.format_message():  # type: ignore[attr-defined]  # empty: no_args_is_help printed the help
                print(_usage_error(exc) if kind == "usage" else f"arpo: {exc.format_message()}",  # type: ignore[attr-defined]
                      file=sys.stderr)
            raise SystemExit(getattr(exc, "exit_code", 2) or 2) from None
        message = user_message(exc)
        if message is None:
            raise
        if _debug():
            traceback.print_exc()
        print(f"arpo: {message}" + ("" if _debug() or isinstance(exc, (UserError, MissingExtra))
                                     else f"\n{DEBUG_HINT}"), file=sys.stderr)
        code = 2
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
