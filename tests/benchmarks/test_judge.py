"""The judge's verdict parser on canned replies, its token budget and the unparsed count in a run."""
from __future__ import annotations

import pytest

from arpo_env.benchmarks.judge import DEFAULT_JUDGE_TOKENS, LLMJudge, parse_verdict

CORRECT = [
    "CORRECT", "correct", "Correct.", "**CORRECT**", "  CORRECT\n", "The prediction matches the reference. CORRECT",
    "<think>The reference is Paris and the prediction says Paris.</think>\nCORRECT",
    "<think>Is it incorrect? No: same city, not wrong at all.</think> CORRECT",
    "Verdict: CORRECT", "Final verdict: correct", "Reasoning: both give 42.\nVerdict: **CORRECT**",
    "The answer is correct.", "<thinking>ok</thinking>Correct", "Judgement: CORRECT.",
    "Let me compare. The prediction, 1/2, equals 0.5.\n\nFinal answer: CORRECT",
    "`CORRECT`", "The prediction is right.", "Grade: correct",
]
INCORRECT = [
    "INCORRECT", "incorrect.", "Not correct", "Not correct.", "NOT CORRECT", "The prediction is wrong.",
    "This is not quite correct.", "It isn't correct.", "<think>It says Lyon but the reference is Paris.</think>INCORRECT",
    "<think>Looks correct at first; it is not.</think>\nVerdict: INCORRECT",
    "Verdict: not correct", "Final answer: INCORRECT", "**INCORRECT**", "Wrong", "The answer is not right.",
    "Reasoning: the prediction hedges between two years.\nVerdict: INCORRECT",
    "The prediction looks correct, but the date differs.\nVerdict: INCORRECT",
]
UNPARSED = [
    "", "   ", "CORRECT or INCORRECT", "I cannot decide.", "<think>The reference is Paris and the prediction",
    "<think>long reasoning cut by the budget", "Maybe.", "CORRECT? INCORRECT?", "The prediction is 42.",
    "correct / incorrect",
]


@pytest.mark.parametrize("reply", CORRECT)
def test_correct_replies(reply):
    assert parse_verdict(reply) == "correct"


@pytest.mark.parametrize("reply", INCORRECT)
def test_negations_and_incorrect_replies(reply):
    assert parse_verdict(reply) == "incorrect"


@pytest.mark.parametrize("reply", UNPARSED)
def test_replies_without_one_verdict_are_unparsed(reply):
    assert parse_verdict(reply) == "unparsed"


def test_enough_canned_replies():
    assert len(CORRECT) + len(INCORRECT) + len(UNPARSED) >= 30


class Canned:
    def __init__(self, reply: str):
        self.reply, self.budgets = reply, []

    def complete(self, messages, max_new_tokens=512):
        self.budgets.append(max_new_tokens)
        return self.reply


def test_judge_scores_and_labels():
    assert LLMJudge(Canned("Not correct"))("q", "a", "b").score == 0.0
    v = LLMJudge(Canned("<think>hmm"))("q", "a", "b")
    assert (v.score, v.label, v.parsed) == (0.0, "unparsed", False)
    v = LLMJudge(Canned("<think>same</think>CORRECT"))("q", "a", ["a", "b"])
    assert (v.score, v.label, v.parsed) == (1.0, "correct", True)
    assert LLMJudge(Canned("CORRECT"))("q", "  ", "b").label == "incorrect"  # empty prediction, judge not asked


def test_budget_fits_reasoning_judges_and_is_configurable():
    c = Canned("CORRECT")
    LLMJudge(c)("q", "a", "a")
    LLMJudge(c, max_new_tokens=64)("q", "a", "a")
    assert c.budgets == [DEFAULT_JUDGE_TOKENS, 64] and DEFAULT_JUDGE_TOKENS >= 512
    assert LLMJudge(c, max_new_tokens=64).describe()["max_new_tokens"] == "64"
    with pytest.raises(ValueError, match="max_new_tokens"):
        LLMJudge(c, max_new_tokens=0)


def test_unparsed_replies_are_counted_in_the_run(tmp_path):
    from arpo_env.benchmarks.oracle import OracleAgent
    from arpo_env.benchmarks.results import read_rows
    from arpo_env.benchmarks.runner import EvalConfig, run_eval

    cfg = EvalConfig(out=str(tmp_path), benchmarks=["simpleqa"], limit=3, backend="oracle", progress=False)
    summary = run_eval(cfg, OracleAgent(), LLMJudge(Canned("CORRECT or INCORRECT"), "echo"))
    rows = read_rows(tmp_path / "results.jsonl")
    assert summary["judge_unparsed"] == 3 == sum(r["judge_verdict"] == "unparsed" for r in rows)
    assert all(r["score"] == 0.0 for r in rows)
