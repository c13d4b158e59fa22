"""Trie packing in the update (``pack_prefixes``): per-token log-probs, the loss and the gradients equal the
flat per-leaf computation, for a GRPO group (shared prompt) and an ARPO tree with branches, under soft and
hard attribution; the fallback when the attention cannot take the mask; the old-log-prob pass skipped with
one optimizer step per rollout batch and kept with several epochs."""
import logging
import random
from types import SimpleNamespace

import pytest
import torch

from arpo_env.agent import Trajectory
from arpo_env.trainers import packing
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.trainer import Trainer
from arpo_env.trainers.tree import RolloutTree, check_prefix_sharing

TINY = dict(model="tiny", env_id="test/DigitsCalculator-v0", imports=["tests.helpers.smoke_env"],
            prompts_per_step=2, rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2),
            max_response_tokens=40, max_turn_tokens=16, lr=1e-3, progress=False,
            tensorboard=False, steps=1, save_every=0, samples_per_step=0)


def _leaf(rng, ids, prompt_len, id_, parent=None, branch_at=None, base=None, reward=0.0):
    n = len(ids)
    mask = [0] * prompt_len + [1 if (t // 5) % 3 else 0 for t in range(n - prompt_len)]  # tool spans at 0
    lp = [0.0] * prompt_len + [-rng.random() for _ in range(n - prompt_len)]
    if base is not None:  # inherit the parent's masks and log-probs on the shared prefix
        mask[:branch_at], lp[:branch_at] = base.loss_mask[:branch_at], base.logprobs[:branch_at]
    return Trajectory(token_ids=ids, prompt_len=prompt_len, loss_mask=mask, logprobs=lp, entropies=[1.0] * n,
                      reward=reward, id=id_, parent=parent, branch_at=branch_at)


def grpo_group(rng, prompt):
    leaves = []
    for i in range(4):
        resp = [rng.randrange(3, 300) for _ in range(rng.randrange(8, 20))]
        leaves.append(_leaf(rng, prompt + resp, len(prompt), i, reward=float(i % 2) + 0.1 * i))
    return RolloutTree(leaves)


def arpo_tree(rng, prompt):
    p = len(prompt)
    root = _leaf(rng, prompt + [rng.randrange(3, 300) for _ in range(30)], p, 0, reward=1.0)
    a = _leaf(rng, root.token_ids[:p + 12] + [rng.randrange(3, 300) for _ in range(14)], p, 1, 0, p + 12, root, 0.0)
    b = _leaf(rng, a.token_ids[:p + 20] + [rng.randrange(3, 300) for _ in range(9)], p, 2, 1, p + 20, a, 1.0)
    c = _leaf(rng, prompt + [rng.randrange(3, 300) for _ in range(17)], p, 3, reward=0.5)
    tree = RolloutTree([root, a, b, c])
    check_prefix_sharing(tree)
    return tree


def _trainer(tmp_path, name, **kw):
    return Trainer(TrainConfig(**{**TINY, **kw}, output_dir=str(tmp_path / name)))


def _update(tr, trees, mode):
    tr.cfg.advantage = mode
    seqs, _ = tr.build_sequences(SimpleNamespace(trees=trees))
    stats = tr.update(seqs)
    grads = {n: p.grad.detach().clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    return stats, grads


def test_pack_builds_the_trie():
    rows = [[1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 6, 7]]
    pk = packing.pack(rows, 5)
    assert pk.ids.tolist() == [[1, 2, 3, 4, 5, 6, 7]] and pk.positions.tolist() == [[0, 1, 2, 3, 2, 3, 4]]
    # node 5 (token 6 at depth 3) sees 1, 2, 3 and itself, not 4 (a sibling) nor 5 (another branch)
    assert pk.visible[5].tolist() == [True, True, True, False, False, True, False]
    assert pk.source[1].tolist() == [0, 1, 0, 0] and pk.source[2].tolist() == [0, 1, 2, 5]
    assert packing.shared_share(rows) == pytest.approx(1 - 7 / 12)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_packed_update_equals_flat(tmp_path, mode):
    rng = random.Random(0)
    system = [rng.randrange(3, 300) for _ in range(10)]
    trees = [grpo_group(rng, system + [7, 8, 9]), arpo_tree(rng, system + [11, 12, 13, 14])]
    out = {}
    for pack in (False, True):
        # micro-batches of 3 leaves: a tree split across micro-batches, and one holding two prompts
        with _trainer(tmp_path, f"{mode}{pack}", pack_prefixes=pack, pack_min_gain=0.0, micro_batch_size=3,
                      grad_clip=0.0) as tr:
            out[pack] = _update(tr, trees, mode)
    (flat, gflat), (packed, gpacked) = out[False], out[True]
    assert packed["packed"] == 1.0 and flat["packed"] == 0.0 and packed["pack_shared_share"] > 0.2
    assert packed["pack_forward_tokens"] < flat["pack_forward_tokens"]
    assert packed["trained_tokens"] == flat["trained_tokens"] > 0
    for key in ("loss", "pg_loss", "grad_norm", "ratio_mean", "rollout_logprob_gap"):
        assert packed[key] == pytest.approx(flat[key], abs=1e-5), key
    assert gflat.keys() == gpacked.keys() and gflat
    assert max((gflat[n] - gpacked[n]).abs().max().item() for n in gflat) < 1e-5


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logprobs_equal_flat(tmp_path, attention):
    rng = random.Random(1)
    tree = arpo_tree(rng, [rng.randrange(3, 300) for _ in range(9)])
    with _trainer(tmp_path, attention) as tr:
        tr.model.set_attn_implementation(attention)
        tr._attention = attention
        rows = [leaf.token_ids for leaf in tree.leaves]
        t = max(map(len, rows))
        ids = torch.zeros((len(rows), t), dtype=torch.long)
        attn = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            ids[j, :len(r)], attn[j, :len(r)] = torch.tensor(r), 1
        with torch.no_grad():
            flat = tr._micro_logprobs(tr.model, {"ids": ids, "attn": attn})
            packed = tr._micro_logprobs(tr.model, {"ids": ids, "attn": attn, "pack": packing.pack(rows, t)})
    valid = attn[:, 1:].bool()
    assert (flat - packed)[valid].abs().max().item() < 1e-5


def test_attention_without_mask_support_falls_back():
    ok, why = packing.supports_packing(SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2")))
    assert not ok and "flash_attention_2" in why
    assert packing.supports_packing(SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa")))[0]


def test_model_ignoring_the_mask_falls_back_to_flat(tmp_path, monkeypatch, caplog):
    """A model that lets every node see every earlier node (the mask ignored) fails the probe: flat update."""
    rng = random.Random(2)
    trees = [arpo_tree(rng, [rng.randrange(3, 300) for _ in range(12)])]
    with _trainer(tmp_path, "flat", pack_prefixes=False) as tr:
        want, _ = _update(tr, trees, "soft")
    monkeypatch.setattr(packing.Packed, "attention_mask",
                        lambda self, attention, dtype: torch.ones_like(self.visible).tril()[None, None])
    with caplog.at_level(logging.WARNING), _trainer(tmp_path, "broken", pack_min_gain=0.0) as tr:
        got, _ = _update(tr, trees, "soft")
    assert got["packed"] == 0.0 and "falling back to flat" in caplog.text
    assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)


def test_packing_is_skipped_where_it_would_cost_more(tmp_path):
    """Little sharing (4 long independent leaves after a 3-token prompt): the dense L x L mask would cost
    more attention than the 3 shared tokens save; the estimated gain is < 1 and the rows stay flat."""
    rng = random.Random(4)
    trees = [RolloutTree([_leaf(rng, [5, 6, 7] + [rng.randrange(3, 300) for _ in range(300)], 3, i, reward=i)
                          for i in range(4)])]
    with _trainer(tmp_path, "auto", micro_batch_size=4) as tr:
        stats, _ = _update(tr, trees, "soft")
        rows = [leaf.token_ids for leaf in trees[0].leaves]
        gain = packing.estimated_gain(rows, packing.pack(rows, max(map(len, rows))).length, tr._pack_costs)
    assert gain < 1.0 and stats["packed"] == 0.0
    lin, att = packing.cost_model(tr.model)
    assert lin > 0 and att > 0


def test_old_logprob_pass_skipped_only_with_one_epoch(tmp_path):
    rng = random.Random(3)
    trees = [grpo_group(rng, [5, 6, 7, 8, 9, 10])]
    rows = {}
    for epochs, reuse in ((1, True), (1, False), (2, True)):
        with _trainer(tmp_path, f"{epochs}{reuse}", ppo_epochs=epochs, reuse_old_logprobs=reuse) as tr:
            rows[epochs, reuse], _ = _update(tr, trees, "soft")
    assert rows[1, True]["old_logprob_pass"] == 0.0 and rows[1, True]["ratio_mean"] == pytest.approx(1.0)
    assert rows[1, False]["old_logprob_pass"] == 1.0 and rows[2, True]["old_logprob_pass"] == 1.0
    assert rows[1, True]["loss"] == pytest.approx(rows[1, False]["loss"], abs=1e-6)
    assert TrainConfig().reuse_old_logprobs and TrainConfig().pack_prefixes
