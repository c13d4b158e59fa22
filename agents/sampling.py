"""Next-token sampling from logits, with the exact log-prob and entropy ARPO needs.

Which distribution the numbers describe (for every backend that has full logits):

- ``policy_logprobs(logits, T)`` is ``log_softmax(logits / T)`` of the model's raw logits at temperature
  ``T`` (``T = 1`` when decoding greedily). This is the policy pi_theta(. | context) at the sampling
  temperature: what a trainer recomputes for importance ratios, and what entropy-based branching reads.
- The reported entropy is that distribution's entropy and the reported log-prob is the sampled token's
  log-prob under it.
- The token is drawn from the same distribution after the sampling heuristics: repetition penalty (HF
  semantics: a seen token's logit is divided by the penalty when positive, multiplied when negative),
  then temperature, then top-k, then top-p (nucleus) filtering. Those heuristics are *not* reflected in the
  reported log-probs and entropies (a trainer cannot reproduce them from the policy alone).

Not covered: min-p, frequency/presence penalties, logit bias.
"""
from __future__ import annotations

from typing import Any

from arpo_env.extras import missing_extra

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("agents", exc, needed_by=__name__) from None


def policy_logprobs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / T)`` in float32 (``T <= 0`` means greedy and uses ``T = 1``)."""
    t = temperature if temperature > 0 else 1.0
    x = logits.float()
    if t != 1.0:
        x = x / t
    return torch.log_softmax(x, dim=-1)


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last axis of log-probabilities (0 * log 0 counted as 0)."""
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF's repetition penalty: logits of tokens with ``seen`` True are divided (positive) or multiplied
    (negative) by ``penalty``. ``seen`` is a bool mask shaped like ``logits``."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def _outside_nucleus(sorted_logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """For logits sorted best first: True where the mass of the tokens strictly before reaches ``top_p``."""
    probs = torch.softmax(sorted_logits, dim=-1)
    return (probs.cumsum(-1) - probs) >= top_p


def filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k and outside the smallest nucleus of mass ``top_p`` to -inf (the most
    likely token always survives)."""
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        drop_sorted = _outside_nucleus(sorted_logits, top_p)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, seen: torch.Tensor | None, *, temperature: float, top_k: int,
                top_p: float, repetition_penalty: float, generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one token per row of ``logits`` (B, V).

    Returns ``(tokens, logprobs, entropies)``: the chosen ids (B,), their log-prob under the policy
    distribution ``log_softmax(logits / T)`` and that distribution's entropy (see the module docstring).
    ``temperature <= 0`` decodes greedily (argmax after the repetition penalty).
    """
    logp = policy_logprobs(logits, temperature)
    ent = entropy_from_logprobs(logp)
    x = logits.float()
    if seen is not None:
        x = apply_repetition_penalty(x, seen, repetition_penalty)
    if temperature <= 0:
        tokens = x.argmax(-1)
    elif 0 < top_k < x.shape[-1]:
        tokens = _sample_top_k(x / temperature, top_k, top_p, generator)
    else:
        x = filter_top_k_top_p(x / temperature, top_k, top_p)
        probs = torch.softmax(x, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1), ent


def _sample_top_k(x: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Top-k (then top-p) sampling drawn among the k candidates only: the distribution of
    :func:`filter_top_k_top_p` + a full-vocabulary draw, without the vocabulary-wide sort and random numbers
    (those were 12% of a CPU decode step of SmolLM2 at batch 16). Ties at the k-th logit keep exactly k."""
    vals, idx = torch.topk(x, top_k, dim=-1)  # sorted, best first
    if 0.0 < top_p < 1.0:
        vals = vals.masked_fill(_outside_nucleus(vals, top_p), float("-inf"))
    choice = torch.multinomial(torch.softmax(vals, dim=-1), 1, generator=generator)
    return idx.gather(-1, choice).squeeze(-1)


def make_generator(seed: int | None, device: Any) -> torch.Generator | None:
    """A generator on ``device`` seeded with ``seed`` (``None``: the global RNG is used)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
