"""Atomic, resumable checkpoints that are also Hugging Face model folders.

A checkpoint is a directory ``output_dir/checkpoints/step_00000012/`` holding:

- the model as ``save_pretrained`` writes it: ``config.json``, ``generation_config.json``,
  ``model.safetensors`` (or shards and their index), and the tokenizer's files, so that
  ``AutoModelForCausalLM.from_pretrained(step_dir)``, ``load_agent("hf", model=step_dir)``, vLLM and
  ``arpo eval --model`` load it as it is. With LoRA the weights there are MERGED (base + adapters, the
  model the policy samples from); the adapters themselves are in ``adapter/`` (peft's
  ``adapter_model.safetensors`` and ``adapter_config.json``), which is what a resume loads (over the base
  that ``cfg.model`` names: the base is frozen, so it equals the one trained on);
- the training state: ``optimizer.pt`` (AdamW state), ``rng.pt`` (torch CPU/CUDA generator states),
  ``state.json`` (step, data position, Python/NumPy/branch RNG states, the config, ``layout``).

It is written into a ``.tmp-*`` directory, every file fsynced, then renamed into place (atomic on POSIX),
so a SIGKILL at any moment leaves either the previous complete checkpoints or the new one, never a
partial ``step_*``. Stale ``.tmp-*`` directories are removed on the next save or load (one writer per
output folder: the trainer holds its lock). Only the newest ``keep`` checkpoints are kept.

Integrity: ``state.json`` records the SHA-256 and size of every other file of the folder (``files``) and
the SHA-256 of its own content, so a truncated file or a flipped bit anywhere is found before anything is
loaded (:func:`verify_checkpoint`, in :mod:`arpo_env.checkpoints` so that ``arpo eval`` verifies without
torch, raises :class:`CheckpointInvalid` naming the file and why). :func:`load_latest_valid` resumes from
the newest checkpoint that verifies and loads, logging one line per skipped one. Checkpoints written
before the checksums existed load unverified, with a warning; ones written before the model-folder layout
(one ``model.safetensors`` of the whole module) still resume.

Runs of world size > 1 (DDP, FSDP2 sharded state) write theirs with :mod:`arpo_env.trainers.dist_checkpoint`.
Not covered: a model that is not a transformers ``PreTrainedModel`` is saved
as one ``model.safetensors`` without config (it resumes but is no model folder); damage made on purpose.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.checkpoints import (
    PREFIX,
    CheckpointInvalid,
    NoValidCheckpoint,
    checkpoints,
    latest_checkpoint,
    verify_checkpoint,
    write_state,
)
from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

__all__ = ["PREFIX", "CheckpointInvalid", "NoValidCheckpoint", "checkpoints", "latest_checkpoint",
           "load_checkpoint", "load_latest_valid", "merged_state_dict", "save_checkpoint", "verify_checkpoint"]
LAYOUT = "hf-1"
"""``state.json["layout"]`` of model-folder checkpoints (absent: one ``model.safetensors`` of the module)."""
ADAPTER = "adapter"
log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The base model's state dict with every active LoRA adapter added into its layer's weight (names as
    the base model has them, ``lora_*`` entries dropped); the model itself is left unchanged (no
    merge/unmerge round trip, which would move the frozen base weights by rounding)."""
    require("train", "peft", needed_by="a LoRA checkpoint")
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas: dict[str, torch.Tensor] = {}
    for name, mod in base.named_modules():
        if isinstance(mod, LoraLayer):
            for adapter in mod.active_adapters:
                if adapter in mod.lora_A or adapter in getattr(mod, "lora_embedding_A", {}):
                    d = mod.get_delta_weight(adapter).detach()
                    deltas[name] = deltas[name] + d if name in deltas else d
    out: dict[str, torch.Tensor] = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        if ".base_layer." in key:
            owner, _, leaf = key.partition(".base_layer.")
            key = f"{owner}.{leaf}"
            if leaf == "weight" and owner in deltas:
                value = value + deltas[owner].to(value.dtype)
        out[key] = value.detach()
    return out


def _write_model(folder: Path, model: Any, tokenizer: Any) -> None:
    """The model (merged when LoRA), its configs and the tokenizer as a Hugging Face model folder."""
    if is_peft(model):
        model.save_pretrained(str(folder / ADAPTER), safe_serialization=True)
        model.get_base_model().save_pretrained(str(folder), state_dict=merged_state_dict(model),
                                               safe_serialization=True)
    elif hasattr(model, "save_pretrained"):
        model.save_pretrained(str(folder), safe_serialization=True)
    else:
        from safetensors.torch import save_model
        save_model(model, str(folder / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [path / "model.safetensors"]


def _load_model(path: Path, model: Any, state: dict[str, Any], device: torch.device) -> None:
    from safetensors.torch import load_file, load_model

    if state.get("layout") != LAYOUT:  # one file of the whole module (peft names included)
        load_model(model, str(path / "model.safetensors"), device=str(device))
        return
    if is_peft(model):
        require("train", "peft", needed_by="a LoRA checkpoint")
        from peft import set_peft_model_state_dict
        adapter = load_file(str(path / ADAPTER / "adapter_model.safetensors"), device=str(device))
        res = set_peft_model_state_dict(model, adapter)
        if getattr(res, "unexpected_keys", None):
            raise ValueError(f"unexpected adapter keys {res.unexpected_keys[:3]}")
        return
    sd: dict[str, torch.Tensor] = {}
    for f in _weight_files(path):
        sd.update(load_file(str(f), device=str(device)))
    own = model.state_dict()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    loaded = {own[k].data_ptr() for k in sd if k in own}
    missing = [k for k in missing if own[k].data_ptr() not in loaded]  # tied weights are stored once
    if missing or unexpected:
        raise ValueError(f"weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


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


def _clean_tmp(root: Path) -> None:
    for p in root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], branch_rng: np.random.Generator | None = None, keep: int = 2,
                    tokenizer: Any = None) -> Path:
    """Write checkpoint ``step`` atomically (see the module docstring); ``state`` is extra JSON (data
    position, config, ...); ``tokenizer`` is saved with the model so that the folder loads as a model."""
    require("train", "safetensors", needed_by="saving a checkpoint")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_tmp(root)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    tmp.mkdir()
    _write_model(tmp, model, tokenizer)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    js, tensors = rng_state(branch_rng)
    torch.save(tensors, tmp / "rng.pt")
    layout = {"layout": LAYOUT} if hasattr(model, "save_pretrained") else {}
    write_state(tmp, {**state, **layout, "step": step, "rng": js})
    for f in tmp.rglob("*"):
        if f.is_file():
            _fsync_file(f)
    for d in [*(p for p in tmp.rglob("*") if p.is_dir()), tmp]:
        _fsync_dir(d)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    branch_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Verify ``path`` (:func:`verify_checkpoint`), then restore model, optimizer and RNG states from it;
    returns ``state.json``. Raises :class:`CheckpointInvalid` when a file fails to verify or to load
    (every file is read before the model, optimizer and RNGs are changed)."""
    require("train", "safetensors", needed_by="loading a checkpoint")
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
    read("the model weights", lambda: _load_model(path, model, state, device))
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
