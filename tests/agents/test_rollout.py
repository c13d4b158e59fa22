"""The rollout loop: token-in/token-out invariants, masks, budgets and forkable states (tiny models)."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import arpo_env  # noqa: E402
from arpo_env import SamplingParams  # noqa: E402
from arpo_env.agents import Agent  # noqa: E402
from arpo_env.agents.backends.hf import HFBackend  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402


class RecordingBackend:
    """Wraps a backend and keeps every (context, generation) pair."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, contexts, params):
        gens = self.inner.generate(contexts, params)
        self.calls += [(list(c), g) for c, g in zip(contexts, gens)]
        return gens


class EncodeSpy:
    """A tokenizer proxy that records every text it is asked to encode."""

    def __init__(self, tok):
        self._tok, self.encoded = tok, []

    def encode(self, text, **kw):
        self.encoded.append(text)
        return self._tok.encode(text, **kw)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model_and_tokenizer(request.param, stop_boost=3.0)


def _rollout(tiny, n=6, max_response_tokens=256, max_new_tokens=32, seed=0):
    model, tok = tiny
    spy = EncodeSpy(tok)
    backend = RecordingBackend(HFBackend(model, tok))
    agent = Agent(backend, spy, max_response_tokens=max_response_tokens, tool_workers=4)
    envs = [arpo_env.make("arpo/Calculator-v0", max_tool_calls=3) for _ in range(n)]
    trajs = agent.rollout(envs, SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=seed),
                          seeds=list(range(n)))
    return agent, spy, backend, envs, trajs


def test_trajectories_are_exact_concatenations_and_never_reencode(tiny):
    agent, spy, backend, envs, trajs = _rollout(tiny)
    gen_texts = {g.text for _, g in backend.calls if g.text}
    assert not gen_texts & set(spy.encoded), "a generated text was re-encoded"
    assert sum(len(t.turn_spans) for t in trajs) > len(trajs), "the test needs multi-turn episodes"
    assert any(t.tool_calls for t in trajs)
    for traj, env in zip(trajs, envs):
        traj.check()
        ep = env.unwrapped.episode
        prompt = agent.prompt_ids([{"role": "system", "content": env.unwrapped.system_prompt},
                                   {"role": "user", "content": ep.prompt}])
        assert traj.token_ids[:traj.prompt_len] == prompt
        # rebuild the ids from the pieces: prompt, then each turn's generated ids and observation ids
        calls = [(c, g) for c, g in backend.calls if c == traj.token_ids[:len(c)]]
        assert len(calls) == len(traj.turn_spans)
        rebuilt = list(prompt)
        for k, ((ctx, gen), (start, end)) in enumerate(zip(calls, traj.turn_spans)):
            assert ctx == rebuilt, "the context sent to the backend is the trajectory so far"
            assert start == len(rebuilt) and traj.token_ids[start:end] == gen.token_ids[:end - start]
            assert traj.logprobs[start:end] == gen.logprobs[:end - start]
            assert traj.entropies[start:end] == gen.entropies[:end - start]
            rebuilt += traj.token_ids[start:end]
            if k + 1 < len(traj.turn_spans) or len(rebuilt) < len(traj.token_ids):
                obs_ids = agent.observation_ids(ep.observations[k])
                n_obs = (traj.turn_spans[k + 1][0] if k + 1 < len(traj.turn_spans) else len(traj.token_ids)) - end
                assert traj.token_ids[end:end + n_obs] == obs_ids[:n_obs]
                rebuilt += obs_ids[:n_obs]
        assert rebuilt == traj.token_ids
        gen_positions = {i for s, e in traj.turn_spans for i in range(s, e)}
        for i, (m, lp, h) in enumerate(zip(traj.loss_mask, traj.logprobs, traj.entropies)):
            if i in gen_positions:
                assert m == 1 and lp <= 0 and h >= 0
            else:
                assert m == 0 and lp == 0.0 and math.isnan(h)
        assert traj.terminated or traj.truncated
        assert traj.reward == ep.reward or ep.reward is None


def test_observations_carry_no_bos():
    model, tok = tiny_model_and_tokenizer("llama")
    agent = Agent(HFBackend(model, tok), tok)
    ids = agent.observation_ids("<result>\n3\n</result>")
    assert tok.bos_token_id not in ids and tok.decode(ids) == "<result>\n3\n</result>"
    assert arpo_env.make("arpo/Calculator-v0").stop_strings == ("</calculator>", "</tool_call>", "</answer>")
    assert arpo_env.make("arpo/Calculator-v0", json_tool_calls=False).stop_strings == ("</calculator>", "</answer>")


def test_response_budget_is_enforced(tiny):
    *_, trajs = _rollout(tiny, n=4, max_response_tokens=40, max_new_tokens=32)
    for t in trajs:
        assert len(t.token_ids) - t.prompt_len <= 40
        t.check()


class ScriptBackend:
    """Emits fixed texts (encoded by the real tokenizer) to drive the loop deterministically."""

    def __init__(self, tok, turns):
        self.tok, self.turns, self.i = tok, turns, 0

    def generate(self, contexts, params):
        from arpo_env import Generation
        out = []
        for _ in contexts:
            text = self.turns[min(self.i, len(self.turns) - 1)]
            ids = self.tok.encode(text, add_special_tokens=False)
            stop = next((s for s in params.stop if text.endswith(s)), None)
            out.append(Generation(ids, [-1.0] * len(ids), [0.5] * len(ids), "stop" if stop else "eos",
                                  stop, text=text))
        self.i += 1
        return out


def test_a_scripted_tool_call_and_answer_give_reward_one():
    _, tok = tiny_model_and_tokenizer("qwen2")
    turns = ["<think>compute</think><calculator>17*23</calculator>", "<answer>\\boxed{391}</answer>"]
    agent = Agent(ScriptBackend(tok, turns), tok)
    env = arpo_env.make("arpo/Calculator-v0")
    (traj,) = agent.rollout([env], SamplingParams(), options=[{"question": "What is 17*23?", "answer": "391"}])
    assert traj.terminated and traj.reward == 1.0 and traj.answer == "391"
    assert [(c.name, c.args, c.error) for c in traj.tool_calls] == [("calculator", "17*23", False)]
    assert "<result>\n391\n</result>" in traj.text
    assert len(traj.turn_spans) == 2 and traj.finish_reason == "stop"


def test_eos_without_a_call_ends_the_episode_with_the_env_reward():
    _, tok = tiny_model_and_tokenizer("qwen2")
    agent = Agent(ScriptBackend(tok, ["I think it is 391."]), tok)
    (traj,) = agent.rollout([arpo_env.make("arpo/Calculator-v0")], SamplingParams(),
                            options=[{"question": "What is 17*23?", "answer": "391"}])
    assert traj.truncated and not traj.terminated and traj.finish_reason == "eos"
    assert traj.reward == -1.0 and len(traj.turn_spans) == 1  # ARPO format check fails: no answer


def test_rollout_states_fork_independently():
    _, tok = tiny_model_and_tokenizer("qwen2")
    turns = ["<calculator>2+2</calculator>", "<calculator>3+3</calculator>", "<answer>\\boxed{4}</answer>"]
    agent = Agent(ScriptBackend(tok, turns), tok)
    state = agent.start(arpo_env.make("arpo/Calculator-v0"), options={"question": "2+2?", "answer": "4"})
    agent.advance([state], SamplingParams())
    child = state.fork(new_id=1)
    parent, kid = state.trajectory, child.trajectory
    assert kid.parent == 0 and child.branch_at == len(parent.token_ids) and child.id == 1
    agent.advance([child], SamplingParams())
    assert len(kid.token_ids) > len(parent.token_ids) and len(parent.turn_spans) == 1
    assert state.env.unwrapped.episode.tool_calls == 1 and child.env.unwrapped.episode.tool_calls == 2
    assert kid.token_ids[:child.branch_at] == parent.token_ids
    assert len(parent.tool_calls) == 1 and len(kid.tool_calls) == 2
    # no list of the record is shared between parent and child
    for name in ("token_ids", "loss_mask", "logprobs", "entropies", "turn_spans", "tool_calls"):
        assert getattr(kid, name) is not getattr(parent, name), name
    assert kid.task == parent.task and kid.task is not parent.task
    assert all(a is not b for a, b in zip(kid.tool_calls, parent.tool_calls))
    n = len(parent.token_ids)
    agent.advance([state], SamplingParams())
    assert len(parent.token_ids) > n and kid.token_ids[:n] == parent.token_ids[:n]
    assert agent.finish(state) is parent and agent.finish(child) is kid


def test_backend_completer_is_a_text_completer():
    from arpo_env import TextCompleter
    from arpo_env.agents.completer import BackendCompleter
    model, tok = tiny_model_and_tokenizer("qwen2")
    c = BackendCompleter(HFBackend(model, tok), tok)
    assert isinstance(c, TextCompleter)
    out = c.complete([{"role": "user", "content": "Summarise: the page."}], max_new_tokens=5)
    assert isinstance(out, str) and "<|im_end|>" not in out


def test_trajectory_tool_calls_are_the_calls_among_the_turns_the_env_counted(tiny):
    from arpo_env.parsing import parse_action

    *_, envs, trajs = _rollout(tiny, n=6, max_new_tokens=24)
    for env, t in zip(envs, trajs):
        ep = env.episode
        counted = ep.actions[:ep.tool_calls]  # budget-counted turns come first (an answer or a call past the
        kinds = [parse_action(a, env.tools).kind for a in counted]  # budget ends the episode)
        assert len(t.tool_calls) == sum(k in ("tool", "invalid") for k in kinds) <= ep.tool_calls
        assert [c.turn for c in t.tool_calls] == [i for i, k in enumerate(kinds) if k in ("tool", "invalid")]


def test_an_eos_turn_without_a_tag_uses_budget_but_is_no_tool_call():
    _, tok = tiny_model_and_tokenizer("qwen2")
    agent = Agent(ScriptBackend(tok, ["I think it is 391."]), tok)
    env = arpo_env.make("arpo/Calculator-v0")
    (traj,) = agent.rollout([env], SamplingParams(), options=[{"question": "What is 17*23?", "answer": "391"}])
    assert env.last_turn.action.kind == "none" and env.last_turn.counted and not env.last_turn.is_tool_call
    assert env.episode.tool_calls == 1 and traj.tool_calls == []
