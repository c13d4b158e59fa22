"""Damaged checkpoints and one trainer per output folder.

A run of 3 steps (a checkpoint after each) is built once; each case copies it, damages one file of the
newest checkpoint (truncated to half, or one bit flipped) and resumes: the damaged checkpoint is reported
by name and skipped, the run resumes from step 2 and its step-3 weights equal the uninterrupted run's."""
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from arpo_env.folder_lock import FolderBusy, FolderLock
from arpo_env.trainers.checkpoint import NoValidCheckpoint, verify_checkpoint
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.trainers.test_trainer import TINY

import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0

FILES = ("model.safetensors", "optimizer.pt", "rng.pt", "state.json")
NEWEST = "checkpoints/step_00000003"


SMALL = {**TINY, "imports": [], "prompts_per_step": 1, "max_response_tokens": 24, "max_turn_tokens": 8,
         "rollout": BranchingConfig(rollouts_per_prompt=2, initial_rollouts=1)}  # cheaper steps


def config(out, **kw):
    return TrainConfig(**{**SMALL, **kw, "output_dir": str(out)}, steps=3, save_every=1, keep_checkpoints=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(folder of an uninterrupted 3-step run, its final weights)."""
    from arpo_env.trainers.trainer import Trainer

    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    from safetensors.torch import load_file

    with Trainer(config(out)) as tr:
        history = tr.train()
        weights = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    assert history[-1]["trained_tokens"] > 0
    step2 = load_file(str(out / "checkpoints/step_00000002/model.safetensors"))
    assert any(not torch.equal(step2[k], weights[k]) for k in step2)  # step 3 moved the weights: equality means something
    return out, weights


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif path.suffix == ".json":  # flip a bit of a digit: still valid JSON, one number changed
        i = next(i for i in range(len(data) // 2, len(data)) if chr(data[i]) in "02468")
        data[i] ^= 0x01
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncate", "bitflip"])
@pytest.mark.parametrize("name", FILES)
def test_damaged_newest_checkpoint_is_skipped_for_the_previous_one(run, tmp_path, caplog, name, how):
    from arpo_env.trainers.trainer import Trainer

    base, want = run
    out = tmp_path / "run"
    shutil.copytree(base, out)
    damage(out / NEWEST / name, how)
    if how == "bitflip" and name == "state.json":
        json.loads((out / NEWEST / name).read_text())  # the flip left valid JSON: only the checksum sees it
    with caplog.at_level(logging.WARNING, logger="arpo_env.trainers.checkpoint"):
        with Trainer(config(out)) as tr:
            assert tr.resumed_from == out / "checkpoints/step_00000002" and tr.step == 2
            tr.train()
            got = tr.model.state_dict()
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 1 and skipped[0].startswith("skipping checkpoint step_00000003: ")
    reason = skipped[0].split(": ", 1)[1]
    if name == "state.json":
        assert reason.startswith("state.json ")
    else:
        assert reason.startswith(name + (" is truncated" if how == "truncate" else " checksum mismatch"))
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    verify_checkpoint(out / NEWEST)  # re-saved intact


def test_no_valid_checkpoint_is_a_clear_error_and_old_checkpoints_load_unverified(run, tmp_path, caplog):
    from arpo_env.trainers.trainer import Trainer

    base, _ = run
    out = tmp_path / "run"
    shutil.copytree(base, out)
    for step in (1, 2, 3):
        damage(out / f"checkpoints/step_{step:08d}/optimizer.pt", "truncate")
    with pytest.raises(NoValidCheckpoint, match="no valid checkpoint in .*step_00000003: optimizer.pt is truncated"):
        Trainer(config(out))
    FolderLock(out, "check").release()  # a failed construction releases the folder

    legacy = tmp_path / "legacy"
    shutil.copytree(base, legacy)
    state_file = legacy / NEWEST / "state.json"
    state = json.loads(state_file.read_text())
    del state["files"], state["state_sha256"]  # as written before checksums existed
    state_file.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="arpo_env.trainers.checkpoint"):
        with Trainer(config(legacy)) as tr:
            assert tr.step == 3
    assert any("no checksums" in r.getMessage() for r in caplog.records)


def test_one_trainer_per_output_folder(tmp_path):
    from arpo_env.trainers.trainer import Trainer

    out = tmp_path / "run"
    cfg_path = tmp_path / "run.yaml"
    config(out, imports=["tests.helpers.smoke_env"]).to_yaml(cfg_path)
    tr = Trainer(config(out))
    try:
        with pytest.raises(FolderBusy, match=r"another arpo train is writing .*; wait for it or use another --output-dir"):
            Trainer(config(out))
        res = subprocess.run([sys.executable, "-m", "arpo_env.cli", "train", "--config", str(cfg_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    finally:
        tr.close()
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        f"arpo train: another arpo train is writing {out} (pid {os.getpid()}); wait for it or use another --output-dir"]
    assert not (out / "checkpoints").exists()
    FolderLock(out, "check").release()  # close() released it
