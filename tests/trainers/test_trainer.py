"""The training loop on a tiny random model (CPU): weights change, checkpoints are written, SIGKILL +
restart resumes from the last checkpoint; the AEPO/LoRA/KL/hard-advantage paths run and train."""
import json
import signal
import subprocess
import sys

import pytest
import torch

from arpo_env.trainers.checkpoint import latest_checkpoint
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.metrics import read_metrics
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.helpers.waiting import wait_until

# ``tests.helpers.smoke_env`` registers test/DigitsCalculator-v0. The ``arpo train`` subprocesses run as
# ``python -m arpo_env.cli`` with the repository root as working directory, so ``tests`` imports there
# (``-m`` puts the working directory first on ``sys.path``); nothing is added to PYTHONPATH.
TINY = dict(model="tiny", env_id="test/DigitsCalculator-v0", imports=["tests.helpers.smoke_env"],
            prompts_per_step=2, rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2),
            max_response_tokens=40, max_turn_tokens=16,
            micro_batch_size=4, lr=1e-3, progress=False, tensorboard=False)


def test_cli_train_changes_weights_and_resumes_after_sigkill(tmp_path):
    from safetensors.torch import load_file

    from arpo_env.agents.testing import tiny_model_and_tokenizer

    out = tmp_path / "run"
    cfg_path = tmp_path / "run.yaml"
    TrainConfig(**{**TINY, "tensorboard": True}, steps=4, save_every=1, output_dir=str(out)).to_yaml(cfg_path)
    cmd = [sys.executable, "-m", "arpo_env.cli", "train", "--config", str(cfg_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until(lambda: latest_checkpoint(out / "checkpoints") is not None or proc.poll() is not None, timeout=240)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(json.loads((latest_checkpoint(out / "checkpoints") / "state.json").read_text())["step"])
    assert 1 <= killed_at < 4
    ckpt = latest_checkpoint(out / "checkpoints")
    names = {p.name for p in ckpt.iterdir()}
    assert {"model.safetensors", "optimizer.pt", "rng.pt", "state.json", "config.json", "generation_config.json",
            "tokenizer.json"} <= names  # a Hugging Face model folder plus the training state
    assert set(json.loads((ckpt / "state.json").read_text())["files"]) == names - {"state.json"}
    # the weights moved away from the initial tiny model
    init, _ = tiny_model_and_tokenizer(seed=0)
    saved = load_file(str(ckpt / "model.safetensors"))
    diff = max((saved[k] - v).abs().max().item() for k, v in init.state_dict().items() if k in saved)
    assert diff > 1e-5

    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    resumed = [l for l in res.stdout.splitlines() if l.startswith("resumed from")]
    assert resumed and f"at step {killed_at}" in resumed[0]
    assert "done: step 4" in res.stdout
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # every step once, redone steps not duplicated
    assert all(r["trained_tokens"] > 0 and r["grad_norm"] > 0 for r in rows)
    assert {"reward", "accuracy", "tool_calls_per_sample", "branches", "branch_entropy", "time_gen",
            "time_tools", "time_update", "generated_tokens"} <= set(rows[0])
    state = json.loads((latest_checkpoint(out / "checkpoints") / "state.json").read_text())
    assert state["step"] == 4 and state["data_pos"] == 8
    assert len(list((out / "checkpoints").glob("step_*"))) == 2  # keep_checkpoints
    assert list((out / "tb").glob("events.out.tfevents*"))


def test_aepo_lora_kl_hard_step_trains(tmp_path):
    from arpo_env.trainers.trainer import Trainer

    aepo = BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2, dynamic_split=True, branch_penalty=True)
    cfg = TrainConfig(**{**TINY, "imports": [], "rollout": aepo}, steps=1, save_every=0, output_dir=str(tmp_path),
                      advantage="hard", lora=True, lora_r=4, kl_coef=0.05, entropy_aware_advantage=True,
                      entropy_balanced_clip=True, eval_every=1,
                      eval_prompts=2)
    import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0
    tr = Trainer(cfg)
    assert tr.ref_model is not None
    lora = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    assert lora and all("lora" in n for n in lora)
    m = tr.train()[0]
    tr.close()
    assert m["trained_tokens"] > 0 and m["kl"] >= 0 and "entropy_mean" in m and "eval_accuracy" in m
    changed = [n for n, p in tr.model.named_parameters() if p.requires_grad and not torch.equal(p, lora[n])]
    assert changed
    # no reference model when kl_coef is 0
    tr2 = Trainer(TrainConfig(**{**TINY, "imports": [], "rollout": BranchingConfig(algorithm="grpo", rollouts_per_prompt=4, initial_rollouts=2)},
                              steps=0, output_dir=str(tmp_path / "b")))
    assert tr2.ref_model is None and tr2.rollout.cfg.branching is False


def test_eval_through_the_benchmark_runner_writes_a_result_folder(tmp_path):
    import tests.helpers.smoke_env  # noqa: F401
    from arpo_env.benchmarks.results import load_folder
    from arpo_env.trainers.trainer import Trainer

    tr = Trainer(TrainConfig(**{**TINY, "imports": []}, steps=0, output_dir=str(tmp_path),
                             eval_benchmark="gsm8k", eval_prompts=2))
    try:
        metrics = tr.evaluate()
    finally:
        tr.close()
    assert set(metrics) == {"eval_gsm8k_score", "eval_gsm8k_tool_calls"}
    meta, rows = load_folder(tmp_path / "eval" / "step_0")
    assert len(rows) == 2 and {r["benchmark"] for r in rows} == {"gsm8k"}
    assert metrics["eval_gsm8k_score"] == pytest.approx(sum(r["score"] for r in rows) / 2)
    assert meta["method"] == "arpo"
    assert meta["envs"]["gsm8k"]["env_id"] == "test/DigitsCalculator-v0"  # the trained env, not gsm8k's own


def test_data_system_prompt_reaches_the_env(tmp_path):
    import arpo_env
    from arpo_env.trainers.data import FileTasks

    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    stream = FileTasks(data, use_system_prompt=True)
    stream.rows[0].metadata["system_prompt"] = "Use \\boxed{}."
    task = stream.get(0)
    assert isinstance(task, arpo_env.Task) and task.question == "2+2?" and task.answer == ["4"]
    _, info = arpo_env.make("arpo/Calculator-v0").reset(options=stream.options(task))
    assert info["system_prompt"] == "Use \\boxed{}." and info["messages"][0]["content"] == "Use \\boxed{}."
    plain = FileTasks(data)
    plain.rows[0].metadata["system_prompt"] = "Use \\boxed{}."
    _, info = arpo_env.make("arpo/Calculator-v0").reset(options=plain.options(plain.get(0)))
    assert "<calculator>" in info["system_prompt"]
