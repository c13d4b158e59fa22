"""Sandboxed, persistent, forkable Python for tool-using agents.

- :func:`make_python_tool` / :class:`PythonTool`: the ``python`` tool for any env (``<python>code</python>``).
- :class:`PythonEnv` (``arpo/Python-v0``): compute-heavy questions with that tool.
- Tiers (``sandbox=``): ``subprocess`` (default when nothing stronger works), ``bwrap``, ``docker``;
  ``auto`` picks the strongest available. ``arpo doctor`` reports which work here and why not.
"""
from arpo_env.envs.python.config import TIERS, SandboxConfig
from arpo_env.envs.python.protocol import ExecResult, SandboxError, SandboxUnavailable
from arpo_env.envs.python.tool import PythonTool, make_python_tool


def __getattr__(name: str):  # the env pulls in gymnasium; import it lazily
    if name == "PythonEnv":
        from arpo_env.envs.python.env import PythonEnv
        return PythonEnv
    raise AttributeError(name)


__all__ = ["TIERS", "SandboxConfig", "ExecResult", "SandboxError", "SandboxUnavailable", "PythonTool",
           "make_python_tool", "PythonEnv"]
