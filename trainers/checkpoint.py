"""Atomic, resumable checkpoints.

A checkpoint is a directory ``output_dir/checkpoints/step_00000012/`` holding:
``model.safetensors`` (every parameter and buffer of the trained model, LoRA adapters included),
``optimizer.pt`` (AdamW state), ``rng.pt`` (torch CPU/CUDA generator states), ``state.json`` (step, data
position, Python/NumPy/branch RNG states, the config). It is written into a ``.tmp-*`` directory, every
file fsynced, then renamed into place (atomic on POSIX), so a SIGKILL at any moment leaves either the
previous complete checkpoints or the new one, never a partial ``step_*``. Stale ``.tmp-*`` directories are
removed on the next save or load. Only the newest ``keep`` checkpoints are kept.

Not covered: sharded (FSDP) checkpoints.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

PREFIX = "step_"


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def rng_state(branch_rng: np.random.Generator | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able states of Python, NumPy's global and the branch RNG; torch generator states)."""
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state()  # the legacy tuple form
    js: dict[str, Any] = {"python": [version, list(internal), gauss],
          "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
          "branch": branch_rng.bit_generator.state if branch_rng is not None else None}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return js, tensors


def set_rng_state(js: dict[str, Any], tensors: dict[str, Any], branch_rng: np.random.Generator | None = None) -> None:
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if branch_rng is not None and js.get("branch") is not None:
        branch_rng.bit_generator.state = js["branch"]
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])


def checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (``output_dir/checkpoints``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def _clean_tmp(root: Path) -> None:
    for p in root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], branch_rng: np.random.Generator | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically; ``state`` is extra JSON (data position, config, ...)."""
    require("train", "safetensors", needed_by="saving a checkpoint")
    from safetensors.torch import save_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_tmp(root)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    js, tensors = rng_state(branch_rng)
    torch.save(tensors, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": js}, indent=1))
    for f in tmp.iterdir():
        _fsync_file(f)
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    branch_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Restore model, optimizer and RNG states from ``path``; returns ``state.json``."""
    require("train", "safetensors", needed_by="loading a checkpoint")
    from safetensors.torch import load_model

    path = Path(path)
    _clean_tmp(path.parent)
    device = next(model.parameters()).device
    load_model(model, str(path / "model.safetensors"), device=str(device))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    state = json.loads((path / "state.json").read_text())
    set_rng_state(state["rng"], torch.load(path / "rng.pt", weights_only=True), branch_rng)
    return state
