"""GRPO advantages, soft/hard attribution on a hand-built two-branch tree, entropy-aware advantage."""
import math

import pytest

from arpo_env.agent import Trajectory
from arpo_env.trainers.advantages import entropy_aware, grpo_advantages, token_advantages
from arpo_env.trainers.tree import RolloutTree, check_prefix_sharing

S = math.sqrt(0.5)  # GRPO advantage of rewards [1, 0]: 0.5 / std(ddof=1)=0.7071 -> 0.7071


def traj(id, ids, mask, parent=None, branch_at=None, prompt_len=2):
    n = len(ids)
    return Trajectory(token_ids=ids, prompt_len=prompt_len, loss_mask=mask, logprobs=[0.0] * n,
                      entropies=[float("nan")] * n, id=id, parent=parent, branch_at=branch_at)


def two_branch_tree():
    # prompt P P, shared model segment s s, tool result r (mask 0), then each leaf's own tail
    a = traj(0, [1, 2, 10, 11, 20, 30, 31], [0, 0, 1, 1, 0, 1, 1])
    b = traj(1, [1, 2, 10, 11, 20, 40], [0, 0, 1, 1, 0, 1], parent=0, branch_at=5)
    return RolloutTree([a, b])


def test_grpo_advantages():
    assert grpo_advantages([1.0, 0.0]) == pytest.approx([S, -S], abs=1e-5)
    # rewards 1, 2, 3, 6: mean 3, unbiased std sqrt((4+1+0+9)/3)
    std = math.sqrt(14 / 3)
    assert grpo_advantages([1, 2, 3, 6]) == pytest.approx([-2 / std, -1 / std, 0, 3 / std], abs=1e-5)
    assert grpo_advantages([0.5, 0.5, 0.5]) == [0.0, 0.0, 0.0]
    assert grpo_advantages([1.0]) == [0.0]


def test_tree_sharing():
    tree = two_branch_tree()
    assert tree.lcp == [[7, 5], [5, 6]]
    check_prefix_sharing(tree)
    assert tree.owner_mask(0) == [1] * 7 and tree.owner_mask(1) == [0] * 5 + [1]
    assert tree.response_tokens() == 5 + 4 and tree.unique_response_tokens() == 5 + 1
    assert tree.generated_tokens() == (4 + 3, 4 + 1)


def test_soft_attribution_two_branch():
    adv = grpo_advantages([1.0, 0.0])
    soft = token_advantages(two_branch_tree(), adv, "soft")
    assert soft[0].advantages == pytest.approx([S] * 7, abs=1e-5)
    assert soft[1].advantages == pytest.approx([-S] * 6, abs=1e-5)
    assert soft[0].train_mask == [0, 0, 1, 1, 0, 1, 1] and soft[1].train_mask == [0, 0, 1, 1, 0, 1]


def test_hard_attribution_two_branch():
    adv = grpo_advantages([1.0, 0.0])
    hard = token_advantages(two_branch_tree(), adv, "hard")
    # shared tokens (positions 0..4) get mean(+S, -S) = 0 and are trained once (by leaf 0)
    assert hard[0].advantages == pytest.approx([0, 0, 0, 0, 0, S, S], abs=1e-5)
    assert hard[1].advantages == pytest.approx([0, 0, 0, 0, 0, -S], abs=1e-5)
    assert hard[0].train_mask == [0, 0, 1, 1, 0, 1, 1]
    assert hard[1].train_mask == [0, 0, 0, 0, 0, 1]


def test_hard_attribution_nested_and_independent():
    # leaf 0 from scratch; leaf 1 forks 0 at 4; leaf 2 forks 1 at 6; leaf 3 independent
    a = traj(0, [1, 2, 3, 4, 5, 6, 7, 8], [0, 0] + [1] * 6)
    b = traj(1, [1, 2, 3, 4, 9, 9, 9, 9], [0, 0] + [1] * 6, parent=0, branch_at=4)
    c = traj(2, [1, 2, 3, 4, 9, 9, 8, 8], [0, 0] + [1] * 6, parent=1, branch_at=6)
    d = traj(3, [1, 2, 3, 4, 5, 6], [0, 0] + [1] * 4)  # same tokens as a by chance: not shared
    tree = RolloutTree([a, b, c, d])
    assert tree.lcp[1][2] == 6 and tree.lcp[0][2] == 4 and tree.lcp[0][3] == 2
    adv = [3.0, 1.0, -1.0, -3.0]
    hard = token_advantages(tree, adv, "hard")
    # leaf 2: positions 2,3 shared by {0,1,2} -> mean 1; 4,5 by {1,2} -> 0; 6,7 own -> -1
    assert hard[2].advantages[2:] == pytest.approx([1, 1, 0, 0, -1, -1])
    assert hard[2].train_mask == [0] * 6 + [1, 1]
    assert hard[1].train_mask == [0] * 4 + [1] * 4
    assert hard[3].advantages[2:] == pytest.approx([-3] * 4) and hard[3].train_mask == [0, 0, 1, 1, 1, 1]
    # every generated token of the tree is trained exactly once
    assert sum(sum(h.train_mask) for h in hard) == tree.generated_tokens()[1] == 6 + 4 + 2 + 4


def test_entropy_aware_advantage():
    adv = [[1.0, 1.0, 1.0], [-1.0, -1.0]]
    ent = [[0.0, 2.0, float("nan")], [1.0, 5.0]]
    mask = [[1, 1, 0], [1, 0]]
    # trained entropies 0, 2, 1: mean 1, population std sqrt(2/3)
    out, stats = entropy_aware(adv, ent, mask, weight=0.2)
    z = 1 / math.sqrt(2 / 3)
    assert out[0] == pytest.approx([1 - 0.2 * z, 1 + 0.2 * z, 1.0])
    assert out[1] == pytest.approx([-1.0, -1.0])
    assert stats["entropy_mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="entropy"):
        entropy_aware(adv, [[float("nan")] * 3, [float("nan")] * 2], mask)
