"""Property-based: arbitrary turns never raise out of step; malformed ones cost budget."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arpo_env

TAGS = ["<calculator>", "</calculator>", "<answer>", "</answer>", "<tool_call>", "</tool_call>", "\\boxed{",
        "}", "<think>", "</think>", "<result>", "<", ">", "/", "{", '"name"', "\udcff", "\x00", "9**9**9"]
turn = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=20)), max_size=30).map("".join),
    st.binary(max_size=200),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(turn, min_size=1, max_size=6))
def test_arbitrary_turns_never_raise(turns):
    env = arpo_env.make("arpo/Calculator-v0", max_tool_calls=3)
    env.reset(seed=0)
    for t in turns:
        calls_before = env.episode.tool_calls
        obs, reward, terminated, truncated, info = env.step(t)
        assert isinstance(obs, str) and env.observation_space.contains(obs)
        assert isinstance(reward, float)
        if info["action"]["kind"] in ("invalid", "none") and not truncated:
            assert obs.startswith("<result>\nError:") and env.episode.tool_calls == calls_before + 1
        if terminated or truncated:
            break


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=200_000, max_value=400_000), st.sampled_from(["(", "<calculator>", "a"]))
def test_huge_inputs_are_rejected_quickly(n, piece):
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(seed=0)
    obs, *_, info = env.step(piece * (n // len(piece)))
    assert "Error" in obs and info["invalid_calls"] == 1


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="(<[{" + "calculator/>", min_size=1, max_size=500))
def test_nested_unbalanced_tags(text):
    env = arpo_env.make("arpo/Calculator-v0")
    env.reset(seed=0)
    obs, *_ = env.step(f"<calculator>{text}</calculator>{text}")
    assert obs.startswith("<result>\n")
