"""Run under the vLLM venv's python (see test_vllm_engine.py): a rollout through ``VLLMBackend`` on the
calculator env; prints one JSON line per trajectory with what the test checks."""
import json
import math
import sys

if __name__ == "__main__":  # vLLM starts worker processes
    import arpo_env
    from arpo_env.agents import Agent
    from arpo_env.agents.backends.vllm import VLLMBackend
    from arpo_env import SamplingParams

    backend = VLLMBackend.from_pretrained(sys.argv[1], max_model_len=2048, dtype="float32", enforce_eager=True)
    agent = Agent(backend, backend.tokenizer, max_response_tokens=160)
    contexts = []
    real_generate = backend.generate

    def spy(ctxs, params):  # every context the loop sends must be a prefix of the final trajectory
        contexts.extend(list(map(list, ctxs)))
        return real_generate(ctxs, params)

    backend.generate = spy
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(4)]
    trajs = agent.rollout(envs, SamplingParams(temperature=0.6, max_new_tokens=48, seed=0), seeds=[0, 1, 2, 3])
    (greedy,) = real_generate([trajs[0].token_ids[: trajs[0].prompt_len]],
                              SamplingParams(temperature=0.0, max_new_tokens=16))
    (again,) = real_generate([trajs[0].token_ids[: trajs[0].prompt_len]],
                             SamplingParams(temperature=0.0, max_new_tokens=16))
    for t in trajs:
        t.check()
        gen = [i for i, m in enumerate(t.loss_mask) if m]
        print(json.dumps({
            "source": t.entropy_source.value, "prompt_len": t.prompt_len, "generated": len(gen),
            "logprobs_ok": all(t.logprobs[i] <= 1e-6 and math.isfinite(t.logprobs[i]) for i in gen),
            "entropies_ok": all(t.entropies[i] >= 0 for i in gen),
            "contexts_are_prefixes": all(c == t.token_ids[: len(c)] for c in contexts
                                         if c[: t.prompt_len] == t.token_ids[: t.prompt_len]),
            "reward": t.reward, "done": t.terminated or t.truncated,
        }))
    print(json.dumps({"greedy_repeatable": greedy.token_ids == again.token_ids and len(greedy.token_ids) > 0}))
