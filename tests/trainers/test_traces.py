"""arpo traces: teacher trajectories pass the env's own reward, are deterministic, and are decontaminated."""
from __future__ import annotations

import json

import pytest

from arpo_env.trainers.sft_data import load_examples
from arpo_env.trainers.traces import (
    DecontaminationError,
    benchmark_questions,
    check_decontaminated,
    play,
    write_traces,
)


@pytest.mark.parametrize("env_id", ["arpo/Calculator-v0", "arpo/Python-v0", "arpo/Search-v0", "arpo/MultiTool-v0"])
def test_every_teacher_trajectory_scores_above_zero(env_id):
    kept, dropped = play(env_id, 4, seed=3)
    assert dropped == 0 and len(kept) == 4  # play keeps only trajectories whose env reward is > 0
    for ex in kept:
        assert ex.segments[-1][1] and "\\boxed{" in ex.segments[-1][0]
        assert any(not m and t.startswith("<result>") for t, m in ex.segments)  # real tool results


def test_python_teacher_reuses_session_variables():
    kept, _ = play("arpo/Python-v0", 2, seed=0)
    calls = [t for t, m in kept[0].segments if m and "<python>" in t]
    assert len(calls) == 2 and "=" not in calls[1].split("<python>")[1].split("\n")[1].split("(")[0]


def test_deterministic_by_seed(tmp_path):
    counts = {"arpo/Calculator-v0": 3, "arpo/Search-v0": 2}
    write_traces(tmp_path / "a.jsonl", counts, seed=5)
    write_traces(tmp_path / "b.jsonl", counts, seed=5)
    write_traces(tmp_path / "c.jsonl", counts, seed=6)
    a, b, c = ((tmp_path / f"{x}.jsonl").read_text() for x in "abc")
    assert a == b and a != c
    assert len(load_examples([tmp_path / "a.jsonl"])) == 5  # arpo sft reads what arpo traces writes
    assert json.loads(a.splitlines()[0])["conversations"][0]["from"] == "human"


def test_decontamination_check_rejects_a_benchmark_question():
    questions = benchmark_questions()
    kept, _ = play("arpo/Search-v0", 6, seed=0)
    check_decontaminated(kept, questions)  # generated questions are clean
    from arpo_env.benchmarks.registry import get_benchmark
    leaked = get_benchmark("hotpotqa_offline").load(limit=1)[0].question
    kept[0].user = leaked
    with pytest.raises(DecontaminationError):
        check_decontaminated(kept, questions)
