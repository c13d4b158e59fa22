"""The agent-side contracts: token-in/token-out generation backends, trajectories, and the protocols the
ARPO trainer drives an agent through (:class:`RoundAgent` over :class:`EpisodeState` s).

Defined here so that envs, benchmarks and trainers depend on a protocol, not on an implementation in
``agents/`` (transformers, vLLM, OpenAI-compatible servers).

Token-in/token-out (ARPO.md section 1): a backend receives token-id contexts and returns the exact ids it
sampled with their log-probs and per-token entropies. Callers never re-tokenise decoded text between
turns: a trajectory is the prompt ids, then alternately generated ids and the ids of the inserted tool
results, and a branch point is a token index.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from arpo_env.env import TextEnv, Turn


class EntropySource(str, enum.Enum):
    """How a backend obtained per-token entropy."""

    EXACT = "exact"
    """From the full next-token distribution (softmax of the logits) after temperature."""
    TOPK = "topk"
    """Renormalised over the top-k log-probs a server returned: a lower bound, biased low at high temperature."""
    NONE = "none"
    """Not available (entropies are NaN)."""


@dataclass
class SamplingParams:
    """Sampling settings for one ``generate`` call (defaults: ARPO's evaluation settings, ARPO.md s. 7)."""

    temperature: float = 0.6
    """0 means greedy decoding (no branching in ARPO)."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    top_k: int = 20
    """Sample among the k most likely tokens; 0 or -1 disables."""
    repetition_penalty: float = 1.1
    """Penalty on tokens already in the context (1.0 disables)."""
    max_new_tokens: int = 1024
    """Generation stops after this many new tokens (finish reason ``length``)."""
    stop: tuple[str, ...] = ()
    """Stop strings (e.g. ``</python>``); the stop string is kept in the output, as ARPO does."""
    seed: int | None = None
    """Seed for reproducible sampling where the backend supports it."""
    logprobs_topk: int = 20
    """How many top log-probs to ask for where the backend cannot give full logits."""


@dataclass
class Generation:
    """One context's output."""

    token_ids: list[int]
    """The generated ids, exactly as sampled (the stop string's tokens included)."""
    logprobs: list[float]
    """Log-prob of each generated id under the sampling distribution's model (before top-p/top-k)."""
    entropies: list[float]
    """Entropy of each step's next-token distribution (see ``entropy_source``)."""
    finish_reason: str
    """``stop`` (stop string), ``eos`` (end-of-sequence token) or ``length``."""
    stop_string: str | None = None
    """The stop string that ended generation, if any."""
    entropy_source: EntropySource = EntropySource.EXACT
    text: str = ""
    """Decoded text, for parsing and display only: never re-encode it."""


@runtime_checkable
class AgentBackend(Protocol):
    """A token-in/token-out generator (the ``hf``, ``vllm`` and ``openai`` backends implement it)."""

    def generate(self, contexts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """Generate one continuation per context, in order."""
        ...


@runtime_checkable
class TextCompleter(Protocol):
    """What an env needs from a model (a page summariser, an LLM judge): chat messages in, text out."""

    def complete(self, messages: list[dict[str, str]], max_new_tokens: int = 512) -> str:
        ...


@dataclass
class ToolCallRecord:
    """One tool call made in a trajectory."""

    name: str | None
    args: str | None
    error: bool
    turn: int

    @classmethod
    def from_turn(cls, turn: Turn, index: int) -> ToolCallRecord:
        """The record of an env turn that counted as a tool call (``turn.is_tool_call``); ``index`` is the
        0-based model turn."""
        return cls(name=turn.action.name, args=turn.action.args, error=turn.tool_error, turn=index)


@dataclass
class Trajectory:
    """One episode as tokens.

    ``token_ids[:prompt_len]`` is the prompt; after it come model turns (``loss_mask`` 1) and tool
    results (``loss_mask`` 0). ``logprobs`` and ``entropies`` align with ``token_ids`` (0.0 / NaN where
    the token was not generated). ``turn_spans`` lists ``(start, end)`` of each model turn.
    For ARPO trees, ``parent``/``branch_at`` say which trajectory this one was forked from and at which
    token index the two diverge (the shared prefix is ``token_ids[:branch_at]``).
    """

    token_ids: list[int]
    prompt_len: int
    loss_mask: list[int]
    logprobs: list[float]
    entropies: list[float]
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    finish_reason: str = ""
    answer: str | None = None
    task: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    """Decoded response (display and logging only)."""
    id: int = 0
    parent: int | None = None
    branch_at: int | None = None
    entropy_source: EntropySource = EntropySource.EXACT

    def copy(self) -> Trajectory:
        """An independent copy: no list, record or task dict is shared with this one."""
        return dataclasses.replace(
            self, token_ids=list(self.token_ids), loss_mask=list(self.loss_mask), logprobs=list(self.logprobs),
            entropies=list(self.entropies), turn_spans=list(self.turn_spans),
            tool_calls=[dataclasses.replace(c) for c in self.tool_calls], task=copy.deepcopy(self.task))

    def check(self) -> None:
        """Raise ``ValueError`` if the aligned arrays disagree in length or the mask is malformed."""
        n = len(self.token_ids)
        for name in ("loss_mask", "logprobs", "entropies"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Trajectory.{name} has {len(getattr(self, name))} entries for {n} tokens")
        if any(self.loss_mask[: self.prompt_len]):
            raise ValueError("prompt tokens must have loss mask 0")
        if any(m not in (0, 1) for m in self.loss_mask):
            raise ValueError("loss mask values must be 0 or 1")


@runtime_checkable
class Agent(Protocol):
    """Plays whole episodes: what benchmarks and evaluation call (``agents.Agent`` implements it for any
    backend; ``arpo_env.agents.scripted.ScriptedAgent`` for tests and harness benchmarks)."""

    def rollout(self, envs: Sequence[Any], params: SamplingParams, *,
                options: Sequence[dict[str, Any] | None] | None = None,
                seeds: Sequence[int | None] | None = None) -> list[Trajectory]:
        """Reset each env with its options/seed, play all episodes to the end in lockstep (tool calls run
        concurrently), and return one trajectory per env, in order."""
        ...


S = TypeVar("S", bound="EpisodeState")


@runtime_checkable
class EpisodeState(Protocol):
    """One episode in progress, as the ARPO trainer reads it (``agents.RolloutState`` implements it)."""

    @property
    def env(self) -> TextEnv:
        """The episode's env (the trainer closes it at the end)."""
        ...

    @property
    def trajectory(self) -> Trajectory:
        """The token-level record so far (grows every round)."""
        ...

    @property
    def done(self) -> bool:
        """The episode has ended (terminated or truncated)."""
        ...

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """The tool calls so far (one per env turn with ``Turn.is_tool_call``)."""
        ...

    @property
    def last_turn(self) -> Turn | None:
        """The env's record of the latest turn (``TextEnv.last_turn``): ``is_tool_call`` says whether the
        trajectory just made a tool call."""
        ...

    @property
    def last_generation(self) -> Generation | None:
        """The latest model turn (its ``entropies`` drive ARPO's branching)."""
        ...

    @property
    def id(self) -> int:
        """Index of this trajectory within its prompt's group."""
        ...

    @property
    def branch_at(self) -> int | None:
        """Token index where this state was forked from its parent (``None`` for a root)."""
        ...

    def fork(self: S, new_id: int | None = None) -> S:
        """An independent copy at this point (its env forked), with ``parent`` = this id and ``branch_at``
        = the current length."""
        ...


@runtime_checkable
class RoundAgent(Protocol[S]):
    """What the ARPO trainer uses of an agent: start episodes, play them round by round, finish them
    (``agents.Agent`` implements it with ``agents.RolloutState``)."""

    def start(self, env: TextEnv, *, options: dict[str, Any] | None = None, seed: int | None = None,
              id: int = 0) -> S:
        """Reset ``env`` and return the episode's initial state."""
        ...

    def generate_round(self, states: Sequence[S], params: SamplingParams) -> list[Generation]:
        """One backend call for the (active) ``states``: one generation per state, in order."""
        ...

    def apply_round(self, states: Sequence[S], gens: Sequence[Generation]) -> None:
        """Append each generation, step each env, append the observations."""
        ...

    def finish(self, state: S) -> Trajectory:
        """The checked trajectory of a finished (or abandoned) episode."""
        ...
