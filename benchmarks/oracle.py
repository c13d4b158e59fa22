"""The oracle: a model-free policy for :class:`arpo_env.agents.scripted.ScriptedAgent` that plays each
episode through the real env (tool calls included) and then answers the gold answer with a chosen
probability.

Used to test the evaluation harness (scores, resume) and to measure its overhead (``bench/eval.py``;
``arpo eval --backend oracle``). :class:`OracleAgent` is the scripted agent with this policy. Its "token
ids" are character codes, so token counts are characters: good for bookkeeping tests, not for anything
about models. The loss-mask contract is the scripted agent's: action characters 1, prompt and tool
results 0; tool calls are the ones the env decides (``TextEnv.last_turn.is_tool_call``).
"""
from __future__ import annotations

import random
import time
from typing import Any, cast

from arpo_env.agents.scripted import Policy, ScriptedAgent
from arpo_env.env import TextEnv


def char_ids(text: str) -> list[int]:
    """The oracle's token ids: character codes (mod 50000), one per character."""
    return [ord(c) % 50000 for c in text]


def oracle_policy(accuracy: float = 1.0, tool_calls: int = 1, delay_s: float = 0.0) -> Policy:
    """A :data:`~arpo_env.agents.scripted.Policy`: ``tool_calls`` calls of the env's first tool (its
    ``example`` argument, else ``1``), then ``<answer>\\boxed{GOLD}</answer>`` with probability
    ``accuracy`` (drawn once per episode from ``random.Random(reset seed)``), else ``wrong answer``.
    An env without tools is answered at once. ``delay_s`` is slept at each episode's first turn
    (simulates model time)."""

    def policy(env: Any, turn: int, observation: str) -> str:
        base = cast(TextEnv, env.unwrapped)
        if turn == 0 and delay_s:
            time.sleep(delay_s)
        tool = next(iter(base.tools.values()), None)
        if tool is not None and turn < tool_calls:
            return (f"<think>use a tool</think><{tool.name}>{getattr(tool, 'example', '') or '1'}"
                    f"</{tool.name}>")
        answers = base.episode.task.answer
        gold = answers[0] if answers else ""
        answer = gold if random.Random(base.np_random_seed).random() < accuracy else "wrong answer"
        return f"<think>done</think><answer>\\boxed{{{answer}}}</answer>"

    return policy


class OracleAgent(ScriptedAgent):
    """The scripted agent with :func:`oracle_policy`: answers correctly with probability ``accuracy``
    (per episode, from the reset seed) after ``tool_calls`` calls of the env's first tool."""

    def __init__(self, accuracy: float = 1.0, tool_calls: int = 1, delay_s: float = 0.0, *,
                 tool_workers: int = 16):
        super().__init__(oracle_policy(accuracy, tool_calls, delay_s), tool_workers=tool_workers,
                         encode=char_ids, chat_prompt=False)
        self.accuracy, self.tool_calls, self.delay_s = accuracy, tool_calls, delay_s

    def describe(self) -> dict[str, Any]:
        return {"agent": "oracle", "accuracy": self.accuracy, "tool_calls": self.tool_calls}
