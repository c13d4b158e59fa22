"""Run under the vLLM venv's python (see tests/trainers/test_weight_sync.py): one in-process engine on the
embedded SmolLM2, several weight pushes; prints one JSON line per check."""
import json
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: tensors pass as tensors


from greedy_compare import hf_greedy, vllm_greedy  # noqa: E402  (the script folder is on sys.path)

if __name__ == "__main__":
    import torch
    import vllm

    from arpo_env.agents.models import load_model_and_tokenizer
    from arpo_env.trainers.weight_sync import DiskSync, InProcessSync, WeightSyncError, checksum, read_fingerprint
    torch.set_num_threads(2)
    path = sys.argv[1]
    model, tok = load_model_and_tokenizer(path, device="cpu", dtype=torch.float32)
    model.eval()
    llm = vllm.LLM(model=path, dtype="float32", max_model_len=1024, enable_prefix_caching=True,
                   enforce_eager=True, max_logprobs=20)
    sync = InProcessSync(llm)
    orig = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    pert = {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g) if v.ndim == 2 else v * 1.01
            for k, v in orig.items()}
    short = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    long = tok(" ".join(f"item {i} is the number {i * 7 % 13};" for i in range(40)),
               add_special_tokens=False)["input_ids"]

    def compare(name, ids):
        a_ids, a_lp = vllm_greedy(llm, ids, 12)
        b_ids, b_lp = hf_greedy(model, ids, 12)
        print(json.dumps({"check": name, "tokens_equal": a_ids == b_ids,
                          "max_gap": max(abs(x - y) for x, y in zip(a_lp, b_lp)), "prompt_len": len(ids)}))
        return a_lp

    base = compare("baseline", short)
    base_long = compare("baseline_long", long)
    # stale cache: reload without reset, then the long prompt (cached before) is served from old KV
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(list(pert.items())),
                                                 "is_checkpoint_format": True})
    model.load_state_dict(pert)
    stale_ids, stale_lp = vllm_greedy(llm, long, 12)
    hf_ids, hf_lp = hf_greedy(model, long, 12)
    print(json.dumps({"check": "stale_no_reset", "max_gap": max(abs(x - y) for x, y in zip(stale_lp, hf_lp)),
                      "tokens_equal": stale_ids == hf_ids}))
    fp = sync.push(model.state_dict().items(), 1)
    print(json.dumps({"check": "push1", "version": fp.version,
                      "match": fp.checksum == checksum(model.state_dict().items())}))
    compare("perturbed", short)
    compare("perturbed_long", long)
    # a skipped push: the trainer moves on to version 2, the engine still holds version 1
    try:
        from arpo_env.trainers.weight_sync import Fingerprint, verify
        verify(Fingerprint(2, checksum(orig.items())), read_fingerprint(llm))
        print(json.dumps({"check": "skipped", "detected": False}))
    except WeightSyncError as exc:
        print(json.dumps({"check": "skipped", "detected": True, "msg": str(exc)[:80]}))
    model.load_state_dict(orig)
    fp = sync.push(model.state_dict().items(), 2)
    restored = compare("restored", short)
    print(json.dumps({"check": "restore", "version": fp.version,
                      "max_gap_to_baseline": max(abs(x - y) for x, y in zip(restored, base))}))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        disk = DiskSync(llm, d, keep=2)
        model.load_state_dict(pert)
        for v in (3, 4, 5):
            fp = disk.push(model.state_dict().items(), v)
        print(json.dumps({"check": "disk", "version": fp.version, "dirs": sorted(os.listdir(d))}))
        compare("disk_perturbed", long)
    print(json.dumps({"check": "done", "engine_starts": 1}))
