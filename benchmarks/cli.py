"""``arpo eval``, ``arpo leaderboard``, ``arpo benchmarks`` and ``arpo demo`` (heavy imports inside).

Input is checked before anything loads: ``--backend`` (closest name on a typo), ``--model`` (a path that
does not exist, or a hub id while offline, is refused before Hugging Face sees it; ``tiny`` is the random
tiny Llama; ``--backend policy --model module:function`` plays a Python policy), ``--set``/``--env-kwargs``
(JSON; their values are type-checked by the env's config and named ``Class.field`` on error), the openai
server (``--base-url`` must answer). ``--env``/``--env-id`` and ``--imports``/``-m`` mean what they mean
for every ``arpo`` command.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from arpo_env.errors import UserError, check_model_path, import_modules

SAMPLING = "Sampling (defaults: ARPO's evaluation settings)"
ENVS = "Environments and tools"


def _parse_kv(items: list[str] | None, json_text: str | None) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(json_text) if json_text else {}
    except json.JSONDecodeError as exc:
        raise UserError(f"--env-kwargs: not JSON ({exc.msg} at column {exc.colno}): {json_text!r}; "
                        """e.g. '{"max_tool_calls": 6}'""") from None
    if not isinstance(out, dict):
        raise UserError(f"--env-kwargs: a JSON object expected, got {json_text!r}")
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set needs KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_server(base_url: str, flag: str = "--base-url") -> None:
    """:class:`UserError` when nothing answers at ``base_url`` (``GET /models``, 10 s); any HTTP reply counts."""
    import urllib.error
    import urllib.request

    if "," in base_url:  # a pool (the openai backend's URL1,URL2): every member must answer
        for url in [u.strip() for u in base_url.split(",") if u.strip()]:
            check_server(url, flag)
        return
    try:
        urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=10).close()
    except urllib.error.HTTPError:
        return  # it answered (401, 404...): the backend reports the details
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{flag} {base_url}: cannot reach the server ({reason}); start it (e.g. `vllm serve "
                        f"MODEL --port 8000`) or pass the right {flag}") from None


def check_agent_args(backend: str, model: Optional[str], base_url: Optional[str] = None, *,
                     flags: tuple[str, str] = ("--backend", "--model")) -> None:
    """Everything about the agent that can be checked before loading it (see the module docstring)."""
    from arpo_env.benchmarks.agents_bridge import check_backend, load_policy

    check_backend(backend, flags[0])
    if backend in ("hf", "vllm"):
        check_model_path(model, flags[1], names=("tiny",) if backend == "hf" else ())
    elif backend == "policy":
        load_policy(model, flags[1])
    elif backend == "openai":
        check_server(base_url or "http://127.0.0.1:8000/v1")


def eval_command(
    model: Optional[str] = typer.Option(None, help="Model folder, hub id, `arpo train` run folder (its newest valid "
                                        "checkpoint) or checkpoint step folder (default: the embedded SmolLM2-135M-Instruct); "
                                        "'tiny': a random tiny Llama; module:function with --backend policy."),
    benchmarks: str = typer.Option("gsm8k,hotpotqa_offline", help="Comma-separated benchmark names or .jsonl paths."),
    out: str = typer.Option(..., "--out", "-o", help="Result folder (results.jsonl + metadata.json)."),
    limit: Optional[int] = typer.Option(None, min=1, help="First N samples of each benchmark."),
    attempts: int = typer.Option(1, min=1, help="Attempts per sample (pass@k needs k <= attempts)."),
    method: str = typer.Option("base", help="Method label for the leaderboard row (base, grpo, arpo...)."),
    backend: str = typer.Option("hf", help="Agent backend: hf, vllm, openai (--base-url), oracle (no model: answers "
                                "gold) or policy (--model module:function, called as f(env, turn, observation) -> action)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Server of --backend openai (default http://127.0.0.1:8000/v1)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY", help="Bearer token of --backend openai."),
    imports: Optional[list[str]] = typer.Option(None, "--imports", "-m", "--module",
                                                help="Import this module first (one that registers envs or benchmarks); repeatable."),
    temperature: float = typer.Option(0.6, min=0, rich_help_panel=SAMPLING),
    top_p: float = typer.Option(0.95, min=0, max=1, rich_help_panel=SAMPLING),
    top_k: int = typer.Option(20, rich_help_panel=SAMPLING),
    repetition_penalty: float = typer.Option(1.1, rich_help_panel=SAMPLING),
    max_new_tokens: int = typer.Option(1024, min=1, help="Per model turn.", rich_help_panel=SAMPLING),
    seed: int = typer.Option(0, help="Base seed of every episode.", rich_help_panel=SAMPLING),
    env: Optional[str] = typer.Option(None, "--env", "--env-id", help="Env id for all benchmarks instead of their defaults.", rich_help_panel=ENVS),
    env_kwargs: Optional[str] = typer.Option(None, help='JSON merged into every env\'s kwargs, e.g. \'{"max_tool_calls": 6}\'.', rich_help_panel=ENVS),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="One env kwarg KEY=VALUE (repeatable; VALUE is JSON or else a string), e.g. max_tool_calls=5.", rich_help_panel=ENVS),
    data_dir: Optional[str] = typer.Option(None, help="Folder with unshipped sets (GAIA, HLE); else $ARPO_DATA_DIR."),
    concurrency: int = typer.Option(4, min=1, help="Episodes per batched rollout."),
    workers: int = typer.Option(1, min=1, help="Batches in flight (threads; for remote backends)."),
    judge: Optional[str] = typer.Option(None, help="Judge model for judged benchmarks (else their fallback metric)."),
    judge_backend: str = typer.Option("hf", help="Backend of the judge model."),
    judge_max_tokens: int = typer.Option(1024, min=1, help="Token budget of a judge reply (reasoning judges need hundreds)."),
    new_run: bool = typer.Option(False, "--new-run", help="Archive existing results in OUT and start over."),
    force: bool = typer.Option(False, "--force", help="Continue although settings changed (recorded)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Re-run episodes that ended in an error."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: run only shard i (0-based) of n of the work list, "
                                        "into its own --out; `arpo leaderboard` merges the shard folders."),
    base_only: bool = typer.Option(False, "--base-only", help="The embedded model without its shipped tool-use adapter."),
) -> None:
    """Evaluate a model on benchmarks; resumes when OUT already holds part of the same run."""
    from arpo_env.agent import SamplingParams
    from arpo_env.benchmarks.agents_bridge import load_agent, load_judge
    from arpo_env.benchmarks.runner import EvalConfig, SettingsChanged, run_eval
    from arpo_env.checkpoints import CheckpointInvalid, NoValidCheckpoint, resolve_model_dir
    from arpo_env.folder_lock import FolderBusy, FolderLock

    import_modules(imports or [], "--imports")
    if shard is not None:
        from arpo_env.benchmarks.shards import ShardSpec
        ShardSpec.parse(shard)
    check_agent_args(backend, model, base_url)
    if judge:
        check_agent_args(judge_backend, judge, base_url, flags=("--judge-backend", "--judge"))
    if env:
        from arpo_env.registry import get_record
        get_record(env)  # an unknown id fails here, before the model loads
    from arpo_env.benchmarks.registry import get_benchmark
    for name in benchmarks.split(","):
        if name.strip():
            try:
                get_benchmark(name)  # an unknown name or a missing .jsonl fails here
            except FileNotFoundError:
                raise UserError(f"--benchmarks: file not found: {name.strip()}") from None
    agent_kw: dict[str, Any] = {k: v for k, v in (("base_url", base_url), ("api_key", api_key)) if v is not None}
    if model is not None and backend in ("hf", "vllm"):
        try:  # a run folder becomes its newest valid checkpoint, recorded as such in metadata.json
            model = str(resolve_model_dir(model))
        except (CheckpointInvalid, NoValidCheckpoint) as exc:
            raise UserError(f"--model: {exc}") from None
    sampling = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k,
                              repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)
    cfg = EvalConfig(out=out, benchmarks=[b for b in benchmarks.split(",") if b.strip()], model=model,
                     backend=backend, method=method, limit=limit, attempts=attempts, sampling=sampling, seed=seed,
                     env=env, env_kwargs=_parse_kv(set_, env_kwargs), data_dir=data_dir, concurrency=concurrency,
                     workers=workers, judge=judge, new_run=new_run, force=force, retry_errors=retry_errors,
                     progress=not no_progress, shard=shard)
    try:  # taken before the model loads, so a second run on OUT fails at once
        lock = FolderLock(out, "arpo eval", hint="--out")
    except FolderBusy as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        if base_only and backend == "hf":
            agent_kw["base_only"] = True
        agent = load_agent(backend=backend, model=model, **(agent_kw if backend in ("openai", "hf") else {}))
        judge_obj = load_judge(judge, judge_backend, max_new_tokens=judge_max_tokens) if judge else None
        summary = run_eval(cfg, agent, judge_obj, lock=lock)
    except SettingsChanged as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        lock.release()
    typer.echo(json.dumps(summary))
    if summary.get("judge_unparsed"):
        typer.echo(f"warning: {summary['judge_unparsed']} judge replies held no verdict (scored 0, "
                   "judge_verdict='unparsed' in results.jsonl); raise --judge-max-tokens or use a stronger judge",
                   err=True)
    from arpo_env.benchmarks.leaderboard import build_table, render

    typer.echo(render(build_table([out], allow_incomplete=shard is not None), "md"))  # one shard: its part


def leaderboard_command(
    folders: list[str] = typer.Argument(..., help="Result folders made by `arpo eval`."),
    format: str = typer.Option("md", "--format", "-f", help="md, csv or html (a standalone page: charset, date, run folders and hashes, plots embedded)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the table here (default: print)."),
    published: bool = typer.Option(False, "--published", help="Add the published ARPO/AEPO rows (ARPO.md s.7)."),
    plots: Optional[str] = typer.Option(None, help="Folder for PNG plots (score per benchmark; score vs tool calls)."),
    pass_k: Optional[int] = typer.Option(None, "--pass-k", help="Also report pass@k (k <= attempts)."),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Show a run whose shards are missing "
                                          "or incomplete (with a warning) instead of refusing."),
) -> None:
    """Build a leaderboard table (mean +- standard error, average, mean tool calls) from result folders;
    the shard folders of one `arpo eval --shard` run (or their parent folder) are merged into one row."""
    from arpo_env.benchmarks.leaderboard import build_table, render

    table = build_table(folders, published=published, pass_k=pass_k, allow_incomplete=allow_incomplete)
    for problem in table.problems:
        typer.echo(f"warning: {problem}", err=True)
    if format == "html":
        from arpo_env.benchmarks.html_report import html_page

        text = html_page(table)
    else:
        text = render(table, format)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)
    if plots:
        from arpo_env.benchmarks.plots import save_plots

        for p in save_plots(table, plots):
            typer.echo(f"wrote {p}")


def benchmarks_command(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")) -> None:
    """List the registered benchmarks with their metric, default env and data file."""
    from arpo_env.benchmarks.registry import list_benchmarks

    rows = []
    for b in list_benchmarks():
        try:
            where = str(b.path())
        except FileNotFoundError:
            where = "(not shipped: --data-dir)"
        rows.append({"name": b.name, "title": b.title, "category": b.category, "metric": b.metric,
                     "env": b.env_id, "env_kwargs": b.env_kwargs, "data": where})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="benchmarks")
    for col in ("name", "category", "metric", "env", "data"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["name"]), str(r["category"]), str(r["metric"]), f"{r['env']} {json.dumps(r['env_kwargs'])}",
                  str(r["data"]))
    Console().print(t)


def demo_command(
    out: str = typer.Option("arpo-demo", "--out", "-o", help="Result folder."),
    limit: int = typer.Option(3, help="Samples per benchmark."),
    benchmarks: str = typer.Option("gsm8k,hotpotqa_offline", help="Benchmarks of the demo."),
    model: Optional[str] = typer.Option(None, help="Model (default: the embedded SmolLM2-135M-Instruct)."),
    backend: str = typer.Option("hf", help="Agent backend."),
    max_new_tokens: int = typer.Option(192, help="Per model turn (small, for a laptop CPU)."),
    max_response_tokens: int = typer.Option(1024, help="Per episode, tool results included (one search result is 300-600)."),
    base_only: bool = typer.Option(False, "--base-only", help="Only the raw embedded model (no fine-tuned row)."),
) -> None:
    """Evaluate the default model offline on a small slice of a few benchmarks; prints a leaderboard."""
    from arpo_env.benchmarks.demo import run_demo

    check_agent_args(backend, model)
    run_demo(out=out, limit=limit, benchmarks=benchmarks.split(","), model=model, backend=backend,
             max_new_tokens=max_new_tokens, max_response_tokens=max_response_tokens, base_only=base_only)


def register(app: typer.Typer) -> None:
    """Add the benchmark commands to the ``arpo`` app."""
    app.command("eval")(eval_command)
    app.command("leaderboard")(leaderboard_command)
    app.command("benchmarks")(benchmarks_command)
    app.command("demo")(demo_command)


def main(argv: list[str] | None = None) -> None:
    """Run these commands without the rest of ``arpo`` (``python -m arpo_env.benchmarks.cli eval ...``)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    register(app)
    app(args=argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
