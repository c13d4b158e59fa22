"""Atomic, resumable checkpoints.

A checkpoint is a directory ``output_dir/checkpoints/step_00000012/`` holding:
``model.safetensors`` (every parameter and buffer of the trained model, LoRA adapters included),
``optimizer.pt`` (AdamW state), ``rng.pt`` (torch CPU/CUDA generator states), ``state.json`` (step, data
position, Python/NumPy/branch RNG states, the config). It is written into a ``.tmp-*`` directory, every
file fsynced, then renamed into place (atomic on POSIX), so a SIGKILL at any moment leaves either the
previous complete checkpoints or the new one, never a partial ``step_*``. Stale ``.tmp-*`` directories are
removed on the next save or load (one writer per output folder: the trainer holds its lock). Only the
newest ``keep`` checkpoints are kept.

Integrity: ``state.json`` records the SHA-256 and size of every other file (``files``) and the SHA-256 of
its own content (``state_sha256``, over the canonical JSON of everything else), so a truncated file or a
flipped bit anywhere is found before anything is loaded (:func:`verify_checkpoint` raises
:class:`CheckpointInvalid` naming the file and why). :func:`load_latest_valid` resumes from the newest
checkpoint that verifies and loads, logging one line per skipped one. Checkpoints written before the
checksums existed (neither key present) load unverified, with a warning.

Not covered: sharded (FSDP) checkpoints; damage made on purpose (the checksums sit beside the data).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

PREFIX = "step_"
DATA_FILES = ("model.safetensors", "optimizer.pt", "rng.pt")
"""The files whose checksums ``state.json`` records."""
log = logging.getLogger(__name__)


class CheckpointInvalid(ValueError):
    """A checkpoint that fails verification or loading; ``reason`` names the file and what is wrong."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"checkpoint {path}: {reason}")


class NoValidCheckpoint(RuntimeError):
    """Checkpoints exist but none of them verifies and loads."""

    def __init__(self, root: Path, reasons: list[str]):
        self.root, self.reasons = root, reasons
        super().__init__(f"no valid checkpoint in {root} ({'; '.join(reasons)}); delete the damaged ones to "
                         "start over, or use another output folder")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical_sha256(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    files = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in DATA_FILES}
    payload = json.loads(json.dumps({**state, "step": step, "rng": js, "files": files}))  # as it reads back
    (tmp / "state.json").write_text(json.dumps({**payload, "state_sha256": _canonical_sha256(payload)}, indent=1))
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


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint after checking it and every file against the recorded checksums;
    raises :class:`CheckpointInvalid` (e.g. ``model.safetensors is truncated (1000 of 2000 bytes)``)."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_bytes().decode("utf-8"))
        if not isinstance(state, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        raise CheckpointInvalid(path, "state.json is missing") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointInvalid(path, f"state.json is not valid JSON (truncated or damaged: {exc})") from None
    claimed, files = state.pop("state_sha256", None), state.get("files")
    if claimed is None and files is None:
        log.warning("checkpoint %s has no checksums (written by an older version); loading it unverified", path)
        return state
    if claimed != _canonical_sha256(state) or not isinstance(files, dict):
        raise CheckpointInvalid(path, "state.json checksum mismatch (damaged)")
    for name in DATA_FILES:
        f, want = path / name, files.get(name) or {}
        if not f.is_file():
            raise CheckpointInvalid(path, f"{name} is missing")
        size = f.stat().st_size
        if size != want.get("bytes"):
            what = "is truncated" if size < int(want.get("bytes") or 0) else "has the wrong size"
            raise CheckpointInvalid(path, f"{name} {what} ({size} of {want.get('bytes')} bytes)")
        if _sha256(f) != want.get("sha256"):
            raise CheckpointInvalid(path, f"{name} checksum mismatch (damaged)")
    return state


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    branch_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Verify ``path`` (:func:`verify_checkpoint`), then restore model, optimizer and RNG states from it;
    returns ``state.json``. Raises :class:`CheckpointInvalid` when a file fails to verify or to load
    (every file is read before the model, optimizer and RNGs are changed)."""
    require("train", "safetensors", needed_by="loading a checkpoint")
    from safetensors.torch import load_model

    path = Path(path)
    _clean_tmp(path.parent)
    state = verify_checkpoint(path)
    device = next(model.parameters()).device

    def read(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any parse failure means this file is unusable
            raise CheckpointInvalid(path, f"{name} cannot be loaded ({type(exc).__name__}: {exc})") from None

    opt_state = read("optimizer.pt", lambda: torch.load(path / "optimizer.pt", map_location=device,
                                                        weights_only=True)) if optimizer is not None else None
    rng_tensors = read("rng.pt", lambda: torch.load(path / "rng.pt", weights_only=True))
    if "rng" not in state:
        raise CheckpointInvalid(path, "state.json has no RNG state")
    read("model.safetensors", lambda: load_model(model, str(path / "model.safetensors"), device=str(device)))
    if optimizer is not None:
        read("optimizer.pt", lambda: optimizer.load_state_dict(opt_state))
    read("rng.pt", lambda: set_rng_state(state["rng"], rng_tensors, branch_rng))
    return state


def load_latest_valid(root: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                      branch_rng: np.random.Generator | None = None,
                      report: Callable[[str], None] = log.warning) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest checkpoint under ``root`` that verifies and loads; ``None`` when there is none.

    Each damaged one is reported as one line (``skipping checkpoint step_00000003: model.safetensors is
    truncated (1000 of 2000 bytes)``) and the previous one is tried (a failed load may have changed the
    model, but the next successful load overwrites every parameter, the optimizer state and the RNGs).
    Raises :class:`NoValidCheckpoint` when checkpoints exist but none is valid."""
    root = Path(root)
    reasons = []
    for path in reversed(checkpoints(root)):
        try:
            return path, load_checkpoint(path, model, optimizer, branch_rng)
        except CheckpointInvalid as exc:
            reasons.append(f"{path.name}: {exc.reason}")
            report(f"skipping checkpoint {path.name}: {exc.reason}")
    if reasons:
        raise NoValidCheckpoint(root, reasons)
    return None
