"""Checkpoints of a run of world size W > 1: every rank writes its part, rank 0 commits atomically.

The folder is the single-process one (:mod:`arpo_env.trainers.checkpoint`: a Hugging Face model folder,
LoRA merged, plus ``state.json`` with the checksums of every file), with:

- ``rank_NNNNN.json`` / ``rank_NNNNN.pt``: each rank's RNG states (Python, NumPy, branch; torch), so that a
  resumed run samples what an uninterrupted one would have;
- DDP (replicas are equal): rank 0 writes the model folder and ``optimizer.pt``;
- FSDP2: ``dcp/`` is the sharded model and optimizer state (``torch.distributed.checkpoint``, every rank
  writes its shards; resume reads them back sharded; ``optimizer.pt`` only says so), and rank 0 writes the model folder from the full
  non-sharded rollout copy (so the checkpoint still loads into vLLM, ``arpo eval`` and ``from_pretrained``).

Commit: all ranks write into ``.tmp-step_N`` (created by rank 0, a barrier between), then after a barrier
rank 0 records the checksums of every file (``state.json``, ``world_size`` and ``parallel`` included),
fsyncs, and renames the folder into place; a SIGKILL of any rank before that rename leaves only the
previous complete checkpoints. Resume (:func:`load_latest`): the newest checkpoint that verifies on every
rank, with a clear error when it was written by another world size or ``parallel``.

Needs one output folder that every rank sees (one node, or a shared file system across nodes).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.checkpoints import (
    PREFIX,
    CheckpointInvalid,
    NoValidCheckpoint,
    checkpoints,
    verify_checkpoint,
    write_state,
)
from arpo_env.extras import missing_extra, require
from arpo_env.trainers import distributed as D
from arpo_env.trainers.checkpoint import (
    LAYOUT,
    _clean_tmp,
    _fsync_dir,
    _fsync_file,
    _load_model,
    _write_model,
    rng_state,
    set_rng_state,
)

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None


def _rank_files(folder: Path, rank: int) -> tuple[Path, Path]:
    return folder / f"rank_{rank:05d}.json", folder / f"rank_{rank:05d}.pt"


def _dcp_state(model: Any, optimizer: Any) -> dict[str, Any]:
    sd = require("train", "torch.distributed.checkpoint.state_dict", needed_by="an FSDP2 checkpoint")
    msd, osd = sd.get_state_dict(model, optimizer)
    return {"model": msd, "optim": osd}


def save(root: str | Path, step: int, info: D.DistInfo, model: Any, full_model: Any, optimizer: Any,
         state: dict[str, Any], branch_rng: np.random.Generator, keep: int, tokenizer: Any) -> Path:
    """Write checkpoint ``step`` (see the module docstring); every rank calls it. ``model`` is the
    trained module (DDP's inner one, or the FSDP2-sharded one), ``full_model`` the non-sharded copy."""
    root = Path(root)
    final, tmp = root / f"{PREFIX}{step:08d}", root / f".tmp-{PREFIX}{step:08d}"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        _clean_tmp(root)
        tmp.mkdir()
    D.barrier("checkpoint start")
    if info.parallel == "fsdp2":
        dcp = require("train", "torch.distributed.checkpoint", needed_by="an FSDP2 checkpoint")
        with D.collective("saving the sharded checkpoint"):
            dcp.save(_dcp_state(model, optimizer), checkpoint_id=str(tmp / "dcp"))
    js, tensors = rng_state(branch_rng)
    jpath, tpath = _rank_files(tmp, info.rank)
    jpath.write_text(json.dumps(js))
    torch.save(tensors, tpath)
    if info.is_main:
        _write_model(tmp, full_model, tokenizer)
        # FSDP2: the optimizer state is sharded in dcp/; optimizer.pt (which every checkpoint has) says so
        torch.save(optimizer.state_dict() if info.parallel != "fsdp2" else {"sharded_in": "dcp"}, tmp / "optimizer.pt")
        torch.save(tensors, tmp / "rng.pt")
    D.barrier("checkpoint parts written")
    if info.is_main:
        layout = {"layout": LAYOUT} if hasattr(full_model, "save_pretrained") else {}
        write_state(tmp, {**state, **layout, "step": step, "rng": js, "world_size": info.world_size,
                          "parallel": info.parallel})
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        for d in [*(p for p in tmp.rglob("*") if p.is_dir()), tmp]:
            _fsync_dir(d)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    D.barrier("checkpoint commit")
    return final


def _check_layout(path: Path, state: dict[str, Any], info: D.DistInfo) -> None:
    ws, par = state.get("world_size", 1), state.get("parallel", "none")
    if ws != info.world_size or par != info.parallel:
        raise ValueError(f"{path} was written by a run of world size {ws} (parallel={par}); resume it with "
                         f"the same launch (--nproc {ws}, --parallel {par}) or start a new run")


def _load(path: Path, state: dict[str, Any], info: D.DistInfo, model: Any, full_model: Any, optimizer: Any,
          branch_rng: np.random.Generator) -> None:
    device = next(full_model.parameters()).device
    js = json.loads(_rank_files(path, info.rank)[0].read_text())
    tensors = torch.load(_rank_files(path, info.rank)[1], weights_only=True)
    if info.parallel == "fsdp2":
        dcp = require("train", "torch.distributed.checkpoint", needed_by="an FSDP2 checkpoint")
        set_state_dict = require("train", "torch.distributed.checkpoint.state_dict").set_state_dict
        sd = _dcp_state(model, optimizer)
        with D.collective("loading the sharded checkpoint"):
            dcp.load(sd, checkpoint_id=str(path / "dcp"))
            set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
        D.sync_full_copy(full_model, model, info)
    else:
        _load_model(path, model, state, device)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    set_rng_state(js, tensors, branch_rng)


def load_latest(root: str | Path, info: D.DistInfo, model: Any, full_model: Any, optimizer: Any,
                branch_rng: np.random.Generator, report: Any = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies and loads on every rank (ranks agree by an all-reduce);
    ``None`` when there is none; :class:`NoValidCheckpoint` when none of those present is valid."""
    reasons = []
    for path in reversed(checkpoints(root)):
        try:
            state = verify_checkpoint(path)
            _check_layout(path, state, info)
            if not _rank_files(path, info.rank)[0].is_file():
                raise CheckpointInvalid(path, f"rank_{info.rank:05d}.json is missing")
            ok = 1.0
        except CheckpointInvalid as exc:
            reasons.append(f"{path.name}: {exc.reason}")
            ok = 0.0
        if D.all_reduce([-ok], op="max")[0] < 0:  # every rank verified it
            _load(path, state, info, model, full_model, optimizer, branch_rng)
            return path, state
        if info.is_main:
            report(f"skipping checkpoint {path.name}: {reasons[-1] if reasons else 'invalid on another rank'}")
    if checkpoints(root):
        raise NoValidCheckpoint(Path(root), reasons or ["invalid on another rank"])
    return None
