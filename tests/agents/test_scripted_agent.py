"""ScriptedAgent: deterministic episodes that satisfy the trajectory invariants."""
from __future__ import annotations

import arpo_env
from arpo_env import Agent as AgentProtocol
from arpo_env.agents.scripted import ScriptedAgent, byte_ids


def test_example_policy_solves_calculator_tasks_through_the_tool():
    agent = ScriptedAgent()
    assert isinstance(agent, AgentProtocol)
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(5)]
    trajs = agent.rollout(envs, None, seeds=list(range(5)))
    for t, env in zip(trajs, envs):
        t.check()
        assert t.terminated and t.reward == 1.0 and len(t.tool_calls) == 2
        assert len(t.turn_spans) == 3 and all(t.loss_mask[i] == 1 for s, e in t.turn_spans for i in range(s, e))
        assert sum(t.loss_mask) == sum(e - s for s, e in t.turn_spans)
        ep = env.unwrapped.episode
        assert t.token_ids[t.prompt_len:] == byte_ids(ep.response)
    again = ScriptedAgent().rollout([arpo_env.make("arpo/Calculator-v0") for _ in range(5)], None,
                                    seeds=list(range(5)))
    assert [t.token_ids for t in again] == [t.token_ids for t in trajs]


def test_text_list_policy_and_turn_cap():
    agent = ScriptedAgent(["no tag here"], max_turns=2)
    (t,) = agent.rollout([arpo_env.make("arpo/Calculator-v0", max_tool_calls=10)], None, seeds=[0])
    assert t.truncated and not t.terminated and len(t.turn_spans) == 2 and t.finish_reason == "max_turns"


def test_tool_calls_are_the_calls_the_env_counted():
    env = arpo_env.make("arpo/Calculator-v0", max_tool_calls=3)
    turns = ["<calculator>1+1</calculator>", "no tag", "<calculator>2+", "<calculator>2+2</calculator>"]
    (t,) = ScriptedAgent(turns).rollout([env], None, options=[{"question": "2?", "answer": "2"}])
    # "no tag" uses budget but calls no tool; the unclosed call is a (malformed) call; the fourth is past
    # the budget: it ends the episode and is not a call the env counted
    assert t.truncated and env.episode.tool_calls == 3 and len(t.tool_calls) == 2
    assert [(c.name, c.error, c.turn) for c in t.tool_calls] == [("calculator", False, 0), ("calculator", True, 2)]
    assert t.tool_calls[0].args == "1+1"
    assert sum(t.loss_mask) == sum(len(byte_ids(a)) for a in turns)  # observations are never trainable
