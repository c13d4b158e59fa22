"""``ScriptedAgent``: plays episodes from a Python policy instead of a model (tests, harness benchmarks).

It implements the ``arpo_env.Agent`` protocol with the same lockstep loop shape as :class:`agents.Agent`
(all envs reset, then one round per turn with the env steps run concurrently), so benchmark harnesses
can measure their own overhead without a model. Token ids come from a fixed, model-free ``encode``
(default: the UTF-8 bytes of the text), so trajectories satisfy ``Trajectory.check()`` and look like a
model's: prompt ids (mask 0), action ids (mask 1, log-prob 0.0, entropy NaN), observation ids (mask 0).
Tool calls are recorded as the env decides them (``TextEnv.last_turn.is_tool_call``), as the LLM agent does.

The default policy replays ``env.example_actions()`` (drawn right after reset), which for the calculator
solves the task with the tool; :func:`arpo_env.benchmarks.oracle.oracle_policy` answers from the gold answer.

Not covered: log-probs and entropies (``EntropySource.NONE``).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from arpo_env.agent import EntropySource, SamplingParams, ToolCallRecord, Trajectory
from arpo_env.env import TextEnv

Policy = Callable[[Any, int, str], str]
"""``policy(env, turn_index, observation) -> action text``; the observation is the prompt at turn 0."""


def byte_ids(text: str) -> list[int]:
    """The scripted agent's token ids: UTF-8 bytes."""
    return list(text.encode("utf-8"))


def example_policy(env: Any, turn: int, observation: str) -> str:
    """Replays the env's ``example_actions()`` (the last one repeats if the episode runs longer)."""
    base = getattr(env, "unwrapped", env)
    actions = getattr(base, "_scripted_actions", None)
    if actions is None or turn == 0:
        actions = base._scripted_actions = list(base.example_actions())
    return actions[min(turn, len(actions) - 1)]


class ScriptedAgent:
    """An ``arpo_env.Agent`` whose turns come from ``policy`` (default: :func:`example_policy`).

    ``policy`` may also be a list of texts, played in order (the last repeats). ``max_turns`` caps
    episodes whose env never ends them. ``encode`` maps text to token ids (default :func:`byte_ids`);
    with ``chat_prompt`` the prompt ids encode the reset's chat messages (``<|role|>\ncontent\n`` each,
    then ``<|assistant|>\n``), without it only the user prompt.
    """

    def __init__(self, policy: Policy | Sequence[str] | None = None, *, tool_workers: int = 16,
                 max_turns: int = 64, encode: Callable[[str], list[int]] = byte_ids, chat_prompt: bool = True):
        if policy is None:
            policy = example_policy
        elif not callable(policy):
            texts = list(policy)
            if not texts:
                raise ValueError("a scripted policy needs at least one action")
            def replay(env: Any, turn: int, obs: str, _t: list[str] = texts) -> str:
                return _t[min(turn, len(_t) - 1)]
            policy = replay
        self.policy: Policy = policy
        self.tool_workers = max(1, tool_workers)
        self.max_turns = max_turns
        self.encode = encode
        self.chat_prompt = chat_prompt

    def rollout(self, envs: Sequence[Any], params: SamplingParams | None = None, *,
                options: Sequence[dict[str, Any] | None] | None = None,
                seeds: Sequence[int | None] | None = None) -> list[Trajectory]:
        """Reset every env, play all episodes in lockstep (env steps concurrent), one trajectory per env."""
        n = len(envs)
        options = list(options) if options is not None else [None] * n
        seeds = list(seeds) if seeds is not None else [None] * n
        if len(options) != n or len(seeds) != n:
            raise ValueError("options and seeds need one entry per env")
        with ThreadPoolExecutor(self.tool_workers) as pool:
            starts = list(pool.map(lambda i: envs[i].reset(seed=seeds[i], options=options[i]), range(n)))
            trajs, last_obs = [], []
            for i, (prompt, info) in enumerate(starts):
                messages = info.get("messages") or [{"role": "user", "content": prompt}]
                text = ("".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
                        if self.chat_prompt else prompt)
                ids = self.encode(text)
                trajs.append(Trajectory(token_ids=ids, prompt_len=len(ids), loss_mask=[0] * len(ids),
                                        logprobs=[0.0] * len(ids), entropies=[math.nan] * len(ids),
                                        task=copy.deepcopy(info.get("task", {})), id=i,
                                        entropy_source=EntropySource.NONE))
                last_obs.append(prompt)
            turn = 0
            active = list(range(n))
            while active:
                actions = [self.policy(envs[i], turn, last_obs[i]) for i in active]
                results = list(pool.map(lambda ia: envs[ia[0]].step(ia[1]), zip(active, actions)))
                still = []
                for i, action, (obs, reward, term, trunc, _) in zip(active, actions, results):
                    t = trajs[i]
                    a_ids = self.encode(action)
                    start = len(t.token_ids)
                    t.token_ids += a_ids
                    t.loss_mask += [1] * len(a_ids)
                    t.logprobs += [0.0] * len(a_ids)
                    t.entropies += [math.nan] * len(a_ids)
                    t.turn_spans.append((start, len(t.token_ids)))
                    env = cast(TextEnv, envs[i].unwrapped)
                    played = env.last_turn
                    if played is not None and played.is_tool_call:  # the env decides what a tool call is
                        t.tool_calls.append(ToolCallRecord.from_turn(played, turn))
                    t.answer = env.episode.answer
                    t.text += action
                    if term or trunc or turn + 1 >= self.max_turns:
                        t.terminated, t.truncated = bool(term), bool(trunc) or not term
                        t.reward, t.finish_reason = float(reward), "stop"
                        if not (term or trunc):
                            t.finish_reason = "max_turns"
                        continue
                    o_ids = self.encode(obs)
                    t.token_ids += o_ids
                    t.loss_mask += [0] * len(o_ids)
                    t.logprobs += [0.0] * len(o_ids)
                    t.entropies += [math.nan] * len(o_ids)
                    t.text += obs
                    last_obs[i] = obs
                    still.append(i)
                active = still
                turn += 1
        for t in trajs:
            t.check()
        return trajs
