"""Run by ``torchrun --nproc_per_node=2`` under the vLLM venv's python (see
tests/trainers/test_rollout_engine_vllm.py): every rank joins the gloo group as the trainer does, starts its
own colocated engine (:class:`VLLMRollouts`: ``external_launcher``), pushes weights perturbed with a seed of
its own, and compares its engine's greedy output with transformers' on the same weights. The ranks make a
different number of generate calls (rank r: r + 2 prompts), so an engine that waits on the other rank would
hang. Writes ``OUT/rank{R}.json``."""
import json
import os
import sys
import tempfile
from pathlib import Path

from greedy_compare import hf_greedy, vllm_greedy  # noqa: E402  (the script folder is on sys.path)

if __name__ == "__main__":
    import torch

    from arpo_env.agents.models import load_model_and_tokenizer
    from arpo_env.trainers import distributed as D
    from arpo_env.trainers.rollout_engine import VLLMRollouts, policy_tensors
    from arpo_env.trainers.weight_sync import checksum

    model_dir, out = sys.argv[1], Path(sys.argv[2])
    info = D.init("ddp", timeout_s=600.0, device="cpu")  # the trainer's gloo group; vLLM joins it
    model, tok = load_model_and_tokenizer(model_dir, device="cpu", dtype=torch.float32)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        engine = VLLMRollouts(model, tok, Path(tmp) / f"rank{info.rank}", seed=info.rank,
                              engine_kwargs={"max_model_len": 1024})
        g = torch.Generator().manual_seed(100 + info.rank)  # each rank's weights differ
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * p.std() * torch.randn(p.shape, generator=g) if p.ndim == 2 else 0.01 * p)
        fp = engine.push(model, 1)
        texts = ["The capital of France is", "def add(a, b):\n    return",
                 " ".join(f"item {i} is the number {i * 7 % 13};" for i in range(40))]  # > 128 tokens
        prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts[: info.rank + 2]]
        checks = []
        for ids in prompts:
            a_ids, a_lp = vllm_greedy(engine.llm, ids, 8)
            b_ids, b_lp = hf_greedy(model, ids, 8)
            checks.append({"prompt_len": len(ids), "tokens_equal": a_ids == b_ids,
                           "max_gap": max(abs(x - y) for x, y in zip(a_lp, b_lp))})
        result = {"rank": info.rank, "world_size": info.world_size,
                  "executor": engine.engine_kwargs.get("distributed_executor_backend"),
                  "data_parallel_size": engine.engine_kwargs.get("data_parallel_size", 1),
                  "version": fp.version, "checksum": fp.checksum,
                  "trainer_checksum": checksum(policy_tensors(model)), "read_back": engine.fingerprint().version,
                  "checks": checks, "omp_threads": os.environ.get("OMP_NUM_THREADS")}
        (out / f"rank{info.rank}.json").write_text(json.dumps(result))
        D.barrier("probe end")
        engine.close()
    D.close()
