"""Forking: every registered env passes check_fork; default forks per kind; check_fork catches sharing."""
import pytest

import arpo_env
from arpo_env import ForkCheckError, ForkKind, TextEnv, ToolResult


@pytest.mark.parametrize("env_id", [r.id for r in arpo_env.list_envs()])
def test_every_registered_env_passes_check_fork(env_id):
    env = arpo_env.make(env_id)
    try:
        report = arpo_env.check_fork(env)
        assert report.fork_kind == env.fork_kind.value and report.probe
    finally:
        env.close()


class Counter:
    name, description, example = "count", "adds its argument to a counter", "1"

    def __init__(self):
        self.total = 0

    def __call__(self, args):
        self.total += int(args)
        return ToolResult(str(self.total))


class CounterEnv(TextEnv):
    fork_kind = ForkKind.STATE

    def __init__(self, **kw):
        super().__init__([Counter()], **kw)

    def _on_reset(self, task):
        self.tools["count"].total = 0

    def example_actions(self):
        return ["<count>1</count>", "<count>2</count>", "<count>3</count>", "<count>4</count>"]


class LeakyEnv(CounterEnv):
    """Forgets to reset its tool between episodes: check_fork sees the reference env disagree."""

    def _on_reset(self, task):
        pass


class LyingEnv(CounterEnv):
    """Claims to be stateless although its tool keeps state: forks share the counter."""
    fork_kind = ForkKind.STATELESS


@pytest.mark.parametrize("kind", [None, "replay"])
def test_state_and_replay_forks_are_independent(kind):
    env = CounterEnv(fork_kind=kind)
    arpo_env.check_fork(env)
    env.reset(seed=0)
    env.step("<count>5</count>")
    child = env.fork()
    assert child.episode.snapshot() == env.episode.snapshot()
    assert child.step("<count>1</count>")[0] == "<result>\n6\n</result>"
    assert env.step("<count>10</count>")[0] == "<result>\n15\n</result>"
    assert child.episode.tool_calls == 2 and env.episode.tool_calls == 2


def test_check_fork_detects_shared_state():
    with pytest.raises(ForkCheckError, match="shared state"):
        arpo_env.check_fork(LyingEnv())


def test_check_fork_detects_state_leaking_across_episodes():
    with pytest.raises(ForkCheckError, match="diverged"):
        arpo_env.check_fork(LeakyEnv())


def test_fork_keeps_rng_and_budget():
    env = arpo_env.make("arpo/Calculator-v0", max_tool_calls=2)
    env.reset(seed=3)
    env.step("<calculator>1</calculator>")
    child = env.fork()
    assert child.episode.tool_calls == 1 and child.config.max_tool_calls == 2
    child.step("<calculator>1</calculator>")
    assert child.step("<calculator>1</calculator>")[3]  # child's budget is spent
    assert not env.step("<calculator>1</calculator>")[3]  # the parent still had one call left
    assert env.np_random.integers(1 << 30) == child.np_random.integers(1 << 30)


def test_fork_before_reset_is_a_clear_error():
    import gymnasium as gym
    with pytest.raises(gym.error.ResetNeeded):
        arpo_env.make("arpo/Calculator-v0").fork()


def test_stateless_child_close_keeps_parent_tools():
    closed = []

    class Closable(Counter):
        def close(self):
            closed.append(self)

    class E(TextEnv):
        fork_kind = ForkKind.STATELESS

        def __init__(self):
            super().__init__([Closable()])

    env = E()
    env.reset(seed=0)
    env.fork().close()
    assert closed == []
    env.close()
    assert len(closed) == 1
