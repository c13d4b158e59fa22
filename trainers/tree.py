"""The ARPO rollout tree: which leaves share which prefix, token for token.

A prompt's rollout ends with M leaves (:class:`arpo_env.Trajectory`). A leaf sampled from scratch has
``parent=None``; a leaf forked from trajectory ``p`` at token index ``b`` has ``parent=p.id`` and
``branch_at=b``: it holds ``p``'s tokens ``[0, b)`` (everything up to and including a tool result) and its own
tokens after. The parent keeps going and is itself a leaf, so every trajectory is a leaf.

*Shared* is defined by the tree, not by coincidence of token values: two leaves share position ``t`` when
both inherited it from the same trajectory. Leaves sampled independently from the same prompt share only
the prompt. :func:`shared_prefix_len` computes this; :class:`RolloutTree` gathers a group's leaves and the
branch events, and derives the per-token sharing that hard advantage attribution and the
"tokens saved" statistic need.

Not covered: sharing across prompts (groups are independent).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from arpo_env.agent import Trajectory


@dataclass
class BranchEvent:
    """One fork decision that succeeded."""

    parent: int
    """Id of the trajectory forked."""
    child: int
    """Id of the new trajectory."""
    branch_at: int
    """Token index where the two diverge (the shared prefix is ``token_ids[:branch_at]``)."""
    round: int
    """Rollout round of the fork."""
    entropy: float
    """The segment entropy H_t that triggered the branch."""
    delta: float
    """H_t - H_initial of the parent."""
    probability: float
    """The branch probability used (after clipping and any AEPO penalty)."""


def lineage(traj: Trajectory, by_id: dict[int, Trajectory]) -> dict[int, int]:
    """``{owner id: end}``: for each ancestor (and the leaf itself), the end index of the span of this leaf's
    tokens that it owns. The leaf owns ``[branch_at, len)``; its parent owns up to ``branch_at``, etc."""
    out: dict[int, int] = {}
    node, end = traj, len(traj.token_ids)
    seen = set()
    while True:
        if node.id in seen:
            raise ValueError(f"cycle in the rollout tree at trajectory {node.id}")
        seen.add(node.id)
        out[node.id] = end
        if node.parent is None:
            return out
        if node.parent not in by_id:
            raise ValueError(f"trajectory {node.id} names parent {node.parent}, which is not in the group")
        end = int(node.branch_at if node.branch_at is not None else 0)
        node = by_id[node.parent]


def shared_prefix_len(a: Trajectory, b: Trajectory, by_id: dict[int, Trajectory]) -> int:
    """Number of leading tokens ``a`` and ``b`` share through the tree (at least the prompt)."""
    if a.id == b.id:
        return len(a.token_ids)
    la, lb = lineage(a, by_id), lineage(b, by_id)
    common = [min(la[k], lb[k]) for k in la.keys() & lb.keys()]
    return max(common) if common else min(a.prompt_len, b.prompt_len)


@dataclass
class RolloutTree:
    """One prompt's rollout: its M leaves, in id order, and the branch events."""

    leaves: list[Trajectory]
    events: list[BranchEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_id = {t.id: t for t in self.leaves}
        if len(self.by_id) != len(self.leaves):
            raise ValueError("trajectory ids in a group must be unique")
        n = len(self.leaves)
        self.lcp = [[shared_prefix_len(self.leaves[i], self.leaves[j], self.by_id) for j in range(n)]
                    for i in range(n)]

    @property
    def size(self) -> int:
        return len(self.leaves)

    def sharers(self, i: int, t: int) -> list[int]:
        """Indices of the leaves that share token ``t`` of leaf ``i`` (``i`` included)."""
        return [j for j in range(self.size) if self.lcp[i][j] > t]

    def owner_mask(self, i: int) -> list[int]:
        """1 at the tokens of leaf ``i`` that it is the first (lowest index) of its sharers to hold: training
        on these masks trains every shared token exactly once."""
        start = max((self.lcp[i][j] for j in range(i)), default=0)
        n = len(self.leaves[i].token_ids)
        return [0] * min(start, n) + [1] * max(0, n - start)

    def response_tokens(self) -> int:
        """Tokens after the prompt summed over the leaves (what M independent samples would hold)."""
        return sum(len(t.token_ids) - t.prompt_len for t in self.leaves)

    def unique_response_tokens(self) -> int:
        """Tokens after the prompt counted once per tree node (what the tree really holds)."""
        return sum(sum(m[t.prompt_len:]) for t, m in ((self.leaves[i], self.owner_mask(i))
                                                     for i in range(self.size)))

    def generated_tokens(self) -> tuple[int, int]:
        """(model-generated tokens over all leaves, generated tokens counted once per tree node)."""
        total = unique = 0
        for i, t in enumerate(self.leaves):
            own = self.owner_mask(i)
            total += sum(t.loss_mask)
            unique += sum(m * o for m, o in zip(t.loss_mask, own))
        return total, unique


def check_prefix_sharing(tree: RolloutTree) -> None:
    """Raise ``AssertionError`` unless every pair of leaves agrees token for token (ids, masks, log-probs)
    on the prefix the tree says they share."""
    for i, a in enumerate(tree.leaves):
        for j, b in enumerate(tree.leaves):
            n = tree.lcp[i][j]
            for name in ("token_ids", "loss_mask", "logprobs"):
                if getattr(a, name)[:n] != getattr(b, name)[:n]:
                    raise AssertionError(f"leaves {a.id} and {b.id} differ in {name} within their shared "
                                         f"prefix of {n} tokens")


def group_by_prompt(trees: Sequence[RolloutTree]) -> list[Trajectory]:
    """All leaves of all trees, flattened in order."""
    return [t for tree in trees for t in tree.leaves]
