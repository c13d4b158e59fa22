"""Dual-clip PPO, entropy-balanced clipping, KL and the masked token-mean against hand-computed values."""
import math

import pytest
import torch

from arpo_env.trainers.losses import kl_k3, masked_token_mean, ppo_dual_clip_loss, token_logprobs


def _loss(ratios, advs, **kw):
    old = torch.zeros(len(ratios))
    logp = torch.log(torch.tensor(ratios)).requires_grad_(True)
    out = ppo_dual_clip_loss(logp, old, torch.tensor(advs), **kw)
    return logp, out


def test_ppo_dual_clip_values():
    # rho:    1.0   1.5   0.5   1.5   0.5   5.0
    # A:      1     1     1     -1    -1    -1
    logp, out = _loss([1.0, 1.5, 0.5, 1.5, 0.5, 5.0], [1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    # A>0: max(-rho, -clip(rho)) -> -1, -1.2 (clipped), -0.5 (rho < 0.8 is not clipped for A>0: max(-0.5,-0.8))
    # A<0: max(rho, clip(rho)) then min(.., c=3): 1.5, 0.8, min(5.0, 3) = 3
    expected = [-1.0, -1.2, -0.5, 1.5, 0.8, 3.0]
    assert out.per_token.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.clipped.tolist() == [0, 1, 0, 0, 1, 0]
    assert out.dual_clipped.tolist() == [0, 0, 0, 0, 0, 1]
    out.per_token.sum().backward()
    # d(-A rho)/dlogp = -A rho where unclipped; 0 where a clip bound is active
    assert logp.grad.tolist() == pytest.approx([-1.0, 0.0, -0.5, 1.5, 0.0, 0.0], abs=1e-6)


def test_entropy_balanced_clip_keeps_rescaled_gradient():
    logp, out = _loss([1.5, 1.0, 1.5], [1.0, 1.0, -1.0], entropy_balanced=True)
    assert out.per_token.tolist() == pytest.approx([-1.2, -1.0, 1.5], abs=1e-6)  # values unchanged
    out.per_token.sum().backward()
    # clipped high-ratio token with A>0: d/dlogp of -A*(1.2*rho/sg(rho)) = -1.2 (not 0)
    assert logp.grad.tolist() == pytest.approx([-1.2, -1.0, 1.5], abs=1e-6)


def test_masked_token_mean_ignores_masked_tokens():
    v = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 0.0]], requires_grad=True)
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = masked_token_mean(v, m)
    assert out.item() == pytest.approx(2.0)
    out.backward()
    assert v.grad.flatten().tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3, 0.0, 0.0])
    assert masked_token_mean(v, m, count=6).item() == pytest.approx(1.0)
    assert masked_token_mean(v, torch.zeros_like(m)).item() == 0.0


def test_kl_k3_and_token_logprobs():
    logp = torch.tensor([math.log(0.5), math.log(0.25)])
    ref = torch.tensor([math.log(0.25), math.log(0.25)])
    # k3 = r - log r - 1 with r = ref/pi: r=0.5 -> 0.5 + ln 2 - 1
    assert kl_k3(logp, ref).tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0], abs=1e-6)
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75), abs=1e-6)
