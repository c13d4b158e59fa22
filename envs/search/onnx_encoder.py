"""The dense retriever's fast CPU encoder: a sentence-transformers model run by ONNX Runtime.

The model's transformer is exported once per model folder with ``torch.onnx`` and, for ``onnx-int8``,
quantised by ``onnxruntime.quantization`` (dynamic: weights int8 per output channel, activations quantised
at run time; VNNI/AVX-512 kernels where the CPU has them). Both files are cached under
``<dense cache>/onnx/<model key>/`` (written to a temporary name, then renamed; a file ONNX Runtime cannot
load is exported again). Pooling follows the folder's ``modules.json``: a Transformer, a Pooling module with
mean or CLS pooling, optionally Normalize (the retriever always L2-normalises).

Threads: ``threads`` sessions with ONE intra-op thread each. A batch of texts is cut into at most
``threads`` sub-batches run side by side (ONNX Runtime releases the GIL), so a one-question query runs on one
thread (no OpenMP hand-off: 2 ms for MiniLM where torch at 2 threads takes 10 to 40 ms) and an index build
uses every session. torch's process-wide thread count is never touched.

Why not sentence-transformers' own ONNX backend: it needs ``optimum-onnx``, which pins transformers < 4.58
(this project uses transformers 5). Not covered: models whose sentence-transformers pipeline has other
modules (Dense projections, custom pooling): use ``encoder="torch"`` for those; GPU execution providers.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.extras import require

EXPORT_FORMAT = 1
log = logging.getLogger(__name__)


class UnsupportedModel(ValueError):
    """The model folder's pipeline is not Transformer -> mean/CLS Pooling (-> Normalize)."""


def read_pooling(model_dir: Path) -> str:
    """``"mean"`` or ``"cls"``, from the folder's ``modules.json`` and Pooling config."""
    modules_file = model_dir / "modules.json"
    if not modules_file.exists():
        return "mean"  # a bare transformers folder: sentence-transformers' default is mean pooling
    modules = json.loads(modules_file.read_text())
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or modules[0].get("path", "") != "" \
            or any(k not in {"Pooling", "Normalize"} for k in kinds[1:]) or "Pooling" not in kinds:
        raise UnsupportedModel(f"{model_dir}: modules {kinds} (the ONNX encoder runs Transformer -> Pooling "
                               "-> Normalize only); use DenseConfig(encoder='torch')")
    pooling = json.loads((model_dir / modules[kinds.index("Pooling")]["path"] / "config.json").read_text())
    on = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True}
    if on == {"pooling_mode_mean_tokens"}:
        return "mean"
    if on == {"pooling_mode_cls_token"}:
        return "cls"
    raise UnsupportedModel(f"{model_dir}: pooling {sorted(on)} (mean or CLS only); use DenseConfig(encoder='torch')")


def export(model_dir: Path, out_dir: Path, *, int8: bool) -> Path:
    """The ONNX file for ``model_dir`` under ``out_dir`` (fp32, or int8 when asked), exported if missing."""
    fp32, q8 = out_dir / "model.onnx", out_dir / "model.int8.onnx"
    target = q8 if int8 else fp32
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        _export_fp32(model_dir, fp32)
    if int8:
        quant = require("dense", "onnxruntime.quantization", needed_by="the int8 ONNX encoder")
        tmp = _tmp_name(q8)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's "consider pre-processing" advice goes to the root logger
        try:
            quant.quantize_dynamic(str(fp32), str(tmp), weight_type=quant.QuantType.QInt8, per_channel=True)
            os.replace(tmp, q8)
        finally:
            root.setLevel(level)
            tmp.unlink(missing_ok=True)
    return target


def _tmp_name(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # a shared cache: readable by every user, as the embeddings are
    return Path(name)


def _export_fp32(model_dir: Path, dest: Path) -> None:
    require("dense", "torch", needed_by="exporting the dense encoder to ONNX")
    import torch
    require("dense", "onnx", needed_by="exporting the dense encoder to ONNX")
    transformers = require("dense", "transformers", needed_by="exporting the dense encoder to ONNX")
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    names = list(tok.model_input_names)

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    sample = tok(["an example sentence to trace", "a second"], padding=True, return_tensors="pt")
    tmp = _tmp_name(dest)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden(), tuple(sample[n] for n in names), str(tmp), input_names=names,
                              output_names=["hidden"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]})
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("dense encoder exported to %s", dest)


class OnnxEncoder:
    """L2-normalised sentence embeddings by ONNX Runtime (see the module docstring). Thread-safe."""

    def __init__(self, model_dir: Path, cache_dir: Path, *, int8: bool, max_seq_length: int, threads: int):
        ort = require("dense", "onnxruntime", needed_by="the ONNX dense encoder")
        transformers = require("dense", "transformers", needed_by="the ONNX dense encoder's tokenizer")
        self.pooling = read_pooling(model_dir)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
        self.input_names = list(self.tokenizer.model_input_names)
        self.max_seq_length = max_seq_length
        self.kind = "onnx-int8" if int8 else "onnx"
        path = export(model_dir, cache_dir, int8=int8)
        try:
            sessions = [self._session(ort, path) for _ in range(max(1, threads))]
        except Exception as exc:  # noqa: BLE001 - a damaged export is redone once
            log.warning("dense encoder: %s cannot be loaded (%s); exporting it again", path, exc)
            path.unlink(missing_ok=True)
            path = export(model_dir, cache_dir, int8=int8)
            sessions = [self._session(ort, path) for _ in range(max(1, threads))]
        self.path = path
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for s in sessions:
            self._free.put(s)
        self.threads = len(sessions)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self.dimension = int(self.encode(["dimension probe"]).shape[1])

    @staticmethod
    def _session(ort: Any, path: Path) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def _run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        session = self._free.get()
        try:
            hidden = session.run(None, {n: batch[n].astype(np.int64) for n in self.input_names})[0]
        finally:
            self._free.put(session)
        if self.pooling == "cls":
            vecs = hidden[:, 0]
        else:
            mask = batch["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)

    def _executor(self) -> ThreadPoolExecutor:
        """The worker threads, made again in a forked child (a fork copies the pool but not its threads)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="arpo-onnx")
            self._pool_pid = os.getpid()
        return self._pool

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Rows of float32 unit vectors; texts are cut at ``max_seq_length`` tokens."""
        if not texts:
            return np.zeros((0, getattr(self, "dimension", 0)), dtype=np.float32)
        size = max(1, min(batch_size, -(-len(texts) // self.threads)))
        batches = [self.tokenizer(texts[i:i + size], padding=True, truncation=True, max_length=self.max_seq_length,
                                  return_tensors="np") for i in range(0, len(texts), size)]
        if self.threads == 1 or len(batches) == 1:
            parts = [self._run(b) for b in batches]
        else:
            parts = list(self._executor().map(self._run, batches))
        return np.concatenate(parts).astype(np.float32, copy=False)
