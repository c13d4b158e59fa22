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


@pytest.mark.parametrize("env_id,teacher", [("arpo/Search-v0", "qa"), ("arpo/MultiTool-v0", "qa"),
                                            ("arpo/Search-v0", "fact"), ("arpo/Python-v0", "word")])
def test_answer_from_tool_teachers_score_and_box_what_the_tool_showed(env_id, teacher):
    kept, dropped = play(env_id, 5, seed=2, teacher=teacher)
    assert dropped == 0 and len(kept) == 5
    for ex in kept:
        obs = "".join(t for t, m in ex.segments if not m)
        boxed = ex.segments[-1][0].split("\\boxed{")[1].split("}")[0]
        if teacher in ("word", "fact") or "says:" in ex.segments[-1][0]:
            assert boxed.lower() in obs.lower()  # the answer is copied from the tool's real output


def test_unknown_teacher_is_a_clear_error():
    with pytest.raises(ValueError, match="ENV:TEACHER"):
        play("arpo/Search-v0", 1, teacher="nope")


def test_shipped_training_questions_are_not_benchmark_questions():
    from arpo_env.trainers.teachers import load_qa_tasks
    from arpo_env.trainers.traces import normalize
    tasks = load_qa_tasks()
    assert len(tasks) > 50 and {t.metadata["kind"] for t in tasks} == {"span", "yesno"}
    assert not {normalize(t.question) for t in tasks} & benchmark_questions()


def test_evidence_is_the_sentence_of_the_page_holding_the_answer():
    from arpo_env.trainers.teachers import _evidence
    obs = ("<result>\nPage 1: Foo: Foo is a town. It has a mill.\n"
           "Page 2: Bar (band): Bar is a band. It was formed in Leeds in 1990. It split.\n</result>")
    assert _evidence(obs, "leeds") == (2, "It was formed in Leeds in 1990", "Leeds")
    assert _evidence(obs, "Lee") is None  # whole words only


def test_word_problems_are_deterministic_and_their_code_computes_the_answer():
    from arpo_env.trainers.teachers import word_tasks
    a, b = word_tasks(16, 3), word_tasks(16, 3)
    assert [t.question for t in a] == [t.question for t in b] and len({t.question for t in a}) > 10
    for t in a:
        scope: dict = {}
        exec("\n".join(t.metadata["code"]), scope)  # noqa: S102 - the generator's own arithmetic
        assert str(scope["answer"]) == t.answer[0]


def test_search_backend_option_reaches_only_the_search_envs(tmp_path):
    with pytest.raises(ValueError, match="no-such-backend"):
        write_traces(tmp_path / "s.jsonl", {"arpo/Search-v0": 1}, seed=1, search_backend="no-such-backend")
    report = write_traces(tmp_path / "c.jsonl", {"arpo/Calculator-v0": 1}, seed=1, search_backend="no-such-backend")
    assert report["arpo/Calculator-v0"]["kept"] == 1
    report = write_traces(tmp_path / "b.jsonl", {"arpo/Search-v0": 2}, seed=1, search_backend="bm25")
    assert report["arpo/Search-v0"] == {"kept": 2, "dropped": 0}
