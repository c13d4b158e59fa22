"""The resumable runner: rows, metadata, resume after SIGKILL, refusal of changed settings."""
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from arpo_env.agent import SamplingParams
from arpo_env.benchmarks.judge import LLMJudge
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.results import read_rows
from arpo_env.benchmarks.runner import EvalConfig, SettingsChanged, run_eval
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CALC = "arpo/Calculator-v0"


def cfg(out, **kw):
    base = dict(out=str(out), benchmarks=["gsm8k", "hotpotqa_offline"], limit=4, attempts=2, env=CALC,
                concurrency=3, progress=False)
    return EvalConfig(**{**base, **kw})


def keys(out):
    return Counter((r["benchmark"], r["sample_id"], r["attempt"]) for r in read_rows(Path(out) / "results.jsonl"))


def test_rows_scores_and_metadata(tmp_path):
    s = run_eval(cfg(tmp_path), OracleAgent(accuracy=1.0, tool_calls=1))
    assert s["done"] == 16 and s["errors"] == 0
    rows = read_rows(tmp_path / "results.jsonl")
    assert all(r["score"] == 1.0 and r["correct"] for r in rows)
    gsm = next(r for r in rows if r["benchmark"] == "gsm8k")
    assert gsm["metric"] == "math_equiv" and gsm["scores"]["f1"] == 1.0 and gsm["tool_calls"] == 1
    assert "<calculator>" in gsm["response"] and "<result>" in gsm["response"] and gsm["prediction"] == "18"
    assert gsm["tokens"]["generated"] > 0 and gsm["time_s"] >= 0 and gsm["error"] is None
    hot = next(r for r in rows if r["benchmark"] == "hotpotqa_offline")
    assert hot["metric"] == "f1" and "math_equiv" not in hot["scores"]
    assert {"arpo_em", "arpo_f1"} <= set(hot["scores"]) and "arpo_f1" not in gsm["scores"]  # ARPO's eval formulas
    meta = json.loads((tmp_path / "metadata.json").read_text())
    for k in ("model", "model_sha256", "backend", "sampling", "seed", "judge", "benchmarks", "envs", "packages", "git"):
        assert k in meta
    assert meta["sampling"]["temperature"] == 0.6 and meta["sampling"]["top_k"] == 20
    assert meta["envs"]["gsm8k"]["env_id"] == CALC and meta["envs"]["gsm8k"]["source_sha256"]
    assert len(meta["benchmarks"]["gsm8k"]["data_sha256"]) == 64
    assert meta["packages"]["math-verify"]


def test_wrong_answers_score_zero_and_seeds_are_stable(tmp_path):
    run_eval(cfg(tmp_path / "a", attempts=3), OracleAgent(accuracy=0.5))
    run_eval(cfg(tmp_path / "b", attempts=3), OracleAgent(accuracy=0.5))
    a = {(r["benchmark"], r["sample_id"], r["attempt"]): r["score"] for r in read_rows(tmp_path / "a/results.jsonl")}
    b = {(r["benchmark"], r["sample_id"], r["attempt"]): r["score"] for r in read_rows(tmp_path / "b/results.jsonl")}
    assert a == b and 0 < sum(a.values()) < len(a)


def test_resume_skips_done_and_grows_attempts_and_benchmarks(tmp_path):
    run_eval(cfg(tmp_path, limit=2, attempts=1), OracleAgent())
    s = run_eval(cfg(tmp_path, limit=3, attempts=2), OracleAgent())
    assert s["skipped"] == 4 and s["done"] == 8
    s = run_eval(cfg(tmp_path, limit=3, attempts=2, benchmarks=["gsm8k", "hotpotqa_offline", "bamboogle"]), OracleAgent())
    assert s["done"] == 6
    k = keys(tmp_path)
    assert len(k) == 18 and set(k.values()) == {1}


def test_changed_settings_are_refused_unless_asked(tmp_path):
    run_eval(cfg(tmp_path, limit=2), OracleAgent())
    with pytest.raises(SettingsChanged, match="sampling"):
        run_eval(cfg(tmp_path, limit=2, sampling=SamplingParams(temperature=1.0)), OracleAgent())
    with pytest.raises(SettingsChanged, match="envs.gsm8k"):
        run_eval(cfg(tmp_path, limit=2, env_kwargs={"max_tool_calls": 1}), OracleAgent())
    with pytest.raises(SettingsChanged, match="agent"):
        run_eval(cfg(tmp_path, limit=2), OracleAgent(accuracy=0.3))
    s = run_eval(cfg(tmp_path, limit=3, sampling=SamplingParams(temperature=1.0), force=True), OracleAgent())
    assert s["done"] == 4
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["forced_changes"] and meta["sampling"]["temperature"] == 1.0
    s = run_eval(cfg(tmp_path, limit=2, new_run=True), OracleAgent())
    assert s["done"] == 8 and s["skipped"] == 0
    assert list((tmp_path / "archive").glob("*/results.jsonl"))


class Flaky(OracleAgent):
    broken = True

    def rollout(self, envs, params, *, options=None, seeds=None):
        if self.broken and any("Lilu" in o["task"].question for o in options):
            raise RuntimeError("backend fell over")
        return super().rollout(envs, params, options=options, seeds=seeds)


def test_errors_are_recorded_per_episode_and_retried_on_request(tmp_path):
    agent = Flaky()
    s = run_eval(cfg(tmp_path, benchmarks=["hotpotqa_offline"], attempts=1), agent)
    rows = read_rows(tmp_path / "results.jsonl")
    bad = [r for r in rows if r["error"]]
    assert s["errors"] == len(bad) == 1 and "backend fell over" in bad[0]["error"] and bad[0]["score"] == 0.0
    assert len(rows) == 4
    agent.broken = False
    s = run_eval(cfg(tmp_path, benchmarks=["hotpotqa_offline"], attempts=1, retry_errors=True), agent)
    assert s["done"] == 1
    from arpo_env.benchmarks.leaderboard import build_table
    t = build_table([tmp_path])
    assert t.rows[0].cells["hotpotqa_offline"].mean == 100.0   # the retry replaces the error row


class FakeCompleter:
    def __init__(self):
        self.prompts = []

    def complete(self, messages, max_new_tokens=512):
        self.prompts.append(messages[0]["content"])
        return "CORRECT" if "Predicted answer: wrong" not in messages[0]["content"] else "INCORRECT."


def test_judge_metric_and_fallback(tmp_path):
    comp = FakeCompleter()
    run_eval(cfg(tmp_path / "j", benchmarks=["simpleqa"], attempts=2), OracleAgent(accuracy=0.5), LLMJudge(comp, "fake"))
    rows = read_rows(tmp_path / "j/results.jsonl")
    assert all(r["metric"] == "judge" and r["score"] == r["scores"]["cover_em"] for r in rows)
    assert comp.prompts and "Reference answer(s)" in comp.prompts[0]
    meta = json.loads((tmp_path / "j/metadata.json").read_text())
    assert meta["judge"]["rubric"] == "arpo-judge-v1"
    run_eval(cfg(tmp_path / "n", benchmarks=["simpleqa"]), OracleAgent())
    assert {r["metric"] for r in read_rows(tmp_path / "n/results.jsonl")} == {"cover_em"}


def test_workers_run_batches_in_parallel_threads(tmp_path):
    s = run_eval(cfg(tmp_path, concurrency=1, workers=3), OracleAgent())
    assert s["done"] == 16 and set(keys(tmp_path).values()) == {1}


def test_torn_last_line_is_repaired(tmp_path):
    run_eval(cfg(tmp_path, limit=2), OracleAgent())
    f = tmp_path / "results.jsonl"
    lines = f.read_bytes().splitlines(keepends=True)
    f.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])   # a write torn by a crash
    assert len(read_rows(f)) == 7
    s = run_eval(cfg(tmp_path, limit=2), OracleAgent())
    assert s["done"] == 1 and set(keys(tmp_path).values()) == {1} and len(keys(tmp_path)) == 8


CHILD = """
import sys
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.runner import EvalConfig, run_eval
run_eval(EvalConfig(out=sys.argv[1], benchmarks=["gsm8k", "hotpotqa_offline"], limit=15, attempts=2,
                    env="arpo/Calculator-v0", concurrency=2, progress=False, backend="oracle"), OracleAgent(delay_s=0.03))
"""


def test_sigkill_mid_run_then_resume_gives_every_sample_exactly_once(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ)  # arpo_env is installed; the children need no PYTHONPATH
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], env=env, cwd=ROOT)
    results = out / "results.jsonl"
    wait_until(lambda: results.exists() and results.read_bytes().count(b"\n") >= 12, poll=0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_before = len(read_rows(results))
    assert 12 <= n_before < 60, "the run must be killed mid-way"
    with open(results, "ab") as f:          # also simulate a row torn by the kill
        f.write(b'{"benchmark": "gsm8k", "sample_id": "9", "att')
    # resume through the real command line
    r = subprocess.run([sys.executable, "-m", "arpo_env.benchmarks.cli", "eval", "--backend", "oracle", "--out", str(out),
                        "--benchmarks", "gsm8k,hotpotqa_offline", "--limit", "15", "--attempts", "2",
                        "--env", "arpo/Calculator-v0", "--concurrency", "2", "--no-progress"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[0])
    assert summary["skipped"] == n_before and summary["done"] == 60 - n_before
    k = keys(out)
    assert len(k) == 60 and set(k.values()) == {1}
    assert all(json.loads(line) for line in results.read_text().splitlines())


def test_eval_set_help_example_builds_every_default_env():
    """The ``--set`` example in ``arpo eval --help`` works when followed (it once named no real kwarg)."""
    import inspect
    import re

    import arpo_env
    from arpo_env.benchmarks.cli import _parse_kv, eval_command
    from arpo_env.benchmarks.registry import get_benchmark
    from arpo_env.benchmarks.runner import EvalConfig, env_for

    params = inspect.signature(eval_command).parameters
    example = re.search(r"e\.g\. (\S+?)\.?$", params["set_"].default.help).group(1)
    kwargs = _parse_kv([example], None)
    key = example.partition("=")[0]
    for name in params["benchmarks"].default.default.split(","):
        env_id, kw = env_for(EvalConfig(out="unused", benchmarks=[name], env_kwargs=kwargs), get_benchmark(name))
        env = arpo_env.make(env_id, **kw)
        try:
            assert kw[key] == kwargs[key] and getattr(env.unwrapped.config, key) == kwargs[key]
        finally:
            env.close()


def test_the_oracle_is_a_scripted_policy_with_the_loss_mask_contract():
    import arpo_env
    from arpo_env.agents.scripted import ScriptedAgent
    from arpo_env.benchmarks.oracle import char_ids, oracle_policy

    agent = OracleAgent(accuracy=1.0, tool_calls=2)
    assert isinstance(agent, ScriptedAgent) and isinstance(agent, arpo_env.Agent)
    envs = [arpo_env.make(CALC) for _ in range(3)]
    opts = [{"task": arpo_env.Task(f"What is {i}+1?", [str(i + 1)])} for i in range(3)]
    trajs = agent.rollout(envs, SamplingParams(), options=opts, seeds=[0, 1, 2])
    for i, (env, t) in enumerate(zip(envs, trajs)):
        t.check()
        ep = env.episode
        assert t.terminated and t.answer == str(i + 1) and t.reward == ep.reward == 1.0
        assert len(t.tool_calls) == ep.tool_calls == 2 and [c.name for c in t.tool_calls] == ["calculator"] * 2
        assert t.token_ids[:t.prompt_len] == char_ids(ep.prompt)
        model = "".join(ep.actions)
        assert sum(t.loss_mask) == len(char_ids(model))          # model tokens mask 1 ...
        for (start, end), action in zip(t.turn_spans, ep.actions):
            assert t.token_ids[start:end] == char_ids(action) and set(t.loss_mask[start:end]) == {1}
        assert t.text == ep.response                              # ... tool results mask 0
    # the per-episode draw comes from the reset seed: the same seeds give the same answers
    wrong = ScriptedAgent(oracle_policy(accuracy=0.5, tool_calls=0)).rollout(
        [arpo_env.make(CALC) for _ in range(20)], None, options=[opts[0]] * 20, seeds=list(range(20)))
    again = OracleAgent(accuracy=0.5, tool_calls=0).rollout(
        [arpo_env.make(CALC) for _ in range(20)], None, options=[opts[0]] * 20, seeds=list(range(20)))
    assert [t.answer for t in wrong] == [t.answer for t in again]
    assert {t.answer for t in wrong} == {"1", "wrong answer"} and all(not t.tool_calls for t in wrong)


GATED = """
import sys
from pathlib import Path
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.runner import EvalConfig, run_eval
from tests.helpers.waiting import wait_until
gate = Path(sys.argv[2])
def on_row(row, seen=[]):  # after two rows, wait (holding the folder) until the test opens the gate
    seen.append(row)
    if len(seen) == 2:
        wait_until(gate.exists)
run_eval(EvalConfig(out=sys.argv[1], benchmarks=["gsm8k", "hotpotqa_offline"], limit=15, attempts=2,
                    env="arpo/Calculator-v0", concurrency=2, progress=False, backend="oracle"), OracleAgent(),
         on_row=on_row)
"""


def test_a_second_eval_on_the_same_folder_exits_2_and_every_row_is_written_once(tmp_path):
    """Two ``arpo eval`` on one folder once both ran every episode (duplicate rows) or crashed on a shared
    temporary file; now the second stops at once, naming the first one's pid."""
    out, gate = tmp_path / "run", tmp_path / "gate"
    first = subprocess.Popen([sys.executable, "-c", GATED, str(out), str(gate)], cwd=ROOT)
    results = out / "results.jsonl"
    try:
        assert wait_until(lambda: results.exists() and results.read_bytes().count(b"\n") >= 2 or first.poll() is not None)
        assert first.poll() is None, "the first run must still be writing"
        second = subprocess.run([sys.executable, "-m", "arpo_env.benchmarks.cli", "eval", "--backend", "oracle",
                                 "--out", str(out), "--benchmarks", "gsm8k,hotpotqa_offline", "--limit", "15",
                                 "--attempts", "2", "--env", "arpo/Calculator-v0", "--concurrency", "2",
                                 "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        gate.touch()
        first.wait(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"another arpo eval is writing {out} (pid {first.pid}); wait for it or use another --out"]
    k = keys(out)
    assert len(k) == 60 and set(k.values()) == {1}
    assert not list(out.glob("*.tmp"))


def test_run_eval_refuses_a_folder_locked_in_this_process_and_releases_it_after(tmp_path):
    from arpo_env.folder_lock import FolderBusy, FolderLock

    with FolderLock(tmp_path, "arpo eval", hint="--out"):
        with pytest.raises(FolderBusy, match="another arpo eval is writing"):
            run_eval(cfg(tmp_path, limit=1), OracleAgent())
    assert not (tmp_path / "results.jsonl").exists()
    run_eval(cfg(tmp_path, limit=1), OracleAgent())
    FolderLock(tmp_path, "check").release()  # released after the run
