"""The resumable evaluation runner behind ``arpo eval``.

For each benchmark, each of its first ``limit`` samples and each attempt, one env is made (the
benchmark's default env or the override), the agent plays the episode, the prediction is scored, and one
row is appended durably to ``OUT/results.jsonl``. ``OUT/metadata.json`` records everything that
determines the numbers. Running the same command again skips every ``(benchmark, sample, attempt)``
already in the file; a changed setting (model, sampling, env, judge, data, prompt) is refused unless
``new_run`` (archive the old results and start over) or ``force`` (keep them, note the change).

Concurrency: ``concurrency`` episodes go to the agent in one ``rollout`` call (played in lockstep:
batched generation, concurrent tools); ``workers`` such calls run in parallel threads (useful for remote
backends). Rows of a batch are written when the batch finishes. Errors in a batch are retried one
episode at a time; an episode that still fails is recorded with its error (and re-run on resume only
with ``retry_errors``). One run writes a folder at a time: it holds the folder's lock
(:mod:`arpo_env.folder_lock`) and another run on it stops with :class:`~arpo_env.folder_lock.FolderBusy`.
Sharding (``shard="i/n"``, :mod:`arpo_env.benchmarks.shards`): the run takes only its part of the full work
list and records the shard spec and the run's fingerprint; resume works per shard folder, and a folder
made with another shard spec is a settings change. ``arpo leaderboard`` merges the shard folders.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import arpo_env
from arpo_env.agent import Agent, SamplingParams
from arpo_env.benchmarks import metrics
from arpo_env.benchmarks.benchmark import Benchmark
from arpo_env.benchmarks.judge import LLMJudge
from arpo_env.benchmarks.provenance import (
    describe_agent,
    describe_env,
    fingerprint_diff,
    git_revision,
    package_versions,
    path_hash,
)
from arpo_env.benchmarks.registry import get_benchmark
from arpo_env.benchmarks.results import (
    METADATA,
    RESULTS,
    ResultsWriter,
    read_metadata,
    read_rows,
    row_key,
    write_metadata,
)
from arpo_env.checkpoints import checkpoint_info, checkpoint_label
from arpo_env.config import split_fields
from arpo_env.env import EnvConfig
from arpo_env.extras import MissingExtra
from arpo_env.folder_lock import FolderLock, folder_lock
from arpo_env.task import Task

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Settings of one evaluation run (the flags of ``arpo eval``)."""

    out: str
    """Result folder (created); holds ``results.jsonl`` and ``metadata.json``."""
    benchmarks: list[str] = field(default_factory=lambda: ["gsm8k", "hotpotqa_offline"])
    """Benchmark names (or paths of ``.jsonl`` files)."""
    model: str | None = None
    """Model path or hub id; ``None`` = the embedded default (SmolLM2-135M-Instruct)."""
    backend: str = "hf"
    """Agent backend: ``hf`` (transformers), ``vllm`` or ``openai``."""
    method: str = "base"
    """Label of the training method for the leaderboard row (``base``, ``grpo``, ``arpo``…)."""
    limit: int | None = None
    """Evaluate the first N samples of each benchmark (all when ``None``)."""
    attempts: int = 1
    """Attempts per sample (pass@k needs k <= attempts)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """Sampling settings (defaults: ARPO's evaluation settings, ARPO.md section 7)."""
    seed: int = 0
    """Base seed; each (benchmark, sample, attempt) gets a seed derived from it."""
    env: str | None = None
    """Env id for every benchmark instead of each benchmark's default."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Merged over each benchmark's env kwargs (tool backends, budgets: ``{"backend": "ddgs", "max_tool_calls": 5}``)."""
    data_dir: str | None = None
    """Folder with data files that are not shipped (GAIA, HLE); else ``$ARPO_DATA_DIR``."""
    concurrency: int = 4
    """Episodes per rollout batch."""
    workers: int = 1
    """Rollout batches in flight at once (threads)."""
    judge: str | None = None
    """Description of the judge model (set when a judge is given); ``None`` = judged benchmarks use their
    fallback metric."""
    new_run: bool = False
    """Archive existing results in ``OUT`` and start over."""
    force: bool = False
    """Resume even though settings changed (the change is recorded in the metadata)."""
    retry_errors: bool = False
    """On resume, re-run episodes whose row recorded an error."""
    progress: bool = True
    """Show a progress bar with rate and ETA."""
    shard: str | None = None
    """``"i/n"``: run only shard i (0-based) of n of the work list (:mod:`arpo_env.benchmarks.shards`)."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.concurrency < 1 or self.workers < 1:
            raise ValueError("attempts, concurrency and workers must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")


@dataclass
class Item:
    bench: Benchmark
    sample: Task
    """The benchmark's row (``Benchmark.load``); ``id`` is always set."""
    attempt: int
    seed: int


def item_seed(base: int, bench: str, sample_id: str, attempt: int) -> int:
    """The seed of one episode: a stable function of the base seed and the key."""
    return zlib.crc32(f"{base}:{bench}:{sample_id}:{attempt}".encode()) & 0x7FFFFFFF


def env_for(cfg: EvalConfig, bench: Benchmark) -> tuple[str, dict[str, Any]]:
    """Env id and kwargs for a benchmark under this config. With another env than the benchmark's default,
    only the benchmark's generic budgets (:class:`arpo_env.EnvConfig` fields such as ``max_tool_calls``)
    carry over, since tool-specific kwargs (``browse``) belong to the default env."""
    env_id = cfg.env or bench.env_id
    base = dict(bench.env_kwargs)
    if env_id != bench.env_id:
        base, _ = split_fields(EnvConfig, base)
    return env_id, {**base, **cfg.env_kwargs}


def build_metadata(cfg: EvalConfig, agent: Any, benches: list[Benchmark], judge: LLMJudge | None) -> dict[str, Any]:
    """Everything that determines the numbers of this run. A model that is a training checkpoint (a step
    folder ``RUN/checkpoints/step_N``, or a folder ``arpo export`` wrote from one) is labelled
    ``RUNNAME@step_0000000N`` and named by ``"checkpoint": {"run": RUN, "step": N}``."""
    envs = {}
    for b in benches:
        env_id, kw = env_for(cfg, b)
        env = arpo_env.make(env_id, **kw)
        try:
            envs[b.name] = describe_env(env, env_id, kw)
        finally:
            env.close()
    agent_info = describe_agent(agent)
    model_path = agent_info.get("model_path") or cfg.model
    label = cfg.model or agent_info.get("model") or (Path(model_path).name if model_path else "default")
    if adapter := agent_info.get("adapter"):
        label = f"{label}+{adapter['name']}"
    ckpt = checkpoint_info(cfg.model) or checkpoint_info(model_path)
    named = {"checkpoint": ckpt} if ckpt else {}
    return {"model": checkpoint_label(ckpt) if ckpt else label, **named, "model_sha256": path_hash(model_path),
            "backend": cfg.backend, "method": cfg.method, "agent": agent_info,
            "sampling": asdict(cfg.sampling), "seed": cfg.seed, "judge": judge.describe() if judge else None,
            "benchmarks": {b.name: b.describe(cfg.data_dir) for b in benches}, "envs": envs,
            "packages": package_versions(), "git": git_revision(), "limit": cfg.limit, "attempts": cfg.attempts}


def prepare_folder(cfg: EvalConfig, meta: dict[str, Any]) -> set:
    """Check resumability, write the metadata, and return the keys already done."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    old = read_metadata(out)
    history: list[dict[str, Any]] = []
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if old is not None and cfg.new_run:
        archive = out / "archive" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        archive.mkdir(parents=True)
        for name in (RESULTS, METADATA):
            if (out / name).exists():
                shutil.move(str(out / name), archive / name)
        old = None
    if old is not None:
        diffs = fingerprint_diff(old, meta)
        if diffs and not cfg.force:
            raise SettingsChanged(out, diffs)
        history = old.get("history", [])
        meta["benchmarks"] = {**old.get("benchmarks", {}), **meta["benchmarks"]}
        meta["envs"] = {**old.get("envs", {}), **meta["envs"]}
        meta["created"] = old.get("created", now)
        if diffs:
            meta.setdefault("forced_changes", old.get("forced_changes", [])).append({"at": now, "changes": diffs})
    else:
        meta["created"] = now
    meta["history"] = history + [{"started": now, "git": meta["git"], "limit": cfg.limit, "attempts": cfg.attempts}]
    write_metadata(out, meta)
    rows = read_rows(out / RESULTS, repair=True)
    return {row_key(r) for r in rows if not (cfg.retry_errors and r.get("error"))}


def _shard_work(cfg: EvalConfig, meta: dict[str, Any], work: list[Item]) -> list[Item]:
    """This shard's items; records the shard in ``meta`` and ``shard.json``; refuses another shard's folder."""
    from arpo_env.benchmarks.shards import ShardSpec, record_shard

    spec = ShardSpec.parse(str(cfg.shard))
    old = (read_metadata(cfg.out) or {}).get("shard")
    if old is not None and not cfg.new_run and (old.get("index"), old.get("count")) != (spec.index, spec.count):
        diff = f"shard: {old.get('index')}/{old.get('count')} -> {spec}"
        if not cfg.force:
            raise SettingsChanged(Path(cfg.out), [diff])
    mine = spec.select(work)
    record_shard(cfg.out, meta, spec, [(it.bench.name, str(it.sample.id), it.attempt) for it in mine], len(work))
    return mine


class SettingsChanged(RuntimeError):
    """The folder holds a run made with other settings."""

    def __init__(self, out: Path, diffs: list[str]):
        self.diffs = diffs
        super().__init__(f"{out} holds results made with other settings:\n  " + "\n  ".join(diffs) +
                         "\nUse another --out, --new-run to archive them and start over, or --force to continue.")


def score_row(bench: Benchmark, sample: Task, prediction: str | None, judge: LLMJudge | None) -> dict[str, Any]:
    """Scores of one prediction: EM, F1, cover-EM (+ math equivalence for math, ARPO's evaluation EM/F1 for
    the others, + the judge when given),
    the benchmark's score (its metric, or the fallback) and ``correct`` (score >= 1, for pass@k)."""
    is_math = bench.category == "math" or bench.metric == "math_equiv"
    names = ["em", "f1", "cover_em"] + (["math_equiv"] if is_math else ["arpo_em", "arpo_f1"])  # ARPO's eval formulas
    scores = metrics.score_all(prediction, sample.answer, names)
    extra: dict[str, Any] = {}
    if judge is not None and bench.metric == "judge":
        verdict = judge(sample.question, prediction, sample.answer)
        scores["judge"] = verdict.score
        extra = {"judge_reply": verdict.reply, "judge_verdict": verdict.label, "judge_parsed": verdict.parsed}
    metric = bench.metric if bench.metric in scores else (bench.fallback_metric or "f1")
    return {"scores": scores, "metric": metric, "score": scores[metric], "correct": scores[metric] >= 1.0 - 1e-9, **extra}


def _run_batch(agent: Agent, cfg: EvalConfig, batch: list[Item], judge: LLMJudge | None) -> list[dict[str, Any]]:
    envs, options = [], []
    t0 = time.perf_counter()
    try:
        for it in batch:
            env_id, kw = env_for(cfg, it.bench)
            envs.append(arpo_env.make(env_id, **kw))
            options.append({"task": it.bench.episode_task(it.sample)})
        params = SamplingParams(**{**asdict(cfg.sampling), "seed": batch[0].seed})
        trajs = agent.rollout(envs, params, options=options, seeds=[it.seed for it in batch])
        elapsed = time.perf_counter() - t0
        rows = []
        for it, env, tr in zip(batch, envs, trajs):
            ep = getattr(env, "_episode", None)
            calls = [{"name": c.name, "args": c.args, "error": c.error, "turn": c.turn} for c in tr.tool_calls]
            rows.append({"prediction": tr.answer, "response": ep.response if ep else tr.text, "model_text": tr.text,
                         "tool_calls": len(tr.tool_calls), "tool_call_list": calls,
                         "tool_counts": dict(ep.tool_counts) if ep else {},
                         "tokens": {"prompt": tr.prompt_len, "response": len(tr.token_ids) - tr.prompt_len,
                                    "generated": int(sum(tr.loss_mask))},
                         "finish_reason": tr.finish_reason, "terminated": tr.terminated, "truncated": tr.truncated,
                         "reward": tr.reward, "time_s": elapsed / len(batch), "batch_time_s": elapsed,
                         "error": None, **score_row(it.bench, it.sample, tr.answer, judge)})
        return rows
    except MissingExtra:  # an installation problem, not an episode's failure: stop with the pip command
        raise
    except Exception as exc:  # noqa: BLE001 - recorded per episode, never lost
        if len(batch) > 1:
            return [r for it in batch for r in _run_batch(agent, cfg, [it], judge)]
        log.warning("episode %s/%s failed: %s", batch[0].bench.name, batch[0].sample.id, exc)
        return [{"prediction": None, "response": "", "tool_calls": 0, "tokens": {}, "time_s": time.perf_counter() - t0,
                 "error": f"{type(exc).__name__}: {exc}", "scores": {}, "metric": batch[0].bench.metric,
                 "score": 0.0, "correct": False}]
    finally:
        for env in envs:
            env.close()


def run_eval(cfg: EvalConfig, agent: Agent, judge: LLMJudge | None = None,
             on_row: Callable[[dict[str, Any]], None] | None = None,
             lock: FolderLock | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns ``{"done", "skipped", "errors", "judge_unparsed", "elapsed_s",
    "samples_per_s", "out"}`` (``judge_unparsed``: judged rows of this call whose reply held no verdict).

    The result folder is locked for the whole run (:mod:`arpo_env.folder_lock`): a second run on the same
    folder raises :class:`arpo_env.folder_lock.FolderBusy` before writing anything. ``lock``: the folder's
    lock, already taken by the caller (``arpo eval`` takes it before loading the model, to fail fast)."""
    if lock is not None and (not lock.held or lock.folder.resolve() != Path(cfg.out).resolve()):
        raise ValueError(f"lock must be the held lock of {cfg.out}, got {lock.folder} (held: {lock.held})")
    benches = [get_benchmark(n) for n in cfg.benchmarks]
    samples = {b.name: b.load(cfg.data_dir, cfg.limit) for b in benches}
    meta = build_metadata(cfg, agent, benches, judge)
    with contextlib.nullcontext(lock) if lock is not None else folder_lock(cfg.out, "arpo eval", hint="--out"):
        return _run_locked(cfg, agent, judge, on_row, benches, samples, meta)


def _run_locked(cfg: EvalConfig, agent: Agent, judge: LLMJudge | None,
                on_row: Callable[[dict[str, Any]], None] | None, benches: list[Benchmark],
                samples: dict[str, list[Task]], meta: dict[str, Any]) -> dict[str, Any]:
    items = [Item(b, s, a, item_seed(cfg.seed, b.name, str(s.id), a)) for b in benches for s in samples[b.name]
             for a in range(cfg.attempts)]
    if cfg.shard is not None:
        items = _shard_work(cfg, meta, items)
    done = prepare_folder(cfg, meta)
    todo = [it for it in items if (it.bench.name, it.sample.id, it.attempt) not in done]
    skipped = len(items) - len(todo)
    batches = [todo[i:i + cfg.concurrency] for i in range(0, len(todo), cfg.concurrency)]
    counts = {"done": 0, "errors": 0, "judge_unparsed": 0}
    t0 = time.perf_counter()
    from arpo_env.benchmarks.progress import progress_bar

    with ResultsWriter(Path(cfg.out) / RESULTS) as writer, progress_bar(len(todo), cfg.progress) as advance:
        def work(batch: list[Item]) -> None:
            for it, row in zip(batch, _run_batch(agent, cfg, batch, judge)):
                full = {"benchmark": it.bench.name, "sample_id": it.sample.id, "attempt": it.attempt,
                        "seed": it.seed, "question": it.sample.question, "gold": it.sample.answer, **row,
                        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
                writer.write(full)
                counts["done"] += 1
                counts["errors"] += bool(row["error"])
                counts["judge_unparsed"] += row.get("judge_verdict") == "unparsed"
                advance(1)
                if on_row:
                    on_row(full)

        if cfg.workers == 1:
            for batch in batches:
                work(batch)
        else:
            with ThreadPoolExecutor(cfg.workers) as pool:
                list(pool.map(work, batches))
    elapsed = time.perf_counter() - t0
    return {"done": counts["done"], "skipped": skipped, "errors": counts["errors"],
            "judge_unparsed": counts["judge_unparsed"], "elapsed_s": elapsed,
            "samples_per_s": counts["done"] / elapsed if elapsed > 0 else math.nan, "out": str(cfg.out)}
