"""Advantage attribution over a rollout tree (ARPO.md sections 4 and 6).

- :func:`grpo_advantages`: A_i = (r_i - mean(r)) / (std(r) + eps) over one prompt's M leaves, std unbiased
  (ddof 1). With M = 1 or all rewards equal every advantage is 0.
- :func:`token_advantages` with ``soft`` (ARPO's reported setting): A_i on every token of leaf i; the loss
  mask is the trajectory's (model tokens only). A shared prefix then appears in several sequences and is
  pushed by the sum of its sharers' advantages.
- ``hard``: a token shared by d leaves gets the mean advantage of those d; unique tokens keep their own.
  Each shared token is trained once: only its first holder (lowest leaf index) has it in its train mask,
  so the token-mean counts it once.
- :func:`entropy_aware` (AEPO): A_tok *= 1 + w * z(H_tok), with z the z-score of the token's rollout entropy
  over every trained token of the batch. Tokens without an entropy (NaN) keep their advantage.

Worked example (tested): two leaves forked after a shared segment S, rewards 1 and 0: GRPO gives
+0.7071 and -0.7071. Soft: S is trained twice, once with each sign (net push 0); the unique tails get
+-0.7071. Hard: S is trained once with advantage 0; the tails get +-0.7071.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from arpo_env.trainers.tree import RolloutTree


def grpo_advantages(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Group-normalised advantages of one prompt's leaves (unbiased std)."""
    n = len(rewards)
    if n == 0:
        return []
    mean = sum(rewards) / n
    if n == 1:
        return [0.0]
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return [(r - mean) / (std + eps) for r in rewards]


@dataclass
class TokenAdvantages:
    """Per-token advantages and train masks of one leaf, aligned with its ``token_ids``."""

    advantages: list[float]
    train_mask: list[int]
    """1 where the token enters the loss (model-generated, and for ``hard`` owned by this leaf)."""


def token_advantages(tree: RolloutTree, leaf_advantages: Sequence[float], mode: str = "soft") -> list[TokenAdvantages]:
    """Per-token advantages for every leaf of ``tree`` (see module docstring for ``soft`` and ``hard``)."""
    if len(leaf_advantages) != tree.size:
        raise ValueError(f"{len(leaf_advantages)} advantages for {tree.size} leaves")
    out = []
    for i, leaf in enumerate(tree.leaves):
        n = len(leaf.token_ids)
        if mode == "soft":
            out.append(TokenAdvantages([float(leaf_advantages[i])] * n, list(leaf.loss_mask)))
        elif mode == "hard":
            # sharers of token t: leaves j with lcp[i][j] > t; the set only shrinks as t grows, so walk the
            # distinct lcp values in increasing order
            row = tree.lcp[i]
            adv = [0.0] * n
            cuts = sorted(set(min(v, n) for v in row) | {0})
            for lo, hi in zip(cuts, cuts[1:]):
                members = [j for j in range(tree.size) if row[j] > lo]
                value = sum(leaf_advantages[j] for j in members) / len(members)
                for t in range(lo, hi):
                    adv[t] = value
            own = tree.owner_mask(i)
            out.append(TokenAdvantages(adv, [m * o for m, o in zip(leaf.loss_mask, own)]))
        else:
            raise ValueError(f"advantage mode must be 'soft' or 'hard', got {mode!r}")
    return out


def entropy_aware(advantages: Sequence[list[float]], entropies: Sequence[Sequence[float]],
                  masks: Sequence[Sequence[int]], weight: float = 0.2) -> tuple[list[list[float]], dict[str, float]]:
    """AEPO's entropy-aware advantage over a batch: returns the new per-token advantages and the mean/std of
    the entropies used. Raises ``ValueError`` if no trained token has a finite entropy (the option must
    never be skipped silently)."""
    values = [h for ent, m in zip(entropies, masks) for h, k in zip(ent, m) if k and math.isfinite(h)]
    if not values:
        raise ValueError("entropy_aware_advantage: no trained token has a rollout entropy "
                         "(the backend returned none); disable the option or use a backend with entropies")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((h - mean) ** 2 for h in values) / len(values))
    out = []
    for adv, ent, m in zip(advantages, entropies, masks):
        row = []
        for a, h, k in zip(adv, ent, m):
            if k and math.isfinite(h):
                z = (h - mean) / std if std > 0 else 0.0
                a = a * (1.0 + weight * z)
            row.append(a)
        out.append(row)
    return out, {"entropy_mean": mean, "entropy_std": std}
