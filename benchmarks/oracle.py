"""A scripted agent that needs no model: it plays each episode by a fixed policy through the real env
(tool calls included) and answers the gold answer with a chosen probability.

Used to test the evaluation harness (scores, resume) and to measure its overhead (``bench/eval.py``).
It implements :class:`arpo_env.Agent`; its trajectories carry character codes as "token ids", so token
counts are characters: good for bookkeeping tests, not for anything about models.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

from arpo_env.agent import SamplingParams, ToolCallRecord, Trajectory


@dataclass
class OracleAgent:
    """Answers correctly with probability ``accuracy`` (per episode, from the reset seed)."""

    accuracy: float = 1.0
    """Probability of answering the first gold answer; otherwise it answers ``wrong answer``."""
    tool_calls: int = 1
    """How many times it calls the env's first tool (its ``example`` argument) before answering."""
    delay_s: float = 0.0
    """Sleep per episode (simulates model time)."""

    def describe(self) -> dict[str, Any]:
        return {"agent": "oracle", "accuracy": self.accuracy, "tool_calls": self.tool_calls}

    def rollout(self, envs: Sequence[Any], params: SamplingParams, *,
                options: Sequence[dict[str, Any] | None] | None = None,
                seeds: Sequence[int | None] | None = None) -> list[Trajectory]:
        out = []
        for i, env in enumerate(envs):
            opt = options[i] if options else None
            seed = seeds[i] if seeds else None
            prompt, info = env.reset(seed=seed, options=opt)
            rng = random.Random(seed)
            ep = env.episode
            tool = next(iter(env.tools.values()), None)
            for _ in range(self.tool_calls if tool is not None else 0):
                _, _, term, trunc, _ = env.step(f"<think>use a tool</think><{tool.name}>"
                                               f"{getattr(tool, 'example', '') or '1'}</{tool.name}>")
                if term or trunc:
                    break
            if not ep.done:
                gold = ep.task.answer[0] if ep.task.answer else ""
                answer = gold if rng.random() < self.accuracy else "wrong answer"
                env.step(f"<think>done</think><answer>\\boxed{{{answer}}}</answer>")
            if self.delay_s:
                time.sleep(self.delay_s)
            text = ep.response
            ids = [ord(c) % 50000 for c in prompt] + [ord(c) % 50000 for c in text]
            n_p = len(prompt)
            mask = [0] * n_p + [1] * len(text)
            calls = [ToolCallRecord(name, None, False, t) for t, (a, name) in enumerate(
                (a, n) for a in ep.actions for n in env.tools if f"<{n}>" in a)]
            out.append(Trajectory(token_ids=ids, prompt_len=n_p, loss_mask=mask, logprobs=[0.0] * len(ids),
                                  entropies=[0.0] * len(ids), tool_calls=calls, reward=ep.reward or 0.0,
                                  terminated=ep.terminated, truncated=ep.truncated,
                                  finish_reason="stop", answer=ep.answer, task=ep.task.to_dict(), text=text))
        return out
