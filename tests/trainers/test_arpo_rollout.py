"""The ARPO rollout with a scripted backend of controlled entropy: exactly M leaves, branch rate vs
clip(alpha + beta * dH), no branching at greedy or eval, token-for-token prefix sharing, forked env state."""
import math

import numpy as np
import pytest

import arpo_env
from arpo_env.agents import Agent
from arpo_env.agent import SamplingParams
from arpo_env.trainers.arpo_rollout import (ARPORollout, BranchingConfig, branch_probability, dynamic_initial_rollouts,
                                   segment_entropy)
from arpo_env.trainers.tree import check_prefix_sharing

from tests.helpers.arpo_test_doubles import CharTokenizer, ScriptedBackend, calculator_script

TASK = {"question": "What is 2 + 2?", "answer": "4"}


def make_rollout(script, seed=0, **cfg):
    agent = Agent(ScriptedBackend(script, seed=seed), CharTokenizer(), max_response_tokens=4000, tool_workers=2)
    conf = BranchingConfig(**{"rollouts_per_prompt": 8, "initial_rollouts": 2, **cfg})
    return ARPORollout(agent, conf, lambda: arpo_env.make("arpo/Calculator-v0"), np.random.default_rng(seed))


def test_entropy_helpers():
    assert segment_entropy([1.0, 3.0, 100.0], k=2) == 2.0
    assert segment_entropy([1.0, float("nan"), 3.0], k=3) == 2.0
    assert math.isnan(segment_entropy([], k=20))
    assert segment_entropy([1.0] * 30, k=20, measure="compat", vocab_size=100) == pytest.approx(20 / math.log(100))
    assert branch_probability(2.0, 1.0, 0.5, 0.2) == pytest.approx(0.7)
    assert branch_probability(10.0, 1.0, 0.5, 0.2) == 1.0 and branch_probability(-10.0, 1.0, 0.5, 0.2) == 0.0
    assert branch_probability(float("nan"), 1.0, 0.5, 0.2, penalty=0.9) == pytest.approx(0.45)
    # N = floor(M * sigmoid(0.5 * d)) + 1: d=0 -> 9 of 16; d=+4 -> floor(16*0.8808)+1 = 15; d=-inf-ish -> 1
    assert dynamic_initial_rollouts(16, 1.0, 1.0) == 9
    assert dynamic_initial_rollouts(16, 5.0, 1.0) == 15
    assert dynamic_initial_rollouts(16, 0.0, 100.0) == 1 and dynamic_initial_rollouts(16, 100.0, 0.0) == 16


@pytest.mark.parametrize("m,n", [(8, 2), (5, 5), (3, 1)])
def test_exactly_m_leaves_and_prefix_sharing(m, n):
    ro = make_rollout(calculator_script(delta=1.0), rollouts_per_prompt=m, initial_rollouts=n)
    batch = ro.run([TASK, {"question": "What is 1 + 3?", "answer": "4"}], SamplingParams(temperature=1.0))
    for tree in batch.trees:
        assert tree.size == m
        assert sorted(t.id for t in tree.leaves) == list(range(m))
        check_prefix_sharing(tree)
        for t in tree.leaves:
            t.check()
            assert t.reward > 0.9 and t.terminated  # every leaf answered correctly after 3 calls
            assert len(t.tool_calls) == 3
            if t.parent is not None:
                parent = tree.by_id[t.parent]
                # a branch starts right after a tool result: the prefix ends with </result>
                assert "".join(map(chr, t.token_ids[:t.branch_at])).endswith("</result>")
                assert t.token_ids[:t.branch_at] == parent.token_ids[:t.branch_at]
                assert t.token_ids[t.branch_at:] != parent.token_ids[t.branch_at:]
        # no duplicated samples: the random numbers in the first turn differ unless they were inherited
        texts = ["".join(map(chr, t.token_ids[t.prompt_len:])) for t in tree.leaves]
        assert len(set(texts)) == m


def test_branch_rate_matches_clip_alpha_beta_dh():
    """Empirical fork rate per entropy delta vs P = clip(0.5 + 0.2 dH, 0, 1), binomial 4-sigma bounds."""
    for delta, expected in [(-5.0, 0.0), (-1.0, 0.3), (1.0, 0.7), (4.0, 1.0)]:
        ro = make_rollout(calculator_script(delta=delta), seed=int(10 + delta), rollouts_per_prompt=12,
                          initial_rollouts=2)
        attempts = []
        for _ in range(12):
            attempts += ro.run([TASK] * 4, SamplingParams(temperature=1.0)).stats.attempts
        at_delta = [ok for d, ok in attempts if d == pytest.approx(delta)]
        at_zero = [ok for d, ok in attempts if d == 0.0]
        assert len(at_delta) >= 100 and len(at_zero) >= 30
        rate = sum(at_delta) / len(at_delta)
        sigma = math.sqrt(max(expected * (1 - expected), 0.01) / len(at_delta))
        assert abs(rate - expected) <= 4 * sigma, (delta, rate, expected, len(at_delta))
        # the first tool call compares a segment with itself: P = alpha
        rate0 = sum(at_zero) / len(at_zero)
        assert abs(rate0 - 0.5) <= 4 * math.sqrt(0.25 / len(at_zero))


def test_no_branching_at_greedy_eval_or_grpo():
    for kwargs, params, evaluation in [({}, SamplingParams(temperature=0.0), False),
                                       ({}, SamplingParams(temperature=1.0), True),
                                       ({"algorithm": "grpo"}, SamplingParams(temperature=1.0), False),
                                       ({"algorithm": "grpo", "dynamic_split": True, "branch_penalty": True},
                                        SamplingParams(temperature=1.0), False)]:
        ro = make_rollout(calculator_script(delta=5.0), **kwargs)
        batch = ro.run([TASK], params, evaluation=evaluation)
        assert batch.stats.branches == 0 and batch.stats.branch_attempts == 0
        assert batch.stats.topups == 0 and batch.stats.initial_n == [8]  # all M start at once
        assert all(t.parent is None for t in batch.trees[0].leaves) and batch.trees[0].size == 8


def test_topup_fills_all_missing_slots_in_one_round():
    # P = 0: no branch ever; the N=2 finish after 4 rounds, then the 6 missing start together
    ro = make_rollout(calculator_script(delta=-10.0), rollouts_per_prompt=8, initial_rollouts=2, alpha=0.0)
    batch = ro.run([TASK], SamplingParams(temperature=1.0))
    assert batch.stats.branches == 0 and batch.stats.topups == 6
    assert batch.stats.rounds == 8  # 4 rounds for the first two, 4 for all six top-ups together


class ConstantDraw:
    """A branch-draw generator that always returns ``value``: a branch is taken exactly when P > value."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def test_branch_penalty_and_dynamic_split():
    # Draws fixed at 0.3, so each branch decision is P > 0.3, with P = clip(0.5 + 0.2 dH) * max(0, 1 - 0.5 c)
    # and c the prompt's consecutive rounds of growth. Round 1: dH = 0, c = 0, P = 0.5: the one trajectory
    # branches. Round 2: dH = 4 (base P 1.0), c = 1, P = 0.5: both trajectories branch. Round 3: c = 2,
    # P = 0: the four attempts all fail although the entropy rise alone gives P = 1.
    agent = Agent(ScriptedBackend(calculator_script(delta=4.0), seed=0), CharTokenizer(), max_response_tokens=4000,
                  tool_workers=2)
    conf = BranchingConfig(rollouts_per_prompt=16, initial_rollouts=1, branch_penalty=True, branch_penalty_rate=0.5)
    ro = ARPORollout(agent, conf, lambda: arpo_env.make("arpo/Calculator-v0"), ConstantDraw(0.3))
    batch = ro.run([TASK], SamplingParams(temperature=1.0))
    events = [(e.round, e.delta, e.probability) for e in batch.trees[0].events]
    assert events == [(1, 0.0, 0.5), (2, 4.0, 0.5), (2, 4.0, 0.5)]
    assert batch.stats.attempts == [(0.0, True), (4.0, True), (4.0, True)] + [(4.0, False)] * 4
    assert batch.trees[0].size == 16  # the budget is filled by top-ups instead
    ro = make_rollout(calculator_script(delta=-2.0), rollouts_per_prompt=16, dynamic_split=True)
    batch = ro.run([TASK], SamplingParams(temperature=1.0))
    # H_root - H_tool = 2: N = floor(16 * sigmoid(1)) + 1 = 12
    assert batch.stats.initial_n == [12] and batch.trees[0].size == 16


def test_branching_follows_the_envs_tool_call_fact():
    """A malformed call the env counts against the budget is a branch point; an answer and a call past the
    budget are not. Every fork draw happens right after a turn with ``Turn.is_tool_call``."""
    def script(turn, rng):
        n = int(rng.integers(1000))
        if turn == 0:
            return f'<think>#{n}</think><tool_call>{{"name": 1}}</tool_call>', 1.0   # malformed, counted
        if turn == 1:
            return f"<think>#{n}</think><calculator>2+2</calculator>", 1.0            # past the budget of 1
        return f"<think>#{n}</think><answer>\\boxed{{4}}</answer>", 1.0

    agent = Agent(ScriptedBackend(script), CharTokenizer(), max_response_tokens=4000, tool_workers=2)
    conf = BranchingConfig(rollouts_per_prompt=6, initial_rollouts=2, beam_size=2, alpha=1.0, beta=0.0)
    ro = ARPORollout(agent, conf, lambda: arpo_env.make("arpo/Calculator-v0", max_tool_calls=1),
                     np.random.default_rng(0))
    batch = ro.run([arpo_env.Task("What is 2 + 2?", ["4"])], SamplingParams(temperature=1.0))
    (tree,) = batch.trees
    assert tree.size == 6
    # the two roots fork once each after their malformed call (P = 1); nothing forks at the truncating call
    assert batch.stats.branch_attempts == batch.stats.branches == 2
    for leaf in tree.leaves:
        assert leaf.truncated and [(c.name, c.error) for c in leaf.tool_calls] == [(None, True)]
    forked = [leaf for leaf in tree.leaves if leaf.parent is not None]
    assert len(forked) == 2
    for leaf in forked:  # each branch point is right after the error observation of the malformed call
        prefix = "".join(map(chr, leaf.token_ids[:leaf.branch_at]))
        assert prefix.endswith("</result>") and "Error" in prefix.rsplit("<result>", 1)[1]
        assert tree.leaves[leaf.parent].token_ids[:leaf.branch_at] == leaf.token_ids[:leaf.branch_at]


def test_executed_tool_calls_count_inherited_calls_once():
    """``stats.tool_calls`` counts the calls the envs ran: GRPO's M independent leaves run every call of every
    leaf; an ARPO branch inherits its parent's calls up to the fork, so the tree runs fewer calls than its
    leaves list, exactly the leaves' calls minus those made inside each branch's shared prefix."""
    grpo = make_rollout(calculator_script(delta=1.0), algorithm="grpo").run([TASK], SamplingParams(temperature=1.0))
    assert grpo.stats.tool_calls == sum(len(t.tool_calls) for t in grpo.trees[0].leaves) == 8 * 3
    arpo = make_rollout(calculator_script(delta=1.0), seed=3).run([TASK, TASK], SamplingParams(temperature=1.0))
    assert arpo.stats.branches > 0
    listed = sum(len(t.tool_calls) for tree in arpo.trees for t in tree.leaves)
    inherited = sum(sum(1 for c in t.tool_calls if t.turn_spans[c.turn][1] <= t.branch_at)
                    for tree in arpo.trees for t in tree.leaves if t.branch_at is not None)
    assert inherited > 0 and arpo.stats.tool_calls == listed - inherited < listed
