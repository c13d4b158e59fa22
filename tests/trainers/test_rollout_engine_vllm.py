"""vLLM as the trainer's rollout engine, for real (CPU build in its own venv: scripts/setup_vllm_venv.sh;
skipped without it, failing instead under ``ARPO_REQUIRE_VLLM=1``). One engine start per test (~1-3 min each
on CPU):

- ``arpo train --rollout-backend vllm`` on arpo/Python-v0, 3 ARPO steps on the adapter-merged SmolLM2: every
  rollout samples from the newest weights (the version read back from the engine), the weights change, branches
  fork the env, and the engine's log-probs equal the trainer's recomputed ones;
- a dev-mode ``vllm serve``: HTTP pushes give transformers' greedy outputs, a wrong push is caught, the
  ``vllm-server`` trainer mode runs against it, and a push to it once it is dead raises.
"""
from __future__ import annotations

import json
import socket
import subprocess

import pytest

from arpo_env.trainers.metrics import read_metrics
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.helpers.vllm_support import vllm_env, vllm_python

pytestmark = pytest.mark.timeout(2400)  # engine start + CPU generation on a shared 2-core box
SERVER_PROBE = ROOT / "tests" / "helpers" / "vllm_server_probe.py"


def _lines(stdout: str) -> dict[str, dict]:
    return {d["check"]: d for d in map(json.loads, (ln for ln in stdout.splitlines() if ln.startswith("{")))}


@pytest.mark.slow
def test_arpo_train_with_vllm_rollouts_samples_the_newest_weights(tmp_path):
    py = vllm_python()
    out = tmp_path / "run"
    cmd = [py, "-m", "arpo_env.cli", "train", "--env", "arpo/Python-v0", "--rollout-backend", "vllm",
           "--steps", "3", "--prompts-per-step", "1", "--rollout.rollouts-per-prompt", "4",
           "--rollout.initial-rollouts", "2", "--rollout.alpha", "1.0", "--rollout.beta", "0.0",
           "--max-response-tokens", "256", "--max-turn-tokens", "96", "--lr", "1e-5", "--micro-batch-size", "4",
           "--save-every", "0", "--no-tensorboard", "--no-progress", "--samples-per-step", "8",
           "--output-dir", str(out), "--vllm-kwargs", '{"max_model_len": 2048}']
    proc = subprocess.run(cmd, env=vllm_env(OMP_NUM_THREADS="2"), capture_output=True, text=True, timeout=2300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    # the engine read back the version of every step's weights before its rollout, and they changed
    assert [r["weight_version"] for r in rows] == [0, 1, 2]
    assert len({r["weight_checksum"] for r in rows}) == 3
    assert all(r["trained_tokens"] > 0 for r in rows)
    # the adapter-merged model calls its tool and (P = 1 at every tool call) branches fork the env
    assert sum(r["branches"] for r in rows) > 0 and sum(r["tool_calls_per_sample"] for r in rows) > 0
    gaps = [r["rollout_logprob_gap"] for r in rows]
    assert sum(gaps) / len(gaps) < 0.05, gaps
    # branched leaves share their parent's tokens up to a tool result (the env forked there)
    samples = [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]
    branched = [s for s in samples if s["branch"]]
    assert branched and all(s["segments"][0]["shared"] for s in branched), samples[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_http_sync_to_a_vllm_server_matches_transformers_and_a_dead_server_raises(tmp_path):
    py = vllm_python()
    proc = subprocess.run([py, str(SERVER_PROBE), str(tmp_path), str(_free_port())],
                          env=vllm_env(OMP_NUM_THREADS="2"), capture_output=True, text=True, timeout=2300,
                          cwd=SERVER_PROBE.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = _lines(proc.stdout)
    print(json.dumps(r, indent=1))  # the measured gaps and push seconds (pytest -rP shows them)
    for name in ("baseline", "perturbed", "restored"):
        assert r[name]["tokens_equal"] and r[name]["n"] == 12 and r[name]["max_gap"] < 1e-3, r[name]
    assert r["push1"]["version"] == 1 and r["push1"]["dirs"] == ["v00000001"]
    assert r["wrong_reference"]["detected"]
    versions = [row["weight_version"] for row in r["train"]["rows"]]
    assert versions == [0, 1]
    assert all(row["rollout_logprob_gap"] < 0.05 for row in r["train"]["rows"]), r["train"]
    assert r["dead"]["raised"] and "ConnectError" in r["dead"]["msg"]


TORCHRUN_PROBE = ROOT / "tests" / "helpers" / "vllm_torchrun_probe.py"


@pytest.mark.slow
def test_colocated_engines_under_torchrun_each_equal_transformers_after_their_push(tmp_path):
    """2 gloo ranks, one ``external_launcher`` engine each (vLLM's "external DP": no collectives while
    generating), each pushed weights of its own; rank 1 makes one more generate call than rank 0."""
    from arpo_env.agents.models import embedded_model_dir
    py = vllm_python()
    cmd = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TORCHRUN_PROBE),
           str(embedded_model_dir()), str(tmp_path)]
    proc = subprocess.run(cmd, env=vllm_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=1200,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr  # the engines shut down before the process group goes
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world_size"] == 2 and r["executor"] == "external_launcher" and r["data_parallel_size"] == 1
        assert r["version"] == r["read_back"] == 1 and r["checksum"] == r["trainer_checksum"]
        assert all(c["tokens_equal"] and c["max_gap"] < 1e-3 for c in r["checks"]), r
    assert [len(r["checks"]) for r in ranks] == [2, 3] and ranks[1]["checks"][-1]["prompt_len"] > 128
    assert ranks[0]["checksum"] != ranks[1]["checksum"]  # each rank's engine holds its own weights


@pytest.mark.slow
def test_arpo_train_nproc_2_with_colocated_vllm_engines(tmp_path):
    py = vllm_python()
    out = tmp_path / "run"
    cmd = [py, "-m", "arpo_env.cli", "train", "--nproc", "2", "--parallel", "ddp", "--env", "arpo/Python-v0",
           "--rollout-backend", "vllm", "--steps", "2", "--prompts-per-step", "2",
           "--rollout.rollouts-per-prompt", "4", "--rollout.initial-rollouts", "2", "--rollout.alpha", "1.0",
           "--rollout.beta", "0.0", "--max-response-tokens", "192", "--max-turn-tokens", "96", "--lr", "1e-5",
           "--micro-batch-size", "4", "--save-every", "0", "--no-tensorboard", "--no-progress",
           "--samples-per-step", "0", "--output-dir", str(out), "--vllm-kwargs", '{"max_model_len": 2048}']
    proc = subprocess.run(cmd, env=vllm_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=2300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(r["world_size"] == 2 for r in rows)
    assert [r["weight_version"] for r in rows] == [0, 1]  # every rank's engine held the step's weights
    assert rows[0]["weight_checksum"] != rows[1]["weight_checksum"]
    assert all(r["leaves"] == 8 and r["trained_tokens"] > 0 for r in rows)
    assert all(r["rollout_logprob_gap"] < 0.05 for r in rows), rows
