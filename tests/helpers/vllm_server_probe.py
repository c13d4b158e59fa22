"""Run under the vLLM venv's python (see tests/trainers/test_rollout_engine_vllm.py): one dev-mode ``vllm serve``
of the embedded SmolLM2 (started by ``rollout_engine.start_servers``), HTTP weight pushes compared with
transformers, a 2-step ``vllm-server`` training run against it, then a push to it once it is dead. Prints
one JSON line per check. argv: work folder, port (the model is the embedded SmolLM2 of this venv)."""
import json
import os
import sys
import time
from pathlib import Path


def server_greedy(backend, ids, n):
    from arpo_env import SamplingParams
    (g,) = backend.generate([ids], SamplingParams(temperature=0.0, max_new_tokens=n, top_p=1.0, top_k=-1,
                                                  repetition_penalty=1.0, logprobs_topk=1))
    return g.token_ids, g.logprobs


if __name__ == "__main__":
    import torch

    from arpo_env.agents.backends.openai import OpenAIBackend
    from arpo_env.agents.models import embedded_model_dir, load_model_and_tokenizer
    from arpo_env.trainers.rollout_engine import ServerRollouts, start_servers, stop_servers
    from arpo_env.trainers.weight_sync import HTTPSync, WeightSyncError
    from vllm_sync_probe import hf_greedy

    torch.set_num_threads(2)
    path, work, port = str(embedded_model_dir()), Path(sys.argv[1]), int(sys.argv[2])
    model, tok = load_model_and_tokenizer(path, device="cpu", dtype=torch.float32)
    flags = {"dtype": "float32", "max_logprobs": 20, "logprobs_mode": "processed_logprobs",
             "enable_prefix_caching": True, "enforce_eager": True, "max_model_len": 2048}
    procs, urls = start_servers(Path(path), 1, port, flags, log_dir=work)
    try:
        backend = OpenAIBackend(tokenizer=tok, base_url=urls[0] + "/v1")

        def reference(_named, ids):
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
            return lp.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()

        probe = tok(ServerRollouts.PROBE_TEXT, add_special_tokens=False)["input_ids"]
        sync = HTTPSync(urls, work / "weights", str(backend.model), probe_ids=probe, reference=reference, timeout=60)
        long = tok(" ".join(f"item {i} is the number {i * 7 % 13};" for i in range(40)),
                   add_special_tokens=False)["input_ids"]

        def compare(name):
            a_ids, a_lp = server_greedy(backend, long, 12)
            b_ids, b_lp = hf_greedy(model, long, 12)
            print(json.dumps({"check": name, "tokens_equal": a_ids == b_ids, "n": len(a_ids),
                              "max_gap": max(abs(x - y) for x, y in zip(a_lp, b_lp))}), flush=True)

        compare("baseline")
        orig = {k: v.clone() for k, v in model.state_dict().items()}
        g = torch.Generator().manual_seed(0)
        model.load_state_dict({k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g) if v.ndim == 2 else v * 1.01
                               for k, v in orig.items()})
        t0 = time.perf_counter()
        fp = sync.push(model.state_dict().items(), 1)
        print(json.dumps({"check": "push1", "version": fp.version, "seconds": time.perf_counter() - t0,
                          "dirs": sorted(os.listdir(work / "weights"))}), flush=True)
        compare("perturbed")
        model.load_state_dict(orig)
        sync.push(model.state_dict().items(), 2)
        compare("restored")
        # a push the server did not apply is caught by the probe log-probs
        sync.reference = lambda _n, ids: [x + 0.5 for x in reference(_n, ids)]
        try:
            sync.push(model.state_dict().items(), 3)
            print(json.dumps({"check": "wrong_reference", "detected": False}), flush=True)
        except WeightSyncError as exc:
            print(json.dumps({"check": "wrong_reference", "detected": True, "msg": str(exc)[:120]}), flush=True)
        backend.close()

        # the trainer's vllm-server mode against this server: 2 steps, the adapter-merged default model
        from arpo_env.trainers.config import BranchingConfig, TrainConfig
        from arpo_env.trainers.trainer import Trainer
        cfg = TrainConfig(env_id="arpo/Calculator-v0", rollout_backend="vllm-server",
                          vllm_kwargs={"base_urls": urls, "timeout": 120}, steps=2, prompts_per_step=1,
                          rollout=BranchingConfig(rollouts_per_prompt=2, initial_rollouts=1, alpha=1.0, beta=0.0),
                          max_response_tokens=192, max_turn_tokens=64, lr=1e-5, micro_batch_size=4, save_every=0,
                          tensorboard=False, progress=False, samples_per_step=0, output_dir=str(work / "run"))
        with Trainer(cfg) as tr:
            rows = tr.train()
        print(json.dumps({"check": "train", "rows": [{k: r[k] for k in ("weight_version", "rollout_logprob_gap",
                                                                        "branches", "tool_calls_per_sample",
                                                                        "time_push")} for r in rows]}), flush=True)
    finally:
        stop_servers(procs)
    t0 = time.perf_counter()
    try:
        sync.reference = reference
        sync.timeout = 5.0
        sync.push(model.state_dict().items(), 4)
        print(json.dumps({"check": "dead", "raised": False}), flush=True)
    except WeightSyncError as exc:
        print(json.dumps({"check": "dead", "raised": True, "seconds": time.perf_counter() - t0,
                          "msg": str(exc)[:120]}), flush=True)
    print(json.dumps({"check": "done", "engine_starts": 1}), flush=True)
