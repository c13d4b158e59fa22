"""Rollout engines without vLLM (CPU): merged LoRA tensors, the hf engine's versions and log-prob gap in the
trainer, HTTP pushes to dead and stalled servers. The vLLM engines run in test_rollout_engine_vllm.py."""
import copy
import importlib.util
import socket

import pytest
import torch

from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.rollout_engine import logprob_gap, policy_tensors
from arpo_env.trainers.weight_sync import HTTPSync, WeightSyncError

TINY = dict(model="tiny", env_id="test/DigitsCalculator-v0", imports=["tests.helpers.smoke_env"],
            prompts_per_step=2, rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2),
            max_response_tokens=40, max_turn_tokens=16, micro_batch_size=4, lr=1e-3, progress=False,
            tensorboard=False, save_every=0, samples_per_step=0)


def test_policy_tensors_merge_lora_as_peft_does_without_touching_the_model():
    from peft import LoraConfig, get_peft_model

    from arpo_env.agents.testing import tiny_model_and_tokenizer
    model, _ = tiny_model_and_tokenizer(seed=0)
    names = set(model.state_dict())
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(0)
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:  # B starts at zero: make the delta real
            p.data = torch.randn(p.shape, generator=g) * 0.1
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    got = dict(policy_tensors(peft_model))
    want = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    assert set(got) == set(want) == names
    assert max((got[k] - want[k]).abs().max().item() for k in want) < 1e-6
    moved = [k for k in want if "q_proj" in k and not torch.equal(want[k], peft_model.get_base_model().state_dict()[
        k.replace("q_proj.weight", "q_proj.base_layer.weight")])]
    assert moved  # the deltas are in
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters())


def test_logprob_gap_counts_trained_finite_tokens_only():
    old = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    rollout = torch.tensor([[-1.5, float("nan"), -3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert logprob_gap(old, rollout, mask) == (0.5, 2)


def test_hf_engine_versions_and_gap_in_the_trainer(tmp_path):
    import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0
    from arpo_env.trainers.trainer import Trainer

    with Trainer(TrainConfig(**TINY, steps=2, output_dir=str(tmp_path / "a"))) as tr:
        rows = tr.train()
        assert [r["weight_version"] for r in rows] == [0, 1]
        assert tr.engine.fingerprint().version == 2
        # the same float32 weights sample and recompute: the gap is rounding only
        assert all(0 <= r["rollout_logprob_gap"] < 1e-4 for r in rows), rows
        # a sampler with other weights than the trainer's shows in the gap
        stale = copy.deepcopy(tr.model)
        with torch.no_grad():
            for p in stale.parameters():
                p.add_(0.05 * torch.randn_like(p))
        tr.backend.model = stale
        assert tr.train_step()["rollout_logprob_gap"] > 1e-2
        tr.engine.version = 7  # an engine that missed pushes is refused before the rollout
        with pytest.raises(WeightSyncError, match="version 7"):
            tr.train_step()


def test_a_bad_rollout_backend_is_named():
    with pytest.raises(ValueError, match="rollout_backend"):
        TrainConfig(rollout_backend="sglang")


def test_engine_defaults_under_torchrun_give_each_rank_an_independent_engine(monkeypatch):
    """Probed by signature; under WORLD_SIZE > 1 the external launcher without vLLM's own data parallelism
    (whose ranks must call generate together)."""
    import types

    from arpo_env.trainers.rollout_engine import engine_defaults

    def engine_args(model="", enable_prefix_caching=False, max_logprobs=20, seed=0, dtype="auto",
                    enforce_eager=False, distributed_executor_backend=None, data_parallel_size=1):
        pass
    fake = types.SimpleNamespace(EngineArgs=engine_args)
    monkeypatch.setenv("WORLD_SIZE", "1")
    kw = engine_defaults(fake, "cpu", 3)
    assert kw == {"enable_prefix_caching": True, "max_logprobs": 20, "seed": 3, "dtype": "float32",
                  "enforce_eager": True}  # no logprobs_mode: this EngineArgs lacks it
    monkeypatch.setenv("WORLD_SIZE", "2")
    kw = engine_defaults(fake, "cpu", 3)
    assert kw["distributed_executor_backend"] == "external_launcher" and "data_parallel_size" not in kw
    with pytest.raises(RuntimeError, match="distributed_executor_backend"):
        engine_defaults(types.SimpleNamespace(EngineArgs=lambda model="", seed=0: None), "cpu", 0)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_engine_without_vllm_names_the_fix(tmp_path):
    import tests.helpers.smoke_env  # noqa: F401
    from arpo_env.extras import MissingExtra
    from arpo_env.trainers.trainer import Trainer
    with pytest.raises(MissingExtra, match="setup_vllm_venv"):
        Trainer(TrainConfig(**TINY, steps=1, output_dir=str(tmp_path), rollout_backend="vllm"))


def _sync(url: str, root) -> HTTPSync:
    return HTTPSync([url], root, "m", probe_ids=[1, 2, 3], timeout=1.0)


def test_http_push_to_a_dead_or_stalled_server_raises_within_its_timeout(tmp_path):
    named = [("model.norm.weight", torch.ones(4))]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(WeightSyncError, match="/pause failed: ConnectError"):
        _sync(dead, tmp_path).push(named, 1)
    with socket.socket() as stalled:  # accepts connections (kernel backlog), never answers
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)
        with pytest.raises(WeightSyncError, match="/pause failed: ReadTimeout"):
            _sync(f"http://127.0.0.1:{stalled.getsockname()[1]}", tmp_path).push(named, 1)
