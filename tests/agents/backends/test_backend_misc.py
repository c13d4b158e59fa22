"""Backend helpers that need no server: top-k entropy, lazy vLLM import, backend factory errors."""
from __future__ import annotations

import importlib.util
import math

import pytest

from arpo_env.agents.backends import make_backend
from arpo_env.agents.backends.openai import topk_entropy


def test_topk_entropy_renormalises_and_bounds_the_exact_entropy():
    probs = [0.4, 0.3, 0.2, 0.1]
    exact = -sum(p * math.log(p) for p in probs)
    assert math.isclose(topk_entropy([math.log(p) for p in probs]), exact, rel_tol=1e-9)
    top2 = topk_entropy([math.log(0.4), math.log(0.3)])
    assert math.isclose(top2, -(4 / 7) * math.log(4 / 7) - (3 / 7) * math.log(3 / 7)) and top2 < exact
    assert math.isnan(topk_entropy([]))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_says_how_to_install_vllm():
    from arpo_env.agents.backends.vllm import VLLMBackend  # importing the module must work without vLLM
    with pytest.raises(ImportError, match="setup_vllm_venv"):
        VLLMBackend.from_pretrained("/nonexistent")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="hf, vllm, openai"):
        make_backend("tgi")
