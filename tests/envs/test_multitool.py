"""arpo/MultiTool-v0 with an injected stand-in python tool (the real sandbox comes from arpo_env.envs.python)."""
from __future__ import annotations

import contextlib
import copy
import io

import pytest

import arpo_env
from arpo_env import ForkableTool, ToolResult, check_fork
from arpo_env.envs.multitool import MultiToolEnv
from arpo_env.envs.search.base import Hit
from tests.helpers.env_checks import strict_check_env


class StandInPython:
    """A trusted-code stand-in for the sandboxed python tool: a persistent namespace that forks by copy.
    (Test code only: it runs code in this process, which the real tool never does.)"""

    name = "python"
    description = "runs Python code in a persistent session and returns what it prints"
    instances: list["StandInPython"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.ns: dict = {}
        self.closed = False
        StandInPython.instances.append(self)

    def __call__(self, code: str) -> ToolResult:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, self.ns)
        except Exception as exc:
            return ToolResult(f"{out.getvalue()}{type(exc).__name__}: {exc}", error=True)
        return ToolResult(out.getvalue().rstrip("\n") or "(no output)")

    def fork(self) -> "StandInPython":
        child = StandInPython(**self.kwargs)
        child.ns = copy.deepcopy({k: v for k, v in self.ns.items() if k != "__builtins__"})
        return child

    def reset(self) -> None:
        self.ns = {}

    def close(self) -> None:
        self.closed = True


def make_env(**kw):
    return arpo_env.make("arpo/MultiTool-v0", python_factory=StandInPython, **kw)


def test_multitool_checks_and_arpo_reward():
    env = make_env()
    assert isinstance(env.tools["python"], ForkableTool)
    strict_check_env(env)
    report = check_fork(env)
    assert report.fork_kind == "process" and report.deterministic
    prompt, info = env.reset(seed=0)
    system = info["system_prompt"]
    assert "<search>" in system and "<python>" in system and "at most 3 tool calls" in system
    assert info["tools"] == ["search", "python"]
    gold = env.episode.task.answer[0]
    env.step(f"<think>a</think><search>{prompt}</search>")
    obs, *_ = env.step("<think>b</think><python>print(6 * 7)</python>")
    assert obs == "<result>\n42\n</result>"
    _, reward, terminated, _, _ = env.step(f"<think>c</think><answer>\\boxed{{{gold}}}</answer>")
    assert terminated and reward == pytest.approx(1.1)  # F1 1 + the multi-tool bonus
    env.reset(seed=0)
    env.step("<think>a</think><search>x y z</search>")
    assert env.step(f"<think>c</think><answer>\\boxed{{{gold}}}</answer>")[1] == pytest.approx(1.0)  # no python
    env.reset(seed=0)
    env.step("<python>print(1)</python>")  # unbalanced <think> is fine; a missing boxed is not
    assert env.step("<answer>no box</answer>")[1] == -1.0


def test_budget_counts_all_tools_together():
    env = make_env(max_tool_calls=2)
    env.reset(options={"question": "q", "answer": "a"})
    env.step("<search>Lisbon</search>")
    env.step("<python>x = 1</python>")
    obs, _, terminated, truncated, _ = env.step("<search>Porto</search>")
    assert truncated and not terminated and "budget of 2 tool calls" in obs


def test_python_session_forks_with_the_episode():
    env = make_env()
    env.reset(options={"question": "q", "answer": "a"})
    env.step("<python>n = 10</python>")
    child = env.fork()
    assert child.tools["python"] is not env.tools["python"]
    assert child.tools["search"] is not env.tools["search"] and child.tools["search"].backend is env.tools["search"].backend
    assert child.step("<python>n += 1\nprint(n)</python>")[0] == "<result>\n11\n</result>"
    assert env.step("<python>print(n)</python>")[0] == "<result>\n10\n</result>"
    child.reset(options={"question": "q2", "answer": "a"})  # resetting the child leaves the parent alone
    assert env.tools["python"].ns["n"] == 10 and child.tools["python"].ns == {}
    child.close()
    assert child.tools["python"].closed and not env.tools["python"].closed


def test_factory_kwargs_and_validation():
    env = make_env(python_kwargs={"timeout_s": 3})
    assert env.tools["python"].kwargs == {"timeout_s": 3}
    with pytest.raises(ValueError, match="named 'python'"):
        MultiToolEnv(python_factory=lambda: arpo_env.FunctionTool("py", "x", str))
    with pytest.raises(TypeError, match="browse=False"):
        make_env(page_chars=1000)


def test_with_browse_and_injected_search_backend():
    class Fixed:
        name = "fixed"

        def search(self, query, k):
            return [Hit("Lisbon", "Lisbon is the capital of Portugal.", url="https://en.wikipedia.org/wiki/Lisbon")]

    env = make_env(browse=True, backend_impl=Fixed(), max_tool_calls=4)
    check_fork(env)
    _, info = env.reset(options={"question": "Capital of Portugal?", "answer": "Lisbon"})
    assert info["tools"] == ["search", "python", "browse"] and "<browse>" in info["system_prompt"]
    obs, *_ = env.step("<search>capital of portugal</search>")
    assert "(https://en.wikipedia.org/wiki/Lisbon)" in obs  # URLs shown so results can be opened
    obs, *_ = env.step("<browse>https://en.wikipedia.org/wiki/Lisbon</browse>")
    assert "Title: Lisbon" in obs and "capital and the largest city of Portugal" in obs
    child = env.fork()
    assert child.tools["browse"].state.url == env.tools["browse"].state.url
    assert child.tools["browse"].state is not env.tools["browse"].state


def test_live_search_makes_it_external(tmp_path):
    env = make_env(backend="ddgs", cache_path=str(tmp_path / "c.sqlite"),
                   ddgs={"timeout_s": 2, "retries": 0, "min_interval_s": 0})
    assert env.fork_kind.value == "external" and not env.deterministic


def test_registered_default_builds_the_real_sandboxed_python_tool():
    from arpo_env.envs.python import PythonTool

    env = arpo_env.make("arpo/MultiTool-v0")
    try:
        env.reset(seed=0)
        assert isinstance(env.tools["python"], PythonTool)
        obs, *_ = env.step("<python>x = 20\nx * 2 + 2</python>")
        assert obs == "<result>\n42\n</result>"
    finally:
        env.close()
