"""The typed agent-env-trainer seam: ``agents.Agent`` and ``RolloutState`` satisfy ``arpo_env.RoundAgent`` and
``arpo_env.EpisodeState`` at run time and for the type checker (a class lacking a member fails both)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import arpo_env
from arpo_env import EpisodeState, RoundAgent, SamplingParams
from arpo_env.agents import Agent, RolloutState
from arpo_env.agents.scripted import ScriptedAgent


class WordTokenizer:
    """ids = code points; no chat template."""

    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(map(chr, ids))


class FixedBackend:
    def __init__(self, text):
        self.text = text

    def generate(self, contexts, params):
        ids = [ord(c) for c in self.text]
        return [arpo_env.Generation(ids, [-1.0] * len(ids), [0.5] * len(ids), "stop", "</calculator>",
                                    text=self.text) for _ in contexts]


def test_agent_and_state_satisfy_the_protocols_at_run_time():
    agent = Agent(FixedBackend("<calculator>1+1</calculator>"), WordTokenizer())
    state = agent.start(arpo_env.make("arpo/Calculator-v0"), options={"task": arpo_env.Task("1+1?", ["2"])})
    assert isinstance(agent, RoundAgent) and isinstance(state, RolloutState) and isinstance(state, EpisodeState)
    assert isinstance(state.fork(new_id=1), EpisodeState)
    assert not isinstance(ScriptedAgent(), RoundAgent)  # plays whole episodes only: not a round agent
    agent.apply_round([state], agent.generate_round([state], SamplingParams()))
    assert state.last_turn is state.env.last_turn and state.last_turn.is_tool_call
    assert state.tool_calls is state.trajectory.tool_calls and len(state.tool_calls) == 1
    agent.close()


CHECK = """
from arpo_env.agent import EpisodeState, RoundAgent
from arpo_env.agents.rollout import Agent, RolloutState


def as_round_agent(a: Agent) -> RoundAgent[RolloutState]:
    return a


def as_state(s: RolloutState) -> EpisodeState:
    return s
"""

BROKEN = """
from arpo_env.agent import EpisodeState


class NoFork:
    env = None
    done = False


def as_state(s: NoFork) -> EpisodeState:
    return s
"""


ROOT = Path(__file__).resolve().parents[2]


def _namespace_tree(dest: Path) -> Path:
    """``dest/arpo_env`` laid out as installed (``arpo_env.agents`` = ``agents/`` ...), with symlinks: mypy
    cannot follow setuptools' ``package-dir`` mapping of the editable install."""
    pkg = dest / "arpo_env"
    pkg.mkdir(parents=True)
    for child in (ROOT / "arpo_env").iterdir():
        if child.name != "__pycache__":
            (pkg / child.name).symlink_to(child)
    for sub in ("agents", "envs", "benchmarks", "trainers"):
        (pkg / sub).symlink_to(ROOT / sub)
    return dest


@pytest.mark.slow
def test_the_type_checker_accepts_the_agent_and_rejects_a_broken_state(tmp_path, monkeypatch):
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(_namespace_tree(tmp_path / "src")))
    (tmp_path / "seam_ok.py").write_text(textwrap.dedent(CHECK))
    (tmp_path / "seam_broken.py").write_text(textwrap.dedent(BROKEN))
    # --disallow-any-unimported: an import mypy cannot resolve would make Agent ``Any`` and the check vacuous
    out, err, status = api.run([str(tmp_path / "seam_ok.py"), str(tmp_path / "seam_broken.py"),
                                "--ignore-missing-imports", "--follow-imports=silent", "--no-error-summary",
                                "--disallow-any-unimported", "--cache-dir", str(tmp_path / "cache")])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and errors, out + err
    assert all("seam_broken.py" in line for line in errors), out  # the real Agent and RolloutState conform
    assert any("EpisodeState" in line for line in errors), out    # the broken state is caught
