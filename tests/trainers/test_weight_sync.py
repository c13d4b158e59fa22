"""Weight sync into a real vLLM engine (CPU build, its own venv: scripts/setup_vllm_venv.sh): one in-process
engine on the embedded SmolLM2 takes perturbed and original weights through ``InProcessSync`` and
``DiskSync``; its greedy tokens and log-probs must equal transformers' with the same weights. One engine
start (~1-3 min on CPU)."""
from __future__ import annotations

import json
import subprocess

import pytest

from arpo_env.trainers.weight_sync import Fingerprint, WeightSyncError, checksum, verify, write_version_dir
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.helpers.vllm_support import vllm_env, vllm_python

PROBE = ROOT / "tests" / "helpers" / "vllm_sync_probe.py"


def test_verify_detects_a_stale_version_and_a_wrong_checksum():
    import torch
    named = [("model.norm.weight", torch.ones(4)), ("model.layers.0.mlp.up_proj.weight", torch.ones(2, 2))]
    fp = Fingerprint(3, checksum(named))
    assert fp.checksum == 8.0  # sum + sum of squares of the norm only (linear weights are not in the set)
    assert verify(fp, Fingerprint(3, 8.0)) == fp
    with pytest.raises(WeightSyncError, match="version 2"):
        verify(fp, Fingerprint(2, 8.0))
    with pytest.raises(WeightSyncError, match="checksum"):
        verify(fp, Fingerprint(3, 8.5))


def test_version_folders_are_written_whole_and_pruned(tmp_path):
    import torch
    w = torch.zeros(3)
    named = [("a.weight", w), ("b.weight", w)]  # shared storage (tied weights) must still save
    for v in range(4):
        write_version_dir(tmp_path, named, v, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v00000002", "v00000003"]
    assert (tmp_path / "v00000003" / "model.safetensors").is_file()


@pytest.mark.slow
def test_pushes_into_an_in_process_engine_match_transformers():
    from arpo_env.agents.models import embedded_model_dir
    py = vllm_python()
    proc = subprocess.run([py, str(PROBE), str(embedded_model_dir())], env=vllm_env(), capture_output=True,
                          text=True, timeout=900, cwd=PROBE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = {d["check"]: d for d in map(json.loads, (ln for ln in proc.stdout.splitlines() if ln.startswith("{")))}
    for name in ("baseline", "baseline_long", "perturbed", "perturbed_long", "restored", "disk_perturbed"):
        assert r[name]["tokens_equal"] and r[name]["max_gap"] < 1e-3, r[name]
    assert r["baseline_long"]["prompt_len"] > 128  # longer than one CPU KV block
    # a reload without a prefix-cache reset serves the long prompt from KV of the old weights
    assert r["stale_no_reset"]["max_gap"] > 10 * r["perturbed_long"]["max_gap"]
    assert r["stale_no_reset"]["max_gap"] > 1e-3
    assert r["push1"] == {"check": "push1", "version": 1, "match": True}
    assert r["skipped"]["detected"]
    assert r["restore"]["version"] == 2 and r["restore"]["max_gap_to_baseline"] < 1e-3
    assert r["disk"]["version"] == 5 and r["disk"]["dirs"] == ["v00000004", "v00000005"]
