"""Policy-gradient losses on padded ``[batch, time]`` tensors (ARPO.md sections 4 and 6).

Per token, with ratio rho = exp(logp - old_logp) and advantage A:

- PPO clipped surrogate: l1 = -A * rho, l2 = -A * clip(rho, 1 - eps_low, 1 + eps_high), l = max(l1, l2).
- Dual clip (Ye et al. 2020), c > 1: for A < 0 the loss is further capped, l = min(l, -c * A), so a huge
  ratio on a bad token cannot blow the step up. For A >= 0 the dual clip does nothing.
- Entropy-balanced clipping (AEPO): where rho > 1 + eps_high the clipped ratio is
  (1 + eps_high) * rho / stopgrad(rho): the same value, but the gradient is (1 + eps_high) / rho times the
  unclipped one instead of zero.
- KL (optional): the k3 estimator exp(ref - logp) - (ref - logp) - 1 >= 0, per token.

Reduction: :func:`masked_token_mean` sums over trained tokens and divides by their count (or by a count
given by the caller, so that gradient accumulation over micro-batches gives the exact token-mean of the
whole step). Masked tokens (tool results, prompt, padding) contribute exactly 0 and no gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

from arpo_env.extras import missing_extra

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None


@dataclass
class PolicyLossOutput:
    """Per-token losses and diagnostics (all ``[batch, time]`` except the scalars)."""

    per_token: torch.Tensor
    ratio: torch.Tensor
    clipped: torch.Tensor
    """1.0 where the PPO clip bound was active (the gradient is cut or rescaled)."""
    dual_clipped: torch.Tensor
    """1.0 where the dual clip bound was active."""


def ppo_dual_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, *,
                       clip_low: float = 0.2, clip_high: float = 0.2, dual_clip_c: float = 3.0,
                       entropy_balanced: bool = False) -> PolicyLossOutput:
    """Per-token dual-clip PPO loss (see module docstring); no reduction, no masking."""
    if dual_clip_c <= 1.0:
        raise ValueError("dual_clip_c must be > 1")
    log_ratio = torch.clamp(logp - old_logp, -20.0, 20.0)
    ratio = torch.exp(log_ratio)
    upper = 1.0 + clip_high
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, upper)
    if entropy_balanced:
        rescaled = upper * ratio / ratio.detach()
        clipped_ratio = torch.where(ratio > upper, rescaled, clipped_ratio)
    l1 = -advantages * ratio
    l2 = -advantages * clipped_ratio
    clip_loss = torch.maximum(l1, l2)
    l3 = -advantages * dual_clip_c
    dual = torch.minimum(clip_loss, l3)
    per_token = torch.where(advantages < 0, dual, clip_loss)
    clipped = (l2 > l1).float()
    dual_clipped = ((advantages < 0) & (l3 < clip_loss)).float()
    return PolicyLossOutput(per_token, ratio.detach(), clipped, dual_clipped)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 KL estimate of KL(pi || ref) from sampled tokens (non-negative)."""
    d = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.exp(d) - d - 1.0


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor, count: float | None = None) -> torch.Tensor:
    """sum(values * mask) / count, count defaulting to mask.sum() (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    total = (values * mask).sum()
    denom = mask.sum() if count is None else torch.as_tensor(float(count), dtype=values.dtype)
    return total / torch.clamp(denom, min=1.0)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[target] per position, computed in float32 without materialising the full
    log-softmax twice. ``logits[:, t]`` predicts ``targets[:, t]``."""
    logits = logits.float()
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)
