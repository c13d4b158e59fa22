"""The batched multi-turn rollout loop: one backend drives many text envs in lockstep, token-in/token-out.

One round (``Agent.advance``): generate for every active episode in one backend call, then step every env
with its turn's text (concurrently, in a thread pool), then append each observation's ids. An episode is
a list of token ids that only ever grows by ids the model sampled or ids of a tool result encoded once;
decoded text is used to parse and display, never re-encoded.

When an episode ends (ARPO.md section 1):
- the env says so (an answer ``terminated``; a budget or ``max_turns`` ``truncated``);
- the model's turn ended without a stop string (EOS, or the per-turn ``max_new_tokens``): the env still
  gets the turn (so its record and reward see it), then the episode ends as truncated with the env's
  reward of the whole response (ARPO: a response that stops without a tool call is finished);
- the response (generated + observation tokens after the prompt) reaches ``max_response_tokens``: the
  last turn or observation is cut there, the episode is truncated.

``RolloutState`` is forkable (``state.fork()`` forks the env too), so the ARPO trainer can run its own
branching loop from ``start`` / ``advance`` / ``finish``.

Not covered: branching policy (the trainer's), chat-template JSON tool calls as stop strings other than
``</tool_call>``, per-episode sampling settings within one round.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from arpo_env.agent import (AgentBackend, EntropySource, Generation, SamplingParams, ToolCallRecord,
                            Trajectory)

log = logging.getLogger(__name__)

ANSWER_STOP = "</answer>"


def env_stop_strings(env: Any) -> tuple[str, ...]:
    """``</NAME>`` for each tool of ``env``, ``</tool_call>`` when it accepts JSON calls, and ``</answer>``."""
    base = getattr(env, "unwrapped", env)
    names = list(getattr(base, "tools", {}) or [])
    stops = [f"</{n}>" for n in names]
    cfg = getattr(base, "config", None)
    if getattr(cfg, "json_tool_calls", False):
        stops.append("</tool_call>")
    stops.append(ANSWER_STOP)
    return tuple(dict.fromkeys(stops))


@dataclass
class RolloutState:
    """One episode in progress: its env and its token-level record (becomes a ``Trajectory``)."""

    env: Any
    token_ids: list[int]
    prompt_len: int
    stops: tuple[str, ...]
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    task: dict[str, Any] = field(default_factory=dict)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    finish_reason: str = ""
    answer: str | None = None
    entropy_source: EntropySource = EntropySource.EXACT
    id: int = 0
    parent: int | None = None
    branch_at: int | None = None
    env_tool_calls: int = 0
    """The env's tool-call counter after the last step (calls and malformed turns)."""
    last_generation: Generation | None = None
    """The latest model turn (the trainer reads its entropies for branching decisions)."""

    def __post_init__(self) -> None:
        if not self.loss_mask:
            n = len(self.token_ids)
            self.loss_mask, self.logprobs, self.entropies = [0] * n, [0.0] * n, [math.nan] * n

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @property
    def response_len(self) -> int:
        return len(self.token_ids) - self.prompt_len

    def fork(self, new_id: int | None = None) -> "RolloutState":
        """An independent copy at this point: the env is forked (``env.fork()``), the lists copied.
        The child's ``parent`` is this state's id and ``branch_at`` the current length."""
        child = copy.copy(self)
        child.env = self.env.fork() if not self.done else self.env
        for name in ("token_ids", "loss_mask", "logprobs", "entropies", "turn_spans", "text_parts"):
            setattr(child, name, list(getattr(self, name)))
        child.tool_calls = [dataclasses.replace(c) for c in self.tool_calls]
        child.task = copy.deepcopy(self.task)
        child.parent, child.branch_at = self.id, len(self.token_ids)
        child.id = self.id if new_id is None else new_id
        return child

    def to_trajectory(self) -> Trajectory:
        traj = Trajectory(token_ids=list(self.token_ids), prompt_len=self.prompt_len,
                          loss_mask=list(self.loss_mask), logprobs=list(self.logprobs),
                          entropies=list(self.entropies), turn_spans=list(self.turn_spans),
                          tool_calls=list(self.tool_calls), reward=float(self.reward),
                          terminated=self.terminated, truncated=self.truncated,
                          finish_reason=self.finish_reason, answer=self.answer, task=copy.deepcopy(self.task),
                          text="".join(self.text_parts), id=self.id, parent=self.parent,
                          branch_at=self.branch_at, entropy_source=self.entropy_source)
        traj.check()
        return traj


class Agent:
    """The LLM agent over any ``AgentBackend`` (implements ``arpo_env.Agent``).

    Args:
        backend: token-in/token-out generator (``hf``, ``vllm``, ``openai`` backends, or your own).
        tokenizer: a transformers tokenizer with a chat template (the backend's own vocabulary).
        max_response_tokens: budget of generated + observation tokens after the prompt (ARPO: 4096).
        tool_workers: threads stepping envs concurrently (tool calls of one round run in parallel).
    """

    def __init__(self, backend: AgentBackend, tokenizer: Any, *, max_response_tokens: int = 4096,
                 tool_workers: int = 16):
        if max_response_tokens < 1:
            raise ValueError("max_response_tokens must be at least 1")
        self.backend = backend
        self.tokenizer = tokenizer
        self.max_response_tokens = max_response_tokens
        self.tool_workers = max(1, tool_workers)
        self._pool: ThreadPoolExecutor | None = None

    # ----- token helpers (also used by the ARPO trainer's own loop) ------------------------------------
    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Ids of the chat prompt, built once with the tokenizer's chat template (generation prompt added).

        The template is rendered to text and encoded without extra special tokens (the template writes its
        own BOS where the model wants one). Without a chat template, ``"{system}\\n\\n{user}\\n"`` is
        encoded with the tokenizer's default special tokens.
        """
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok.encode(text, add_special_tokens=False))
        log.warning("tokenizer has no chat template; using a plain-text prompt")
        text = "\n\n".join(m["content"] for m in messages) + "\n"
        return list(tok.encode(text))

    def observation_ids(self, text: str) -> list[int]:
        """Ids of a tool-result fragment, encoded once, with no BOS or other special tokens added."""
        if not text:
            return []
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def stop_strings(self, env: Any) -> tuple[str, ...]:
        """Stop strings for ``env``: the closing tag of each of its tools, ``</tool_call>``, ``</answer>``."""
        return env_stop_strings(env)

    # ----- the loop -----------------------------------------------------------------------------------
    def start(self, env: Any, *, options: dict[str, Any] | None = None, seed: int | None = None,
              id: int = 0) -> RolloutState:
        """Reset ``env`` and return the episode's initial state (prompt ids only)."""
        _, info = env.reset(seed=seed, options=options)
        messages = info.get("messages") or [{"role": "user", "content": _}]
        ids = self.prompt_ids(messages)
        return RolloutState(env=env, token_ids=ids, prompt_len=len(ids), stops=self.stop_strings(env),
                            task=copy.deepcopy(info.get("task", {})), id=id)

    def generate_round(self, states: Sequence[RolloutState], params: SamplingParams) -> list[Generation]:
        """One backend call for ``states`` (all must be active). ``max_new_tokens`` is capped by the largest
        remaining response budget; the stop strings are the union of the states' and ``params.stop``."""
        if not states:
            return []
        remaining = max(self.max_response_tokens - s.response_len for s in states)
        stops = tuple(dict.fromkeys([*params.stop, *(x for s in states for x in s.stops)]))
        p = dataclasses.replace(params, max_new_tokens=max(1, min(params.max_new_tokens, remaining)),
                                stop=stops)
        return self.backend.generate([s.token_ids for s in states], p)

    def apply_round(self, states: Sequence[RolloutState], gens: Sequence[Generation]) -> None:
        """Append each generation, step the envs concurrently, append the observations."""
        if len(states) != len(gens):
            raise ValueError(f"{len(states)} states but {len(gens)} generations")
        for s, g in zip(states, gens):
            self._append_generation(s, g)
        results = list(self._executor().map(lambda sg: self._step_env(*sg), zip(states, gens)))
        for s, g, res in zip(states, gens, results):
            self._append_observation(s, g, *res)

    def advance(self, states: Sequence[RolloutState], params: SamplingParams) -> list[RolloutState]:
        """One round for every active state; returns the states that were active."""
        active = [s for s in states if not s.done]
        self.apply_round(active, self.generate_round(active, params))
        return active

    def finish(self, state: RolloutState) -> Trajectory:
        """The trajectory of a finished (or abandoned) episode."""
        return state.to_trajectory()

    def rollout(self, envs: Sequence[Any], params: SamplingParams, *,
                options: Sequence[dict[str, Any] | None] | None = None,
                seeds: Sequence[int | None] | None = None) -> list[Trajectory]:
        """Reset each env with its options/seed, play all episodes to the end in lockstep, and return one
        trajectory per env, in order (``arpo_env.Agent``)."""
        n = len(envs)
        options = list(options) if options is not None else [None] * n
        seeds = list(seeds) if seeds is not None else [None] * n
        if len(options) != n or len(seeds) != n:
            raise ValueError("options and seeds need one entry per env")
        states = list(self._executor().map(
            lambda i: self.start(envs[i], options=options[i], seed=seeds[i], id=i), range(n)))
        while any(not s.done for s in states):
            self.advance(states, params)
        return [self.finish(s) for s in states]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ----- internals ----------------------------------------------------------------------------------
    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.tool_workers, thread_name_prefix="arpo-tools")
        return self._pool

    def _append_generation(self, s: RolloutState, g: Generation) -> None:
        room = self.max_response_tokens - s.response_len
        ids, lps, ents = list(g.token_ids), list(g.logprobs), list(g.entropies)
        if not (len(ids) == len(lps) == len(ents)):
            raise ValueError("backend returned misaligned token ids, log-probs and entropies")
        cut = len(ids) > room
        if cut:
            ids, lps, ents = ids[:room], lps[:room], ents[:room]
            text = _decode(self.tokenizer, ids)
            g = dataclasses.replace(g, token_ids=ids, logprobs=lps, entropies=ents, finish_reason="length",
                                    stop_string=None, text=text)
        start = len(s.token_ids)
        s.token_ids += ids
        s.loss_mask += [1] * len(ids)
        s.logprobs += lps
        s.entropies += ents
        s.turn_spans.append((start, len(s.token_ids)))
        s.text_parts.append(g.text)
        s.entropy_source = g.entropy_source
        s.last_generation = g
        s.finish_reason = g.finish_reason

    def _step_env(self, s: RolloutState, g: Generation) -> tuple[str, float, bool, bool, dict[str, Any]]:
        text = s.last_generation.text if s.last_generation is not None else g.text
        return s.env.step(text)

    def _append_observation(self, s: RolloutState, g: Generation, obs: str, reward: float,
                            terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        act = info.get("action") or {}
        calls = int(info.get("tool_calls", s.env_tool_calls))
        if calls > s.env_tool_calls and act.get("kind") in ("tool", "invalid"):
            # a call the env counted (executed, or malformed); turns with no tag at all are not calls
            s.tool_calls.append(ToolCallRecord(name=act.get("name"), args=act.get("args"),
                                               error=bool(info.get("tool_error")) or act.get("kind") != "tool",
                                               turn=len(s.turn_spans) - 1))
        s.env_tool_calls = calls
        s.answer = info.get("answer", s.answer)
        turn = s.last_generation
        if terminated or truncated:
            s.terminated, s.truncated, s.reward = bool(terminated), bool(truncated), float(reward)
            if truncated and turn is not None and turn.finish_reason == "stop":
                s.finish_reason = "env_truncated"
            return
        if turn is not None and turn.finish_reason != "stop":
            # the model stopped without a tool call (EOS or length): the episode is over
            s.truncated = True
            s.reward = _env_final_reward(s.env)
            return
        ids = self.observation_ids(obs)
        room = self.max_response_tokens - s.response_len
        if len(ids) >= room:
            ids = ids[:room]
            s.truncated, s.finish_reason = True, "max_response_tokens"
            s.reward = _env_final_reward(s.env)
        s.token_ids += ids
        s.loss_mask += [0] * len(ids)
        s.logprobs += [0.0] * len(ids)
        s.entropies += [math.nan] * len(ids)
        s.text_parts.append(_decode(self.tokenizer, ids) if s.truncated else obs)


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False) if tokenizer is not None else ""


def _env_final_reward(env: Any) -> float:
    """End an episode the agent stopped (EOS, length) and return the env's final reward for it
    (``TextEnv.end``); envs without ``end`` give 0.0."""
    end = getattr(getattr(env, "unwrapped", env), "end", None)
    if end is None:
        return 0.0
    try:
        return float(end())
    except Exception as exc:  # a reward function failing must not kill a batch
        log.warning("reward of an agent-ended episode failed: %s", exc)
        return 0.0
