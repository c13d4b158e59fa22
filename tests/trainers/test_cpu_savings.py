"""The two CPU savings of the update: LoRA on the last layers only (``lora_layers``) and the old log-probs
taken from the single epoch's own forward pass (``reuse_old_logprobs``), which must give the same update."""
import pytest
import torch

from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.trainer import Trainer

TINY = dict(model="tiny", env_id="test/DigitsCalculator-v0", imports=["tests.helpers.smoke_env"],
            prompts_per_step=2, rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2),
            max_response_tokens=40, max_turn_tokens=16, micro_batch_size=4, lr=1e-3, progress=False,
            tensorboard=False, steps=1, save_every=0, samples_per_step=0)


def test_lora_layers_adapts_only_the_named_layers(tmp_path):
    with Trainer(TrainConfig(**TINY, output_dir=str(tmp_path / "a"), lora=True, lora_r=4, lora_layers=[-1])) as tr:
        names = [n for n, p in tr.model.named_parameters() if p.requires_grad]
        assert names and all("lora" in n and ".layers.1." in n for n in names)  # tiny has layers 0 and 1
    with pytest.raises(ValueError, match="lora_layers"):
        Trainer(TrainConfig(**TINY, output_dir=str(tmp_path / "b"), lora=True, lora_layers=[5]))


def test_reused_old_logprobs_give_the_recomputed_update(tmp_path):
    weights, rows = [], []
    for reuse in (False, True):
        with Trainer(TrainConfig(**TINY, output_dir=str(tmp_path / str(reuse)), reuse_old_logprobs=reuse)) as tr:
            rows.append(tr.train()[0])
            weights.append({n: p.detach().clone() for n, p in tr.model.named_parameters()})
    assert rows[0]["trained_tokens"] == rows[1]["trained_tokens"] > 0
    assert rows[1]["ratio_mean"] == pytest.approx(1.0) and rows[1]["clip_frac"] == 0.0
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=1e-5)
    moved = max((weights[1][n] - p).abs().max().item() for n, p in weights[0].items())
    assert moved < 1e-5
