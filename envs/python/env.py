"""``arpo/Python-v0``: questions best answered by running code, with a sandboxed ``<python>`` tool.

One persistent session per episode (``reset`` starts a fresh one); the env forks by forking the session
process (fork kind ``process``, for every tier: the docker tier forks inside its container).
Deterministic as far as the agent's code is (hash randomisation is off in the sandbox; code that reads
the clock or an unseeded RNG is not).

Constructor keywords: ``sandbox``, ``timeout``, ``memory_mb`` ... (see
:class:`arpo_env.envs.python.config.SandboxConfig`), ``config``/budgets of :class:`arpo_env.env.EnvConfig`, and
``tasks``: ``"generated"`` (default: number questions computed exactly, e.g. digit sums of factorials).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from arpo_env.config import split_fields
from arpo_env.env import TextEnv
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.tool import PythonTool
from arpo_env.fork import ForkKind
from arpo_env.task import Task


class ComputeTasks:
    """Generated questions that are tedious by hand and one line of Python (pure function of the RNG)."""

    def sample(self, rng: np.random.Generator) -> Task:
        kind = int(rng.integers(0, 4))
        if kind == 0:
            n = int(rng.integers(20, 200))
            return Task(f"What is the sum of the decimal digits of {n}!?",
                        [str(sum(map(int, str(math.factorial(n)))))], metadata={"kind": "digit_sum"})
        if kind == 1:
            n = int(rng.integers(1_000, 50_000))
            sieve = bytearray([1]) * (n + 1)
            sieve[:2] = b"\x00\x00"
            for i in range(2, int(n ** 0.5) + 1):
                if sieve[i]:
                    sieve[i * i::i] = bytearray(len(range(i * i, n + 1, i)))
            return Task(f"How many prime numbers are there below {n}?", [str(sum(sieve[:n]))],
                        metadata={"kind": "prime_count"})
        if kind == 2:
            a, m = int(rng.integers(2, 1000)), int(rng.integers(1_000, 100_000))
            e = int(rng.integers(10**6, 10**9))
            return Task(f"What is {a}^{e} mod {m}?", [str(pow(a, e, m))], metadata={"kind": "modpow"})
        n = int(rng.integers(10, 90))
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return Task(f"What is the {n}-th Fibonacci number (F(1) = F(2) = 1)?", [str(a)],
                    metadata={"kind": "fibonacci"})


class PythonEnv(TextEnv):
    """Math-by-code questions with a persistent, sandboxed, forkable Python session."""

    fork_kind = ForkKind.PROCESS
    deterministic = True
    declared_tools = ("python",)

    def __init__(self, sandbox: str = "auto", tasks: str = "generated", **kwargs: Any):
        box, kwargs = split_fields(SandboxConfig, kwargs, exclude=("sandbox",))
        if tasks != "generated":
            raise ValueError(f"unknown task set {tasks!r}; available: 'generated' (or pass a task_source)")
        self.tool = PythonTool(SandboxConfig(sandbox=sandbox, **box))
        super().__init__([self.tool], **kwargs)

    def default_task_source(self) -> ComputeTasks:
        return ComputeTasks()

    def _on_reset(self, task: Task) -> None:
        self.tool.reset()

    def _fork_extra(self, child: TextEnv) -> None:
        child.tool = child.tools["python"]

    def example_actions(self) -> list[str]:
        """Calls that write and read the session's variables and its scratch directory."""
        answer = self.episode.task.answer[0] if self.episode.task.answer else "0"
        return [
            "<think>Set up state.</think><python>x = 1\nopen('notes.txt', 'w').write('a')\nprint(x)</python>",
            "<think>Change it.</think><python>x += 1\nx</python>",
            "<think>Change it in place.</think><python>x *= 10\nopen('notes.txt', 'a').write('b')\n"
            "print(x, open('notes.txt').read())</python>",
            f"<think>Done.</think><answer>\\boxed{{{answer}}}</answer>",
        ]
