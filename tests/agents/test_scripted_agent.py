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
