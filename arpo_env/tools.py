"""The tool protocol: a named callable from an argument string to a typed result.

Tools are small objects (SkyRL-gym style). The same tool serves the tag protocol (``<name>args</name>``)
and chat-template JSON tool calls (``{"name": ..., "arguments": ...}``, see :mod:`arpo_env.parsing`).
A tool with state that must follow an episode's fork implements :class:`ForkableTool`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class ToolResult:
    """What a tool returns."""

    text: str
    """The text shown to the agent inside ``<result>…</result>``."""
    error: bool = False
    """True when the call failed (bad arguments, timeout, sandbox kill); ``text`` then says why."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Extra plain data for logs (e.g. exit status, truncation); never shown to the agent."""


@runtime_checkable
class Tool(Protocol):
    """A tool the agent can call."""

    name: str
    """Tag name and JSON function name, e.g. ``"python"``."""
    description: str
    """One paragraph for the system prompt: what it does, what the argument is, what comes back."""

    def __call__(self, args: str) -> ToolResult:
        """Run the call. Must not raise for bad input: return ``ToolResult(error=True)`` instead."""
        ...


@runtime_checkable
class ForkableTool(Tool, Protocol):
    """A stateful tool that can copy itself at the current point (used by ``process``/``external`` forks)."""

    def fork(self) -> ForkableTool:
        """Return an independent tool in the same state: acting on one never changes the other."""
        ...


@dataclass
class FunctionTool:
    """Adapts a plain function ``str -> str`` into a :class:`Tool`; exceptions become error results."""

    name: str
    description: str
    fn: Callable[[str], str]
    example: str = ""
    """An example argument (used in prompts, demos and ``check_fork`` probes)."""

    def __call__(self, args: str) -> ToolResult:
        try:
            return ToolResult(str(self.fn(args)))
        except Exception as exc:  # a tool error is an observation, never a crash
            return ToolResult(f"Error: {type(exc).__name__}: {exc}", error=True)


def close_tool(tool: Any) -> None:
    """Call ``tool.close()`` if the tool has one."""
    close = getattr(tool, "close", None)
    if callable(close):
        close()
