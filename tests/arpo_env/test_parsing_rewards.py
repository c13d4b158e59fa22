"""Parsing of agent turns and ARPO's reward functions, against hand-checked cases."""
import pytest

from arpo_env import (arpo_reward, check_format, exact_match, extract_boxed, f1_score, normalize_answer,
                      parse_action)

TOOLS = ("python", "search")


@pytest.mark.parametrize("text,kind,name,args", [
    ("<think>x</think><python>print(1)</python>", "tool", "python", "print(1)"),
    ("<search>a</search> then <python>b</python>", "tool", "python", "b"),
    ("<python>a</python><answer>\\boxed{3}</answer>", "answer", None, "\\boxed{3}"),
    ("<answer>\\boxed{3}</answer><python>a</python>", "tool", "python", "a"),
    ('<tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call>', "tool", "search", "q"),
    ('<tool_call>{"name": "search", "arguments": "q2"}</tool_call>', "tool", "search", "q2"),
    ("<python>1+1", "invalid", "python", None),
    ("1+1</python>", "invalid", "python", None),
    ("<bash>ls</bash>", "none", None, None),
    ("just text", "none", None, None),
    ('<tool_call>{"name": "rm"}</tool_call>', "invalid", "rm", None),
    ("<tool_call>{not json</tool_call>", "invalid", None, None),
])
def test_parse_action(text, kind, name, args):
    act = parse_action(text, TOOLS)
    assert (act.kind, act.name, act.args) == (kind, name, args)
    if kind in ("invalid", "none"):
        assert act.error


def test_extract_boxed_nested_and_last():
    assert extract_boxed(r"\boxed{1} and \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{2} \boxed{3") == "2"  # the unbalanced last one is skipped
    assert extract_boxed("none") is None


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Paris", ["London", "paris"]) == 1.0
    assert f1_score("Barack Obama", "Obama") == pytest.approx(2 / 3)
    assert f1_score("yes", "no") == 0.0 and f1_score("yes it is", "yes") == 0.0
    assert f1_score("no", ["yes", "No"]) == 1.0
    assert f1_score("anything", []) == 0.0


def good_response(answer="3"):
    return ("<think>a</think><search>q</search><result>\nr\n</result><python>x</python>"
            f"<result>\n1\n</result><answer>so \\boxed{{{answer}}}</answer>")


def test_format_check_cases():
    assert check_format(good_response()) == (True, "ok")
    assert not check_format(good_response().replace("</think>", ""))[0]
    assert not check_format(good_response() + "<answer>\\boxed{1}</answer>")[0]
    assert not check_format(good_response().replace("<result>\n1\n</result>", ""))[0]
    assert not check_format(good_response().replace("\\boxed{3}", "3"))[0]


def test_arpo_reward_bonus_and_penalty():
    assert arpo_reward(good_response("3"), ["3"]) == pytest.approx(1.1)
    assert arpo_reward(good_response("4"), ["3"]) == 0.0
    only_python = "<think>t</think><python>x</python><result>\n1\n</result><answer>\\boxed{3}</answer>"
    assert arpo_reward(only_python, "3") == 1.0
    assert arpo_reward(only_python.replace("<think>t</think>", ""), "3") == -1.0  # ARPO: no think is bad format
    assert arpo_reward("<answer>3</answer>", "3") == -1.0
