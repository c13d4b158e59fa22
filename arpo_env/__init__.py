"""arpo-env: Gymnasium text environments for tool-using LLM agents, forkable mid-episode, for ARPO.

The contract everything else builds on: :class:`TextEnv`, the tool protocol, fork kinds and
:func:`check_fork`, the registry (:func:`register`, :func:`make`, :func:`list_envs`), ARPO's rewards and
the agent/trajectory types, the typed seam (``Turn``: what the env played; ``RoundAgent`` and
``EpisodeState``: what the ARPO trainer uses of an agent and its episodes) and ``Task``, the one type of a
question with gold answers. This package imports none of ``envs``, ``agents``, ``benchmarks`` or ``trainers``.
"""
from arpo_env.agent import (
                            Agent,
                            AgentBackend,
                            EntropySource,
                            EpisodeState,
                            Generation,
                            RoundAgent,
                            SamplingParams,
                            TextCompleter,
                            ToolCallRecord,
                            Trajectory,
)
from arpo_env.env import EnvConfig, Episode, TextEnv, Turn
from arpo_env.fork import ForkCheckError, ForkKind, ForkReport, check_fork
from arpo_env.parsing import Action, extract_answer, extract_boxed, format_result, parse_action
from arpo_env.registry import UnknownEnvError, list_envs, make, register
from arpo_env.rewards import arpo_reward, check_format, exact_match, f1_score, normalize_answer
from arpo_env.task import ListTaskSource, Task, TaskSource
from arpo_env.tools import ForkableTool, FunctionTool, Tool, ToolResult

__version__ = "0.1.0"
__all__ = [
    "Action", "Agent", "AgentBackend", "EntropySource", "EnvConfig", "Episode", "EpisodeState",
    "ForkCheckError", "ForkKind", "ForkReport", "ForkableTool", "FunctionTool", "Generation", "ListTaskSource",
    "RoundAgent", "SamplingParams", "Task", "TaskSource", "TextCompleter", "TextEnv", "Tool", "ToolCallRecord",
    "ToolResult", "Trajectory", "Turn", "UnknownEnvError", "arpo_reward", "check_fork", "check_format",
    "exact_match", "extract_answer", "extract_boxed", "f1_score", "format_result", "list_envs", "make",
    "normalize_answer", "parse_action", "register",
]
