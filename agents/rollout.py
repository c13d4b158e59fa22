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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from arpo_env.agent import AgentBackend, Generation, SamplingParams, ToolCallRecord, Trajectory
from arpo_env.env import TextEnv, Turn

log = logging.getLogger(__name__)


@dataclass
class RolloutState:
    """One episode in progress: its env and its growing :class:`arpo_env.Trajectory` (implements
    :class:`arpo_env.EpisodeState`). The trajectory is the only record of the episode; ``finish`` returns it."""

    env: TextEnv
    trajectory: Trajectory
    last_generation: Generation | None = None
    """The latest model turn (the trainer reads its entropies for branching decisions)."""

    @property
    def done(self) -> bool:
        return self.trajectory.terminated or self.trajectory.truncated

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return self.trajectory.tool_calls

    @property
    def last_turn(self) -> Turn | None:
        """The env's record of the latest turn (``TextEnv.last_turn``)."""
        return _text_env(self.env).last_turn

    @property
    def id(self) -> int:
        return self.trajectory.id

    @property
    def branch_at(self) -> int | None:
        return self.trajectory.branch_at

    @property
    def response_len(self) -> int:
        return len(self.trajectory.token_ids) - self.trajectory.prompt_len

    def fork(self, new_id: int | None = None) -> RolloutState:
        """An independent copy at this point: the env is forked (``env.fork()``), the trajectory copied
        (``Trajectory.copy``: no list shared). The child's ``parent`` is this state's id and ``branch_at``
        the current length."""
        traj = self.trajectory.copy()
        traj.parent, traj.branch_at = self.trajectory.id, len(traj.token_ids)
        traj.id = self.trajectory.id if new_id is None else new_id
        env = self.env.fork() if not self.done else self.env
        return RolloutState(env=env, trajectory=traj, last_generation=self.last_generation)

    def to_trajectory(self) -> Trajectory:
        """The episode's trajectory, checked (``Trajectory.check``)."""
        self.trajectory.check()
        return self.trajectory


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

    # ----- the loop -----------------------------------------------------------------------------------
    def start(self, env: TextEnv, *, options: dict[str, Any] | None = None, seed: int | None = None,
              id: int = 0) -> RolloutState:
        """Reset ``env`` and return the episode's initial state (prompt ids only)."""
        prompt, info = env.reset(seed=seed, options=options)
        messages = info.get("messages") or [{"role": "user", "content": prompt}]
        ids = self.prompt_ids(messages)
        n = len(ids)
        traj = Trajectory(token_ids=ids, prompt_len=n, loss_mask=[0] * n, logprobs=[0.0] * n,
                          entropies=[math.nan] * n, task=copy.deepcopy(info.get("task", {})), id=id)
        return RolloutState(env=env, trajectory=traj)

    def generate_round(self, states: Sequence[RolloutState], params: SamplingParams) -> list[Generation]:
        """One backend call for ``states`` (all must be active). ``max_new_tokens`` is capped by the largest
        remaining response budget; the stop strings are the union of the envs' (``TextEnv.stop_strings``) and
        ``params.stop``."""
        if not states:
            return []
        remaining = max(self.max_response_tokens - s.response_len for s in states)
        stops = tuple(dict.fromkeys([*params.stop, *(x for s in states for x in _text_env(s.env).stop_strings)]))
        p = dataclasses.replace(params, max_new_tokens=max(1, min(params.max_new_tokens, remaining)),
                                stop=stops)
        return self.backend.generate([s.trajectory.token_ids for s in states], p)

    def apply_round(self, states: Sequence[RolloutState], gens: Sequence[Generation]) -> None:
        """Append each generation, step the envs concurrently, append the observations."""
        if len(states) != len(gens):
            raise ValueError(f"{len(states)} states but {len(gens)} generations")
        for s, g in zip(states, gens):
            self._append_generation(s, g)
        results = list(self._executor().map(lambda sg: self._step_env(*sg), zip(states, gens)))
        for s, (obs, reward, terminated, truncated, _) in zip(states, results):
            self._append_observation(s, obs, reward, terminated, truncated)

    def advance(self, states: Sequence[RolloutState], params: SamplingParams) -> list[RolloutState]:
        """One round for every active state; returns the states that were active."""
        active = [s for s in states if not s.done]
        self.apply_round(active, self.generate_round(active, params))
        return active

    def finish(self, state: RolloutState) -> Trajectory:
        """The trajectory of a finished (or abandoned) episode."""
        return state.to_trajectory()

    def rollout(self, envs: Sequence[TextEnv], params: SamplingParams, *,
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
        t = s.trajectory
        start = len(t.token_ids)
        t.token_ids += ids
        t.loss_mask += [1] * len(ids)
        t.logprobs += lps
        t.entropies += ents
        t.turn_spans.append((start, len(t.token_ids)))
        t.text += g.text
        t.entropy_source = g.entropy_source
        t.finish_reason = g.finish_reason
        s.last_generation = g

    def _step_env(self, s: RolloutState, g: Generation) -> tuple[str, float, bool, bool, dict[str, Any]]:
        text = s.last_generation.text if s.last_generation is not None else g.text
        return s.env.step(text)

    def _append_observation(self, s: RolloutState, obs: str, reward: float, terminated: bool,
                            truncated: bool) -> None:
        t = s.trajectory
        played = s.last_turn
        if played is not None and played.is_tool_call:  # the env decides what a tool call is
            t.tool_calls.append(ToolCallRecord.from_turn(played, len(t.turn_spans) - 1))
        t.answer = _text_env(s.env).episode.answer
        turn = s.last_generation
        if terminated or truncated:
            t.terminated, t.truncated, t.reward = bool(terminated), bool(truncated), float(reward)
            if truncated and turn is not None and turn.finish_reason == "stop":
                t.finish_reason = "env_truncated"
            return
        if turn is not None and turn.finish_reason != "stop":
            # the model stopped without a tool call (EOS or length): the episode is over
            t.truncated = True
            t.reward = _env_final_reward(s.env)
            return
        ids = self.observation_ids(obs)
        room = self.max_response_tokens - s.response_len
        if len(ids) >= room:
            ids = ids[:room]
            t.truncated, t.finish_reason = True, "max_response_tokens"
            t.reward = _env_final_reward(s.env)
        t.token_ids += ids
        t.loss_mask += [0] * len(ids)
        t.logprobs += [0.0] * len(ids)
        t.entropies += [math.nan] * len(ids)
        t.text += _decode(self.tokenizer, ids) if t.truncated else obs


def _text_env(env: TextEnv) -> TextEnv:
    """The ``TextEnv`` under any Gymnasium wrappers."""
    return cast(TextEnv, env.unwrapped)


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False) if tokenizer is not None else ""


def _env_final_reward(env: TextEnv) -> float:
    """End an episode the agent stopped (EOS, length) and return the env's final reward for it
    (``TextEnv.end``)."""
    try:
        return float(_text_env(env).end())
    except Exception as exc:  # a reward function failing must not kill a batch
        log.warning("reward of an agent-ended episode failed: %s", exc)
        return 0.0
