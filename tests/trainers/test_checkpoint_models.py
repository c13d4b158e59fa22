"""Checkpoints are model folders, and an output folder holds one run.

The README's train -> eval -> leaderboard -> export block runs verbatim (as ``python -m arpo_env.cli``,
in a temporary folder); the run it makes is then rerun with a changed ``--lr`` (refused, exit 2, the
difference named, ``config.yaml`` unchanged byte for byte) and as a no-op (nothing in the folder changes).
A LoRA checkpoint loads as the merged model and resumes its adapters; the export loads in vLLM (slow)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.run_folder import RunSettingsChanged, check_run_folder
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.trainers.test_trainer import TINY


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- train-eval-example -->\n```bash\n(.*?)```", text, re.S)
    assert block, "README lost its train-eval-example block"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def arpo(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arpo_env.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    outputs = []
    for cmd in readme_commands():
        assert cmd[0] == "arpo"
        res = arpo(cmd[1:], cwd)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
        outputs.append(res.stdout)
    return cwd, outputs


def test_readme_train_eval_leaderboard_export(readme_run):
    from transformers import AutoModelForCausalLM

    cwd, outputs = readme_run
    step = cwd / "runs/smoke/checkpoints/step_00000002"
    meta = json.loads((cwd / "results/smoke/metadata.json").read_text())
    assert meta["checkpoint"] == {"run": "runs/smoke", "step": 2}
    assert meta["model"] == "smoke@step_00000002"
    assert "smoke @ step 2" in outputs[2]  # the leaderboard row names the checkpoint (run @ step)
    rows = [json.loads(line) for line in (cwd / "results/smoke/results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    exported = cwd / "exported/smoke"
    assert not (exported / "optimizer.pt").exists() and (exported / "model.safetensors").is_file()
    assert json.loads((exported / "arpo_checkpoint.json").read_text()) == {"run": "runs/smoke", "step": 2}
    a = AutoModelForCausalLM.from_pretrained(str(step))
    b = AutoModelForCausalLM.from_pretrained(str(exported))
    assert b.dtype == torch.bfloat16
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        diff = (a(ids).logits - b(ids).logits.float()).abs().max().item()
    assert diff < 0.1  # the same weights, rounded to bf16


def test_changed_lr_is_refused_and_a_noop_changes_nothing(readme_run):
    cwd, _ = readme_run
    train = readme_commands()[0][1:]
    run = cwd / "runs/smoke"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".arpo.lock"}
    res = arpo([*train, "--lr", "1e-3"], cwd)
    assert res.returncode == 2
    assert "lr: 1e-06 -> 0.001" in res.stderr and "--force" in res.stderr and "--new-run" in res.stderr
    assert "Traceback" not in res.stderr
    res = arpo(train, cwd)
    assert res.returncode == 0 and "nothing to do" in res.stdout
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".arpo.lock"}
    assert after == before  # config.yaml, metrics, checkpoints: byte for byte


def test_force_records_and_new_run_archives(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    TrainConfig(**TINY, output_dir=str(out)).to_yaml(out / "config.yaml")
    changed = TrainConfig(**{**TINY, "lr": 5e-4, "steps": 9, "rollout": BranchingConfig(algorithm="grpo",
                          rollouts_per_prompt=4, initial_rollouts=2)}, output_dir=str(out))
    with pytest.raises(RunSettingsChanged) as err:
        check_run_folder(changed)
    assert sorted(err.value.diffs) == ["lr: 0.001 -> 0.0005", "rollout.algorithm: 'arpo' -> 'grpo'"]  # steps free
    assert check_run_folder(changed, force=True) == err.value.diffs
    assert check_run_folder(changed, new_run=True) == []
    assert not (out / "config.yaml").exists() and list((out / "archive").glob("*/config.yaml"))


def test_lora_checkpoint_is_the_merged_model_and_resumes_its_adapters(tmp_path):
    from transformers import AutoModelForCausalLM

    from arpo_env.trainers.trainer import Trainer

    cfg = TrainConfig(**{**TINY, "imports": []}, steps=1, save_every=1, output_dir=str(tmp_path), lora=True, lora_r=4)
    with Trainer(cfg) as tr:
        tr.train()
        ids = torch.tensor([[1, 5, 9, 14]])
        with torch.no_grad():
            want = tr.model(input_ids=ids).logits
        adapters = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    step = tmp_path / "checkpoints/step_00000001"
    assert (step / "adapter/adapter_model.safetensors").is_file() and not (step / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(step))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, want, atol=1e-4)
    with Trainer(cfg) as again:
        assert again.step == 1
        for n, p in again.model.named_parameters():
            if p.requires_grad:
                assert torch.equal(p, adapters[n]), n


VLLM_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams

if __name__ == "__main__":  # vLLM starts its engine with spawn
    llm = LLM(model=sys.argv[1], dtype="bfloat16", max_model_len=256, enforce_eager=True)
    out = llm.generate(["<|im_start|>user\\nWhat is 2+2?<|im_end|>\\n"], SamplingParams(max_tokens=8, temperature=0))
    print("ARPO_RESULT " + json.dumps({"tokens": len(out[0].outputs[0].token_ids)}), flush=True)
"""


@pytest.mark.slow
def test_export_loads_in_vllm(tmp_path):
    from arpo_env.agents.testing import tiny_model_and_tokenizer
    from arpo_env.trainers.export import export_checkpoint
    from arpo_env.trainers.trainer import Trainer
    from tests.helpers.vllm_support import vllm_env, vllm_python

    py = vllm_python()  # skips without the venv; fails under ARPO_REQUIRE_VLLM=1
    model, tok = tiny_model_and_tokenizer(hidden_size=128, num_heads=2, num_kv_heads=1)  # head size 64
    cfg = TrainConfig(**{**TINY, "imports": []}, steps=1, save_every=1, output_dir=str(tmp_path / "run"))
    with Trainer(cfg, model=model, tokenizer=tok) as tr:
        tr.train()
    export_checkpoint(tmp_path / "run", tmp_path / "export", dtype="bf16")
    script = tmp_path / "load_in_vllm.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([py, str(script), str(tmp_path / "export")], env=vllm_env(), capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = [line for line in proc.stdout.splitlines() if line.startswith("ARPO_RESULT ")]  # vLLM logs to stdout too
    assert result, proc.stdout[-3000:]
    assert json.loads(result[-1].removeprefix("ARPO_RESULT "))["tokens"] >= 1
