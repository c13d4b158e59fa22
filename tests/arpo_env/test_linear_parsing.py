"""Answer parsing does work linear in its input: the brace scanner's step count is bounded structurally,
and it agrees with the straightforward (quadratic) definition on random inputs."""
from __future__ import annotations

import random

import arpo_env
from arpo_env.parsing import extract_boxed, scan_boxes
from arpo_env.rewards import arpo_score


def quadratic_reference(text: str) -> str | None:
    """The definition: try each ``\\boxed{`` from the last; the first whose braces balance wins."""
    start = text.rfind("\\boxed{")
    while start >= 0:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1: j]
        start = text.rfind("\\boxed{", 0, start)
    return None


def test_scanner_equals_the_definition_on_random_inputs():
    rng = random.Random(0)
    pieces = ["\\boxed{", "{", "}", "a", " ", "\\boxed", "b}", "\\frac{1}{2}"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert extract_boxed(text) == quadratic_reference(text), text


def adversarial(n_chars: int = 100_000) -> str:
    unit = "\\boxed{" * 5 + "{{}" + "<answer>"
    return ("<answer>" + unit * (n_chars // len(unit) + 1))[:n_chars]


def test_adversarial_answer_takes_one_step_per_brace():
    text = adversarial()
    scan = scan_boxes(text)
    assert len(text) == 100_000
    assert scan.steps == text.count("{") + text.count("}") <= len(text)
    doubled = text * 2
    assert scan_boxes(doubled).steps == 2 * scan.steps  # twice the input, twice the work


def test_adversarial_answer_through_a_step_and_the_reward():
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(seed=0, options={"task": arpo_env.Task(question="q", answer="1")})
    text = adversarial(env.unwrapped.config.max_action_chars - len("</answer>")) + "</answer>"
    _, reward, terminated, truncated, info = env.step(text)
    assert terminated and info["action"]["kind"] == "answer"
    assert reward == -1.0  # many <answer> tags: ARPO's format check fails
    env.reset(seed=0, options={"task": arpo_env.Task(question="q", answer="1")})
    unbalanced = "<think>t</think><answer>" + "\\boxed{" * 14_000 + "</answer>"  # 98k characters, one answer
    _, reward, terminated, _, info = env.step(unbalanced)
    assert terminated and info["answer"] == ("\\boxed{" * 14_000).strip() and reward == -1.0
    assert arpo_score("<think>t</think><answer>" + "\\boxed{" * 30_000 + "</answer>", "1").score == -1.0
