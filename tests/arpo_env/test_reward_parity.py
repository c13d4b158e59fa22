"""arpo_env.rewards against ARPO's compute_score (tests/arpo_env/arpo_reference.py) on 600 generated responses:
well-formed, missing or unbalanced think, two answers, missing or unbalanced boxes, tool tags with and without
results, both tools, JSON calls, tags quoted in text."""
from __future__ import annotations

import random

import pytest

from arpo_env.rewards import arpo_score
from tests.arpo_env import arpo_reference

GOLDS = (["Paris"], ["yes"], ["Barack Obama", "Obama"], "42", ["New York City"])
ANSWERS = ("Paris", "paris, France", "yes", "no", "Obama", "Michelle Obama", "42", "41", "New York", "", "the city")
THINKS = ("<think>I should look this up.</think>", "", "<think>unclosed ", "</think>", "<think>a</think><think>b",
          "<think>x</think>\n<think>y</think>")
CALLS = (  # (text, real calls it makes as the env would count them)
    ("", {}),
    ("<search>capital of France</search><result>\nParis is the capital.\n</result>", {"search": 1}),
    ("<python>print(6*7)</python><result>\n42\n</result>", {"python": 1}),
    ("<search>q</search><result>\nr\n</result><python>1+1</python><result>\n2\n</result>", {"search": 1, "python": 1}),
    ("<search>q</search>", {"search": 1}),  # no result (cut off)
    ("<search>q <result>early</result></search><result>\nr\n</result>", {"search": 1}),  # result inside the call
    ("<result>\nr\n</result><python>x</python>", {"python": 1}),  # result before the call
    ('<tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call><result>\nr\n</result>', {"search": 1}),
    ("I will not use </search> or </python> tags.", {}),  # closing tags quoted in text
    ("<python>a</python><result>\n1\n</result><python>b</python><result>\n2\n</result>", {"python": 2}),
)
BOXES = ("\\boxed{{{a}}}", "{a}", "\\boxed{{{a}}} and \\boxed{{{a}", "\\boxed {a}", "$\\boxed{{{a}}}$",
         "\\boxed{{\\text{{{a}}}}}", "\\boxed{{x}} then \\boxed{{{a}}}", "\\fbox{{{a}}}", "\\boxed{{{a} \\boxed{{",
         "\\boxed{{{a}}}}}", "\\boxed{{1}}\\boxed {a} $ tail", "}}{{\\boxed{{{a}}}")
ANSWER_BLOCKS = ("<answer>The answer is {box}.</answer>", "<answer>{box}</answer><answer>{box}</answer>",
                 "<answer>{box}", "{box}</answer>", "</answer>{box}<answer>", "", "<answer>\n{box}\n</answer>")


def generate(n: int, seed: int = 0) -> list[tuple[str, object, dict[str, int]]]:
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        # the first option of each part is the well-formed one: about half the responses are well formed
        think = THINKS[0] if rng.random() < 0.7 else rng.choice(THINKS)
        calls, counted = CALLS[rng.choice((1, 2, 3, 3, 8, 7))] if rng.random() < 0.6 else rng.choice(CALLS)
        gold = rng.choice(GOLDS)
        answer = (gold if isinstance(gold, str) else rng.choice(gold)) if rng.random() < 0.4 else rng.choice(ANSWERS)
        box = (BOXES[0] if rng.random() < 0.6 else rng.choice(BOXES)).format(a=answer)
        block = (ANSWER_BLOCKS[0] if rng.random() < 0.75 else rng.choice(ANSWER_BLOCKS)).format(box=box)
        parts = [think, calls, rng.choice(("", "<think>then</think>")), block]
        text = "".join(parts) if rng.random() < 0.8 else "\n".join(parts)
        if text not in seen:
            seen.add(text)
            out.append((text, gold, counted))
    return out


CASES = generate(600)


def test_the_generated_set_covers_every_outcome():
    scores = [arpo_reference.compute_score(t, g) for t, g, _ in CASES]
    assert len(CASES) >= 500
    assert {-1.0, 0.0} <= set(scores)
    assert any(0 < s <= 1 for s in scores) and any(s > 1 for s in scores)
    assert sum(s == -1.0 for s in scores) < 0.9 * len(scores)


def test_default_reward_equals_arpo_compute_score_on_every_response():
    diffs = [(t, g) for t, g, _ in CASES if arpo_score(t, g).score != pytest.approx(arpo_reference.compute_score(t, g))]
    assert diffs == []


def test_the_arpo_calls_variant_differs_only_in_the_bonus():
    """Every difference of ``arpo-calls`` is the 0.1 bonus, where the text's closing tags and the real calls
    disagree (closing tags quoted in text, or a JSON-style call)."""
    diffs = []
    for text, gold, counted in CASES:
        base, variant = arpo_score(text, gold).score, arpo_score(text, gold, called=counted).score
        if base != variant:
            assert abs(abs(base - variant) - 0.1) < 1e-9
            tags = "</search>" in text and "</python>" in text
            calls = counted.get("search", 0) > 0 and counted.get("python", 0) > 0
            assert tags != calls
            diffs.append(text)
    assert diffs  # the set does exercise the difference


@pytest.mark.parametrize("text,expected", [
    ("<python>x</python><result>1</result><answer>\\boxed{3}</answer>", -1.0),  # no think: ARPO says -1
    ("<think>t</think><answer>\\boxed{2} \\boxed{3</answer>", -1.0),  # unbalanced last box: no earlier box tried
    ("<think>t</think><answer>\\boxed 3</answer>", -1.0),  # the format check needs "\\boxed{"
    ("<think>t</think><answer>\\boxed{1} \\boxed 3</answer>", 1.0),  # "\\boxed " wins over braces
    ("<think>t</think><search>q <result>r</result></search><result>r</result><answer>\\boxed{3}</answer>", -1.0),
    ("<think>t</think>says </search></python><answer>\\boxed{3}</answer>", 1.1),  # ARPO's text test for the bonus
])
def test_arpo_quirks_kept(text, expected):
    assert arpo_score(text, "3").score == pytest.approx(expected)
    assert arpo_reference.compute_score(text, "3") == pytest.approx(expected)
