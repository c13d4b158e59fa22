"""The on-disk format of training checkpoints, without torch: listing, verifying, resolving a run folder.

``arpo train`` writes ``RUN/checkpoints/step_00000012/``; each such step folder is a Hugging Face model
folder (``config.json``, ``generation_config.json``, tokenizer files, ``model.safetensors`` or its shards;
with LoRA the weights are the base with the adapters merged in, the adapters themselves in ``adapter/``)
plus the training state (``optimizer.pt``, ``rng.pt``, ``state.json``). ``state.json`` records the SHA-256
and size of every other file (``files``) and the SHA-256 of its own content (``state_sha256``).

This module lives in the core so that every layer can take a checkpoint where a model is expected:
:func:`resolve_model_dir` turns a run folder into its newest checkpoint that verifies (a step folder is
verified and kept), and :func:`checkpoint_info` names the run and step of a step folder (``arpo eval``
records it in ``metadata.json`` as ``"checkpoint": {"run": ..., "step": ...}``). The trainer's writing and
loading side is :mod:`arpo_env.trainers.checkpoint`.

Not covered: checkpoints written before the model-folder layout (no ``config.json``): they resume training
but are refused as models, with a message saying so; damage made on purpose (the checksums sit beside the
data).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

PREFIX = "step_"
CHECKPOINTS = "checkpoints"
"""The folder of a run that holds its step folders."""
STATE = "state.json"
LEGACY_FILES = ("model.safetensors", "optimizer.pt", "rng.pt")
"""The files every checkpoint has had; newer ones record every file of the folder in ``files``."""
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


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (the one file hash of the project: checkpoints,
    index files, benchmark data and provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_sha256(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``folder`` except ``state.json``."""
    return {f.relative_to(folder).as_posix(): {"sha256": sha256_file(f), "bytes": f.stat().st_size}
            for f in sorted(folder.rglob("*")) if f.is_file() and f != folder / STATE}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state.json`` with the checksums of every other file of ``folder`` and of itself."""
    payload = json.loads(json.dumps({**state, "files": record_files(folder)}))  # as it reads back
    (folder / STATE).write_text(json.dumps({**payload, "state_sha256": canonical_sha256(payload)}, indent=1))


def checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (``RUN/checkpoints``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit() and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint after checking it and every recorded file against its checksums;
    raises :class:`CheckpointInvalid` (e.g. ``model.safetensors is truncated (1000 of 2000 bytes)``)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_bytes().decode("utf-8"))
        if not isinstance(state, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        raise CheckpointInvalid(path, f"{STATE} is missing") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointInvalid(path, f"{STATE} is not valid JSON (truncated or damaged: {exc})") from None
    claimed, files = state.pop("state_sha256", None), state.get("files")
    if claimed is None and files is None:
        log.warning("checkpoint %s has no checksums (written by an older version); loading it unverified", path)
        return state
    if claimed != canonical_sha256(state) or not isinstance(files, dict):
        raise CheckpointInvalid(path, f"{STATE} checksum mismatch (damaged)")
    for name in sorted(set(files) | set(LEGACY_FILES)):
        f, want = path / name, files.get(name) or {}
        if not f.is_file():
            raise CheckpointInvalid(path, f"{name} is missing")
        size = f.stat().st_size
        if size != want.get("bytes"):
            what = "is truncated" if size < int(want.get("bytes") or 0) else "has the wrong size"
            raise CheckpointInvalid(path, f"{name} {what} ({size} of {want.get('bytes')} bytes)")
        if sha256_file(f) != want.get("sha256"):
            raise CheckpointInvalid(path, f"{name} checksum mismatch (damaged)")
    return state


def is_step_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit() and (p / STATE).is_file()


def is_run_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and bool(checkpoints(Path(path) / CHECKPOINTS))


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder behind ``path``: a run folder gives its newest checkpoint that verifies (damaged
    ones are logged and skipped; :class:`NoValidCheckpoint` when none does), a step folder is verified and
    returned; anything else (a model folder, a hub id) is returned as it is. A checkpoint without
    ``config.json`` (written before checkpoints were model folders) raises :class:`CheckpointInvalid`."""
    p = Path(path).expanduser()
    if is_step_folder(p):
        candidates = [p]
    elif is_run_folder(p):
        candidates = list(reversed(checkpoints(p / CHECKPOINTS)))
    else:
        return Path(path)
    reasons = []
    for c in candidates:
        try:
            verify_checkpoint(c)
            if not (c / "config.json").is_file():
                raise CheckpointInvalid(c, "has no config.json (written by arpo-env before checkpoints were model "
                                           "folders); resume training from it to write a new checkpoint")
            return c
        except CheckpointInvalid as exc:
            if len(candidates) == 1:
                raise
            reasons.append(f"{c.name}: {exc.reason}")
            log.warning("skipping checkpoint %s: %s", c.name, exc.reason)
    raise NoValidCheckpoint(p / CHECKPOINTS, reasons)


EXPORT_INFO = "arpo_checkpoint.json"
"""The file ``arpo export`` writes into an exported model folder: the checkpoint's ``{"run", "step"}``."""


def checkpoint_info(path: str | Path | None) -> dict[str, Any] | None:
    """``{"run": RUN folder, "step": N}`` when ``path`` is a step folder ``RUN/checkpoints/step_N``
    (``run`` as ``path`` spells it) or a folder exported from one (its ``arpo_checkpoint.json``), else ``None``."""
    if not path:
        return None
    exported = Path(path) / EXPORT_INFO
    if not is_step_folder(path) and exported.is_file():
        try:
            data = json.loads(exported.read_text())
            return {"run": str(data["run"]), "step": int(data["step"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None
    if not is_step_folder(path):
        return None
    p = Path(path)
    run = p.parent.parent if p.parent.name == CHECKPOINTS else p.parent
    return {"run": str(run), "step": int(p.name[len(PREFIX):])}


def checkpoint_label(info: dict[str, Any]) -> str:
    """``RUNNAME@step_00000002``: the model label of a checkpoint on a leaderboard."""
    return f"{Path(info['run']).name}@{PREFIX}{int(info['step']):08d}"
