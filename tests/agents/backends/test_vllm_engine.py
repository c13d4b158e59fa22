"""The offline ``vllm`` backend for real: vLLM's CPU build (in its own venv, see
scripts/setup_vllm_venv.sh) serves the embedded SmolLM2 to the rollout loop. Slow (~1 min)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.helpers.vllm_support import vllm_env, vllm_python

pytestmark = pytest.mark.slow
PROBE = ROOT / "tests" / "helpers" / "vllm_rollout_probe.py"


def test_rollout_through_the_offline_vllm_engine():
    from arpo_env.agents.models import embedded_model_dir
    py = vllm_python()
    proc = subprocess.run([py, str(PROBE), str(embedded_model_dir())], env=vllm_env(),
                          capture_output=True, text=True, timeout=600, cwd=PROBE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    trajs, summary = lines[:-1], lines[-1]
    assert len(trajs) == 4 and summary["greedy_repeatable"]
    for t in trajs:
        assert t["source"] == "topk" and t["generated"] > 0 and t["done"]
        assert t["logprobs_ok"] and t["entropies_ok"] and t["contexts_are_prefixes"]
