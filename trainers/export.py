"""``arpo export``: a checkpoint as a standalone Hugging Face model folder.

The source is a run folder (its newest checkpoint that verifies) or a step folder. Checkpoints are model
folders already (LoRA merged, see :mod:`arpo_env.trainers.checkpoint`); the export drops the training
state (optimizer, RNG, adapters, ``state.json``), casts the weights to ``dtype`` and writes
``config.json``, ``generation_config.json``, ``model.safetensors`` (or shards), the tokenizer, and
``arpo_checkpoint.json`` (``{"run", "step"}``: where it came from). It is written to a temporary folder
next to ``out`` and renamed into place, so ``out`` is either complete or absent.

Not covered: quantised exports (GGUF, AWQ); checkpoints written before checkpoints were model folders.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arpo_env.checkpoints import CHECKPOINTS, EXPORT_INFO, checkpoint_info, resolve_model_dir
from arpo_env.extras import require

DTYPES = {"auto": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}


class ExportError(ValueError):
    """Bad arguments to :func:`export_checkpoint` (the message names the fix)."""


def export_checkpoint(source: str | Path, out: str | Path, dtype: str = "auto", force: bool = False) -> dict[str, Any]:
    """Write the model of checkpoint ``source`` to ``out``; returns ``{"checkpoint", "run", "step", "dtype"}``."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    src = Path(source)
    if not src.exists():
        raise ExportError(f"{src} does not exist; pass a run folder (with {CHECKPOINTS}/) or a step folder")
    step_dir = resolve_model_dir(src)
    info = checkpoint_info(step_dir)
    if info is None:
        raise ExportError(f"{src} is neither a run folder (with {CHECKPOINTS}/step_*/) nor a checkpoint step folder")
    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if not force:
            raise ExportError(f"{dest} exists and is not empty; choose another --out or pass --force to replace it")
    require("train", "torch", needed_by="arpo export")
    require("train", "transformers", needed_by="arpo export")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(step_dir), dtype="auto")
    target = DTYPES[dtype]
    if target is not None:
        model = model.to(getattr(torch, target))
    tokenizer = AutoTokenizer.from_pretrained(str(step_dir))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {"checkpoint": str(step_dir), **info, "dtype": name}
