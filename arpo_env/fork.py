"""Fork kinds and ``check_fork``: the contract that lets a trainer branch an episode mid-way.

Kinds (ARPO.md section 5), declared by every env as ``fork_kind``:

- ``stateless``: tools hold no episode state; a fork shares them and copies the episode bookkeeping.
- ``state``: all state is plain data; a fork deep-copies the env (minus attributes named in
  ``fork_shared``, which siblings share, e.g. a read-only index or a cache handle).
- ``replay``: a fork re-creates the env and replays the recorded actions (correct for deterministic envs;
  cost grows with depth).
- ``process``: tools live in worker processes forked at the OS level (copy-on-write); tools implement
  :class:`arpo_env.tools.ForkableTool`.
- ``external``: the world (live web) cannot be forked; siblings share a record-and-replay cache.

``check_fork`` verifies *independence* (acting on the child never changes the parent, and vice versa) and,
for deterministic envs, *equivalence* (the same actions give the same observations, rewards and flags as
an unforked env). It does not prove the absence of shared state the probe actions never touch: pick
``example_actions`` that read and write the env's state.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class ForkKind(str, enum.Enum):
    """How an env forks (see module docstring)."""

    STATELESS = "stateless"
    STATE = "state"
    REPLAY = "replay"
    PROCESS = "process"
    EXTERNAL = "external"


class ForkableEnv(Protocol):
    """What :func:`check_fork` uses of an env (``arpo_env.TextEnv`` is one; this module does not import it,
    so ``arpo_env.env`` can import :class:`ForkKind` from here without a circle)."""

    fork_kind: ForkKind
    deterministic: bool
    spec: Any
    episode: Any
    """The episode record; ``episode.snapshot()`` compares two points of an episode."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any: ...
    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]: ...
    def fork(self) -> ForkableEnv: ...
    def fresh_copy(self) -> ForkableEnv: ...
    def example_actions(self) -> Sequence[str]: ...
    def close(self) -> None: ...


class ForkCheckError(AssertionError):
    """``check_fork`` found a fork that is not independent or not equivalent."""


@dataclass
class ForkReport:
    """What ``check_fork`` ran and found."""

    env_id: str
    fork_kind: str
    deterministic: bool
    prefix: list[str]
    probe: list[str]
    outputs: list[tuple[str, float, bool, bool]] = field(default_factory=list)


def _run(env: ForkableEnv, actions: Sequence[str]) -> list[tuple[str, float, bool, bool]]:
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((obs, float(reward), bool(terminated), bool(truncated)))
        if terminated or truncated:
            break
    return out


def _prepare(env: ForkableEnv, seed: int, options: Mapping[str, Any] | None, prefix: Sequence[str]) -> None:
    env.reset(seed=seed, options=dict(options) if options else None)
    for a in prefix:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            raise ValueError(f"check_fork: the episode ended during the prefix at action {a!r}; "
                             "give actions whose first half keeps the episode running")


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise ForkCheckError(msg)


def check_fork(env: Any, actions: Sequence[str] | None = None, *, seed: int = 0,
               options: Mapping[str, Any] | None = None) -> ForkReport:
    """Check that ``env.fork()`` is independent and (for deterministic envs) equivalent.

    ``actions`` (default: ``env.example_actions()``) are split in half: the first half is played before
    the fork (the prefix), the second half (the probe) is played on child, parent and a fresh reference
    env. Raises :class:`ForkCheckError` on the first violation; returns a :class:`ForkReport`.
    The env is reset; wrappers are looked through (``env.unwrapped``).
    """
    base: ForkableEnv = env.unwrapped
    base.reset(seed=seed, options=dict(options) if options else None)
    acts = list(actions) if actions is not None else list(base.example_actions())
    _expect(len(acts) >= 2, "check_fork needs at least two actions (a prefix and a probe)")
    split = max(1, len(acts) // 2)
    prefix, probe = acts[:split], acts[split:]
    report = ForkReport(getattr(base.spec, "id", type(base).__name__), base.fork_kind.value,
                        base.deterministic, prefix, probe)

    reference = base.fresh_copy()
    try:
        _prepare(reference, seed, options, prefix)
        expected = _run(reference, probe)
    finally:
        reference.close()
    report.outputs = expected

    # Child acts first, then the parent: the parent must not see the child's actions.
    _prepare(base, seed, options, prefix)
    snap = base.episode.snapshot()
    child = base.fork()
    try:
        _expect(child is not base, "fork() returned the env itself")
        _expect(child.episode.snapshot() == snap, "the fork is not at the parent's point of the episode")
        child_out = _run(child, probe)
        _expect(base.episode.snapshot() == snap, "acting on the child changed the parent's episode record")
        parent_out = _run(base, probe)
    finally:
        child.close()
    if base.deterministic:
        _expect(child_out == expected, f"child diverged from an unforked env:\n{child_out}\n!=\n{expected}")
        _expect(parent_out == expected,
                f"parent diverged after the child acted (shared state?):\n{parent_out}\n!=\n{expected}")

    # Parent acts first, then the child: the child must not see the parent's actions.
    _prepare(base, seed, options, prefix)
    child = base.fork()
    try:
        csnap = child.episode.snapshot()
        parent_out = _run(base, probe)
        _expect(child.episode.snapshot() == csnap, "acting on the parent changed the child's episode record")
        child_out = _run(child, probe)
    finally:
        child.close()
    if base.deterministic:
        _expect(child_out == expected,
                f"child diverged after the parent acted (shared state?):\n{child_out}\n!=\n{expected}")
    return report
