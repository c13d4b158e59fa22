"""Entropy-based adaptive rollout (ARPO.md section 3) over forked environments.

Per prompt, a budget of M trajectories (leaves), N of them sampled from scratch first. Round by round:

1. every active trajectory of every prompt generates one segment in one backend call (until a tool's
   closing tag, ``</answer>``, EOS or a length limit), then every env is stepped concurrently and the tool
   results appended (:class:`agents.Agent`'s ``generate_round``/``apply_round``: token-in/token-out);
2. each segment's entropy H is measured over its first k generated tokens; a trajectory's first segment
   sets its H_initial (a fork inherits its parent's). Table reset per call of :meth:`ARPORollout.run`;
3. each trajectory that just made a tool call and is still active gets up to Z = beam_size - 1 fork
   attempts while its prompt has fewer than M trajectories, each succeeding with probability
   P = clip(alpha + beta * (H - H_initial), 0, 1) (times AEPO's branch penalty max(0, 1 - 0.05 c) when on).
   A fork copies tokens, masks, log-probs and counters up to and including the tool result and forks the
   environment (``env.fork()``), so a stateful session continues independently in each branch;
4. a prompt whose trajectories have all finished with fewer than M gets all missing ones from scratch in
   the same round. Nothing is ever duplicated; every prompt ends with exactly M leaves.

Without branching (``grpo``, greedy decoding with temperature 0, evaluation) all M start from scratch.

Entropy measures (``entropy_measure``): ``mean`` is the mean per-token entropy in nats over the window
(exact with the ``hf`` backend; renormalised top-k with servers, as ``EntropySource`` says); ``compat`` is the
public code's SUM over the window divided by ln|V| (its top-10 truncation is reproduced only where the
backend itself returns top-10 entropies). A segment without finite entropies (``EntropySource.NONE``)
gets H = H_initial, so P = alpha.

AEPO dynamic split: a probe (one trajectory per prompt, two rounds, no branching) measures H_root (its
first segment) and H_tool (the segment after its first tool result, H_root if none), then
N = clamp(floor(M * sigmoid(s * (H_root - H_tool))) + 1, 1, M); the probe is kept as one of the N.

Env workers (:mod:`arpo_env.env_workers`): when the worker owning a prompt's envs dies (``WorkerDied``
from a reset or fork, or a proxy whose step reported ``died``), that prompt's whole tree is dropped, its envs
closed, and its N initial trajectories sampled again (``RolloutStats.resampled``); at most
``MAX_RESAMPLES`` times per call, then ``RuntimeError``.

Not covered: branching on anything but tool calls; async/streaming rollouts (rounds are lockstep).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

import numpy as np

from arpo_env.agent import RoundAgent, S, SamplingParams
from arpo_env.env import TextEnv
from arpo_env.env_workers import WorkerDied
from arpo_env.task import Task
from arpo_env.trainers.config import BranchingConfig
from arpo_env.trainers.tree import BranchEvent, RolloutTree


def segment_entropy(entropies: Sequence[float], k: int, measure: str = "mean", vocab_size: int = 0) -> float:
    """H of one generated segment from its per-token entropies (NaN when none is finite)."""
    window = [h for h in list(entropies)[:k] if math.isfinite(h)]
    if not window:
        return math.nan
    if measure == "mean":
        return sum(window) / len(window)
    if measure == "compat":
        if vocab_size < 2:
            raise ValueError("the compat entropy measure needs vocab_size >= 2")
        return sum(window) / math.log(vocab_size)
    raise ValueError(f"entropy measure must be 'mean' or 'compat', got {measure!r}")


def branch_probability(h: float, h_initial: float, alpha: float, beta: float,
                       penalty: float = 1.0) -> float:
    """clip(alpha + beta * (h - h_initial), 0, 1) * penalty; a NaN entropy counts as no change."""
    delta = 0.0 if not (math.isfinite(h) and math.isfinite(h_initial)) else h - h_initial
    return min(1.0, max(0.0, alpha + beta * delta)) * penalty


def dynamic_initial_rollouts(m: int, h_root: float, h_tool: float, scale: float = 0.5) -> int:
    """AEPO: N = clamp(floor(M * sigmoid(scale * (H_root - H_tool))) + 1, 1, M)."""
    d = 0.0 if not (math.isfinite(h_root) and math.isfinite(h_tool)) else h_root - h_tool
    return max(1, min(m, int(math.floor(m / (1.0 + math.exp(-scale * d)))) + 1))


@dataclass
class RolloutStats:
    """What one rollout did (summed over prompts)."""

    rounds: int = 0
    trajectories_started: int = 0
    topups: int = 0
    """From-scratch trajectories started after the initial N (budget fill)."""
    branch_attempts: int = 0
    branches: int = 0
    attempts: list[tuple[float, bool]] = field(default_factory=list)
    """(H - H_initial, succeeded) for every fork draw (the statistical test reads these)."""
    branch_entropies: list[float] = field(default_factory=list)
    """H at every successful branch point."""
    initial_n: list[int] = field(default_factory=list)
    """N used per prompt."""
    gen_seconds: float = 0.0
    tool_seconds: float = 0.0
    generated_tokens: int = 0
    """Tokens the backend generated (each once: shared prefixes are generated once)."""
    tool_calls: int = 0
    """Tool calls executed (each once: a fork inherits its parent's calls without running them again, so for
    ``arpo`` this is at most the sum of the leaves' ``len(tool_calls)``; for ``grpo`` it equals it)."""
    resampled: int = 0
    """Prompt trees dropped and sampled again because their env worker died."""


@dataclass
class RolloutBatch:
    """The result: one tree per prompt (exactly M leaves each) and the stats."""

    trees: list[RolloutTree]
    stats: RolloutStats


@dataclass
class _Group(Generic[S]):
    options: dict[str, Any]
    states: list[S] = field(default_factory=list)
    events: list[BranchEvent] = field(default_factory=list)
    h_initial: dict[int, float] = field(default_factory=dict)
    streak: int = 0
    """Consecutive rounds in which this prompt grew by a branch (AEPO penalty)."""
    target_n: int = 0


class ARPORollout(Generic[S]):
    """Runs the adaptive rollout with a :class:`arpo_env.RoundAgent` (``agents.Agent``, any backend) over
    fresh envs; its episode states are :class:`arpo_env.EpisodeState` s.

    ``make_env()`` must return a new, independent env each call (an ``arpo_env.make`` closure).
    ``rng`` drives the branch draws only (sampling randomness is the backend's).
    """

    def __init__(self, agent: RoundAgent[S], config: BranchingConfig, make_env: Callable[[], TextEnv],
                 rng: np.random.Generator | None = None, *, vocab_size: int = 0):
        if config.initial_rollouts < 1 or config.initial_rollouts > config.rollouts_per_prompt:
            raise ValueError("initial_rollouts must be in [1, rollouts_per_prompt]")
        self.agent, self.cfg, self.make_env = agent, config, make_env
        self.vocab_size = vocab_size  # |V| for the ``compat`` entropy measure
        self.rng = rng if rng is not None else np.random.default_rng(0)

    MAX_RESAMPLES = 8
    """Trees re-sampled after env-worker deaths per :meth:`run` before giving up."""

    # ----- pieces ----------------------------------------------------------------------------------------
    def _start(self, group: _Group[S], count: int, stats: RolloutStats) -> list[S]:
        new = []
        for _ in range(count):
            state = self.agent.start(self.make_env(), options=dict(group.options), id=len(group.states))
            group.states.append(state)
            new.append(state)
        stats.trajectories_started += count
        return new

    def _start_or_resample(self, group: _Group[S], count: int, stats: RolloutStats,
                           groups: Sequence[_Group[S]]) -> None:
        try:
            self._start(group, count, stats)
        except WorkerDied:
            self._resample(groups, stats, force=group)

    @staticmethod
    def _lost(group: _Group[S]) -> bool:
        """An env of the group's tree died with its worker (an active one, or one whose step it broke)."""
        return any(getattr(s.env, "died", None) is not None or (not s.done and getattr(s.env, "lost", False))
                   for s in group.states)

    def _resample(self, groups: Sequence[_Group[S]], stats: RolloutStats, force: _Group[S] | None = None) -> None:
        """Drop and re-sample every tree that lost an env worker (and ``force``), retrying bounded times."""
        while True:
            hit = [g for g in groups if g is force or self._lost(g)]
            if not hit:
                return
            for g in hit:
                if stats.resampled >= self.MAX_RESAMPLES:
                    raise RuntimeError(f"env workers died {stats.resampled} times in one rollout; giving up")
                stats.resampled += 1
                for s in g.states:
                    try:
                        s.env.close()
                    except Exception:  # noqa: BLE001 - a dead env's close must not stop the re-sampling
                        pass
                g.states, g.events, g.h_initial, g.streak = [], [], {}, 0
            force = None
            for g in hit:
                try:
                    self._start(g, g.target_n, stats)
                except WorkerDied:
                    force = g
                    break

    def _h(self, state: S) -> float:
        gen = state.last_generation
        return segment_entropy(gen.entropies if gen is not None else [], self.cfg.entropy_window,
                               self.cfg.entropy_measure, self.vocab_size)

    def _round(self, states: Sequence[S], params: SamplingParams, stats: RolloutStats) -> None:
        t0 = time.perf_counter()
        gens = self.agent.generate_round(states, params)
        t1 = time.perf_counter()
        self.agent.apply_round(states, gens)
        stats.tool_seconds += time.perf_counter() - t1
        stats.gen_seconds += t1 - t0
        stats.generated_tokens += sum(len(g.token_ids) for g in gens)
        stats.tool_calls += sum(1 for s in states if s.last_turn is not None and s.last_turn.is_tool_call)
        stats.rounds += 1

    # ----- the algorithm ---------------------------------------------------------------------------------
    def run(self, tasks: Sequence[Task | Mapping[str, Any]], params: SamplingParams, *,
            evaluation: bool = False) -> RolloutBatch:
        """Roll out every task and return one tree of exactly M leaves per task. A task is a
        :class:`arpo_env.Task` or ``reset`` options (``{"task": Task, "system_prompt"?}`` or the plain
        ``{"question", "answer", ...}`` form)."""
        cfg, stats = self.cfg, RolloutStats()
        m = cfg.rollouts_per_prompt
        branching = cfg.branching and not evaluation and params.temperature > 0
        # fresh H_initial tables for every call
        groups: list[_Group[S]] = [_Group(options={"task": t} if isinstance(t, Task) else dict(t)) for t in tasks]

        if branching and cfg.dynamic_split:
            self._probe(groups, params, stats)
        for g in groups:
            if not g.target_n:
                g.target_n = cfg.initial_rollouts if branching else m
            self._start_or_resample(g, g.target_n - len(g.states), stats, groups)
            stats.initial_n.append(g.target_n)

        try:
            while True:
                for g in groups:  # budget fill: all missing slots of a finished prompt in the same round
                    if len(g.states) < m and all(s.done for s in g.states):
                        stats.topups += m - len(g.states)
                        self._start_or_resample(g, m - len(g.states), stats, groups)
                owners = [(g, s) for g in groups for s in g.states if not s.done]
                if not owners:
                    break
                self._round([s for _, s in owners], params, stats)
                self._resample(groups, stats)
                grew: set[int] = set()
                for g, s in owners:
                    if not any(x is s for x in g.states):  # its tree was re-sampled
                        continue
                    h = self._h(s)
                    if s.id not in g.h_initial:
                        g.h_initial[s.id] = h
                    turn = s.last_turn  # the env's own fact: this round's turn counted as a tool call
                    if branching and turn is not None and turn.is_tool_call and not s.done:
                        try:
                            if self._try_branch(g, s, h, stats):
                                grew.add(id(g))
                        except WorkerDied:
                            self._resample(groups, stats, force=g)
                for g in groups:
                    g.streak = g.streak + 1 if id(g) in grew else 0
            trees = []
            for g in groups:
                assert len(g.states) == m, "every prompt ends with exactly M trajectories"
                trees.append(RolloutTree([self.agent.finish(s) for s in g.states], g.events))
            return RolloutBatch(trees, stats)
        finally:
            closed: set[int] = set()
            for g in groups:
                for s in g.states:
                    if id(s.env) not in closed:
                        closed.add(id(s.env))
                        s.env.close()
            # every episode of the batch is finished: free the backend's KV reuse cache (the hf backend's)
            release = getattr(getattr(self.agent, "backend", None), "clear_kv_cache", None)
            if callable(release):
                release()

    def _try_branch(self, g: _Group[S], s: S, h: float, stats: RolloutStats) -> bool:
        cfg = self.cfg
        h0 = g.h_initial.get(s.id, h)
        penalty = max(0.0, 1.0 - cfg.branch_penalty_rate * g.streak) if cfg.branch_penalty else 1.0
        p = branch_probability(h, h0, cfg.alpha, cfg.beta, penalty)
        delta = h - h0 if math.isfinite(h) and math.isfinite(h0) else 0.0
        made = False
        for _ in range(cfg.beam_size - 1):
            if len(g.states) >= cfg.rollouts_per_prompt:
                break
            ok = bool(self.rng.random() < p)
            stats.branch_attempts += 1
            stats.attempts.append((delta, ok))
            if not ok:
                continue
            child = s.fork(new_id=len(g.states))
            assert child.branch_at is not None, "a fork records its branch point"
            g.states.append(child)
            g.h_initial[child.id] = h0
            g.events.append(BranchEvent(parent=s.id, child=child.id, branch_at=child.branch_at,
                                        round=stats.rounds, entropy=h, delta=delta, probability=p))
            stats.branches += 1
            stats.branch_entropies.append(h)
            made = True
        return made

    def _probe(self, groups: list[_Group[S]], params: SamplingParams, stats: RolloutStats) -> None:
        """AEPO dynamic split: one probe trajectory per prompt, up to two rounds, sets each prompt's N."""
        probes = [self._start(g, 1, stats)[0] for g in groups]
        h_root = [math.nan] * len(groups)
        h_tool = [math.nan] * len(groups)
        for r in range(2):
            live = [(i, s) for i, s in enumerate(probes)
                    if not s.done and (r == 0 or (s.last_turn is not None and s.last_turn.is_tool_call))]
            if not live:
                break
            self._round([s for _, s in live], params, stats)
            for i, s in live:
                h = self._h(s)
                if r == 0:
                    h_root[i] = h
                    groups[i].h_initial[s.id] = h
                else:
                    h_tool[i] = h
        for i, g in enumerate(groups):
            ht = h_tool[i] if math.isfinite(h_tool[i]) else h_root[i]
            g.target_n = dynamic_initial_rollouts(self.cfg.rollouts_per_prompt, h_root[i], ht,
                                                  self.cfg.dynamic_split_scale)
