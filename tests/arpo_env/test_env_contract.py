"""TextEnv semantics through the calculator env: Gymnasium checks, budgets, errors, rewards."""
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import arpo_env
from arpo_env import EnvConfig


def test_make_and_gymnasium_make_pass_check_env():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning from the checker fails the test
        env = arpo_env.make("arpo/Calculator-v0")
        check_env(env)
        wrapped = gym.make("arpo/Calculator-v0", max_tool_calls=5)
        assert wrapped.unwrapped.config.max_tool_calls == 5
        check_env(wrapped.unwrapped)
        wrapped.reset(seed=0)
        wrapped.step("<calculator>1+1</calculator>")  # through the passive checker wrapper


def test_reset_with_task_options_and_seeded_draws():
    env = arpo_env.make("arpo/Calculator-v0")
    prompt, info = env.reset(options={"question": "What is 2+2?", "answer": "4"})
    assert prompt == "What is 2+2?" and info["task"]["answer"] == ["4"]
    assert info["messages"][0]["role"] == "system" and "<calculator>" in info["system_prompt"]
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    assert a == b and a != c
    with pytest.raises(ValueError, match="question"):
        env.reset(options={"answer": "1"})


def test_tool_call_answer_and_reward():
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(options={"question": "17*23?", "answer": "391"})
    obs, r, term, trunc, info = env.step("<think>t</think><calculator>17*23</calculator>")
    assert obs == "<result>\n391\n</result>" and (r, term, trunc) == (0.0, False, False)
    assert info["tool_calls"] == 1 and info["tool_counts"] == {"calculator": 1}
    obs, r, term, trunc, info = env.step("<think>d</think><answer>\\boxed{391}</answer>")
    assert (obs, r, term, trunc) == ("", 1.0, True, False) and info["answer"] == "391"
    obs, r, term, trunc, info = env.step("<calculator>1</calculator>")  # after the end: no crash
    assert term and info["error"] == "episode ended"


def test_tool_errors_are_observations():
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(seed=0)
    obs, *_ , info = env.step("<calculator>9**9**9</calculator>")
    assert "Error" in obs and "bits" in obs and info["tool_error"]
    obs, *_ = env.step("<calculator>1/0</calculator>")
    assert "division by zero" in obs


def test_budget_counts_malformed_turns_and_truncates():
    env = arpo_env.make("arpo/Calculator-v0", max_tool_calls=2)
    env.reset(seed=0)
    obs, _, _, trunc, info = env.step("no tags at all")
    assert "Error" in obs and not trunc and info["invalid_calls"] == 1 and info["tool_calls_left"] == 1
    env.step("<calculator>1+1</calculator>")
    obs, r, term, trunc, info = env.step("<calculator>2+2</calculator>")
    assert trunc and not term and "budget" in obs and r == -1.0  # no answer: ARPO's format penalty


def test_max_turns_truncates():
    env = arpo_env.make("arpo/Calculator-v0", max_tool_calls=10, max_turns=2)
    env.reset(seed=0)
    assert not env.step("<calculator>1</calculator>")[3]
    assert env.step("<calculator>1</calculator>")[3]


def test_overlong_action_rejected():
    env = arpo_env.make("arpo/Calculator-v0", max_action_chars=50)
    env.reset(seed=0)
    obs, *_, info = env.step("<calculator>" + "1+" * 100 + "1</calculator>")
    assert "limit is 50" in obs and info["invalid_calls"] == 1


def test_result_truncation_marker():
    env = arpo_env.make("arpo/Calculator-v0", max_result_chars=10)
    env.reset(seed=0)
    obs, *_ = env.step("<calculator>2**300</calculator>")
    assert "[output truncated:" in obs


def test_bad_config_is_a_clear_error():
    with pytest.raises(TypeError, match="unknown options"):
        arpo_env.make("arpo/Calculator-v0", max_tool_cals=3)
    with pytest.raises(ValueError, match="max_turns"):
        EnvConfig(max_turns=0)
    with pytest.raises(ValueError, match="only 'replay'"):
        arpo_env.make("arpo/Calculator-v0", fork_kind="process")


def test_render_ansi():
    env = arpo_env.make("arpo/Calculator-v0", render_mode="ansi")
    env.reset(options={"question": "q", "answer": "1"})
    env.step("<calculator>1</calculator>")
    assert env.render().startswith("q\n<calculator>1</calculator><result>")


def test_agent_side_end_truncates_with_the_final_reward():
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(options={"question": "1+1?", "answer": "2"})
    env.step("<calculator>1+1</calculator>")
    assert env.end() == -1.0  # no answer: ARPO's format penalty
    assert env.episode.truncated and env.episode.reward == -1.0
    assert env.end() == -1.0 and env.episode.tool_calls == 1  # idempotent
    obs, *_, info = env.step("<answer>\\boxed{2}</answer>")
    assert info["error"] == "episode ended"


def _calc(**kw):
    env = arpo_env.make("arpo/Calculator-v0", **kw)
    env.reset(options={"question": "17*23?", "answer": "391"})
    return env


def test_last_turn_of_a_tool_call_and_an_answer():
    env = _calc()
    assert env.last_turn is None
    obs, *_ = env.step("<calculator>17*23</calculator>")
    turn = env.last_turn
    assert isinstance(turn, arpo_env.Turn) and turn.is_tool_call and not turn.tool_error
    assert turn.action == arpo_env.Action("tool", name="calculator", args="17*23")
    assert turn.observation == obs and "391" in turn.result.text and not turn.result.error
    obs, _, term, _, info = env.step("<answer>\\boxed{391}</answer>")
    turn = env.last_turn
    assert term and turn.action.kind == "answer" and not turn.is_tool_call and turn.result is None
    assert turn.observation == obs == "" and not turn.tool_error
    assert info["action"] == turn.action.to_dict()  # the Gymnasium info is derived from the same turn
    env.reset(options={"question": "1?", "answer": "1"})
    assert env.last_turn is None  # a new episode starts without a turn


@pytest.mark.parametrize("text, kind", [
    ("<calculator>1+1", "invalid"),                     # unclosed tag
    ("<search>x</search>", "none"),                      # a tag of a tool this env does not have
    ('<tool_call>{"name": 1}</tool_call>', "invalid"),   # bad JSON call
    ("just thinking aloud", "none"),                     # no tag at all
])
def test_malformed_turns_use_budget_and_only_calls_of_its_tools_are_tool_calls(text, kind):
    env = _calc(max_tool_calls=2)
    for i in range(2):
        obs, _, term, trunc, info = env.step(text)
        turn = env.last_turn
        assert turn.action.kind == kind and turn.counted and turn.result is None
        assert turn.is_tool_call == turn.tool_error == (kind == "invalid")  # no tag of its tools: no call
        assert turn.observation == obs and "Error" in obs and not (term or trunc)
        assert env.episode.tool_calls == info["tool_calls"] == i + 1  # counted by the budget
    # past the budget the same turn is not counted: it ends the episode
    obs, _, term, trunc, info = env.step(text)
    assert trunc and not env.last_turn.is_tool_call and env.episode.tool_calls == 2
    assert env.last_turn.observation == obs and "budget" in obs


def test_over_long_action_is_a_counted_malformed_turn():
    env = _calc(max_action_chars=10)
    env.step("<calculator>1+1+1+1+1</calculator>")
    assert env.last_turn.action.kind == "invalid" and env.last_turn.is_tool_call
    assert env.episode.tool_calls == 1 and env.episode.invalid_calls == 1


def test_last_turn_past_the_budget_and_after_the_end():
    env = _calc(max_tool_calls=1)
    env.step("<calculator>1+1</calculator>")
    assert env.last_turn.is_tool_call and env.episode.tool_calls == 1
    obs, _, _, trunc, _ = env.step("<calculator>2+2</calculator>")
    turn = env.last_turn
    assert trunc and turn.action.kind == "tool" and not turn.is_tool_call and turn.result is None
    assert not turn.tool_error and "budget" in turn.observation
    obs, *_ = env.step("<calculator>3+3</calculator>")  # the episode has ended
    assert not env.last_turn.is_tool_call and "ended" in env.last_turn.observation
    assert env.episode.tool_calls == 1


def test_a_tool_error_is_a_tool_call_with_an_error():
    env = _calc()
    env.step("<calculator>1/0</calculator>")
    turn = env.last_turn
    assert turn.is_tool_call and turn.result is not None and turn.result.error and turn.tool_error


def test_last_turn_follows_forks():
    env = _calc()
    env.step("<calculator>17*23</calculator>")
    child = env.fork()
    assert child.last_turn == env.last_turn
    child.step("<answer>\\boxed{391}</answer>")
    assert child.last_turn.action.kind == "answer" and env.last_turn.action.kind == "tool"


def test_stop_strings_come_from_the_env():
    env = arpo_env.make("arpo/Calculator-v0")
    assert env.stop_strings == ("</calculator>", "</tool_call>", "</answer>")
    assert arpo_env.make("arpo/Calculator-v0", json_tool_calls=False).stop_strings == ("</calculator>", "</answer>")
