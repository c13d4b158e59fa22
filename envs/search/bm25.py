"""``bm25``: offline lexical search over a passage corpus with bm25s, the index cached on disk.

Each passage is indexed as ``title + text``, lower-cased, English stop words removed and Snowball-stemmed
(when PyStemmer is installed; the choice is part of the index key). The index is built on first use
(about a second for the bundled 9,000 passages) and saved under :func:`cache_dir` ``/bm25/<key>`` where
``key`` combines the corpus hash and the index parameters; a later process loads it instead. Builds are
written to a temporary folder and renamed into place, so concurrent processes never see half an index.
The folder's ``arpo_index.json`` records the SHA-256 of every other file in it; an index whose files do
not match (damaged on disk) or that fails to load is reported once (a warning naming the file) and
rebuilt, so it never serves changed results.

Hits with a score of 0 (no query term in the passage) are never returned. Not covered: dense retrieval,
phrase queries, per-field weights.
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
from typing import Any

from arpo_env.checkpoints import sha256_file
from arpo_env.envs.search.base import Hit, SearchError
from arpo_env.envs.search.corpus import BUNDLED_CORPUS, Passage, corpus_hash, load_corpus
from arpo_env.extras import require

INDEX_FORMAT = 2
"""Bumped when the on-disk layout changes (2: file checksums in ``arpo_index.json``); part of the key."""
MARKER = "arpo_index.json"
log = logging.getLogger(__name__)
_reported: set[str] = set()  # damaged index paths already warned about in this process


def index_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under an index folder except the marker, by relative path."""
    return {str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != MARKER}


def _damage(folder: Path, recorded: dict[str, str]) -> str | None:
    """What is wrong with the index files (naming the file), or ``None`` when they match."""
    actual = index_checksums(folder)
    for name in sorted(set(recorded) | set(actual)):
        if name not in actual:
            return f"{folder / name} is missing"
        if name not in recorded:
            return f"{folder / name} is not part of the index"
        if actual[name] != recorded[name]:
            return f"{folder / name} checksum mismatch (damaged)"
    return None


def cache_dir() -> Path:
    """arpo-env's cache folder: ``$ARPO_ENV_CACHE_DIR``, else ``$XDG_CACHE_HOME/arpo-env``, else
    ``~/.cache/arpo-env``."""
    if os.environ.get("ARPO_ENV_CACHE_DIR"):
        return Path(os.environ["ARPO_ENV_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "arpo-env"


@dataclass(frozen=True)
class BM25Params:
    """Index parameters (all of them are part of the on-disk cache key)."""

    k1: float = 1.5
    """Term-frequency saturation."""
    b: float = 0.75
    """Length normalisation."""
    method: str = "lucene"
    """bm25s scoring variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``)."""
    stemmer: str | None = "english"
    """Snowball stemmer language (needs PyStemmer); ``None`` disables stemming."""
    stopwords: str = "en"
    """bm25s stop-word list."""


def _stemmer(lang: str | None) -> Any:
    if not lang:
        return None
    stemmer = require("search", "Stemmer", needed_by="arpo/Search-v0's BM25 stemming (PyStemmer)")
    return stemmer.Stemmer(lang)


class BM25Backend:
    """A :class:`~arpo_env.envs.search.base.SearchBackend` over a corpus (default: the bundled one).

    ``passages`` may be given directly (tests, small corpora); otherwise ``corpus`` is read.
    ``index_dir`` overrides where the index is cached; ``use_disk_cache=False`` keeps it in memory only.
    Thread-safe for concurrent ``search`` calls.
    """

    def __init__(self, corpus: str | Path = BUNDLED_CORPUS, *, passages: list[Passage] | None = None,
                 params: BM25Params | None = None, index_dir: str | Path | None = None,
                 use_disk_cache: bool = True):
        require("search", "bm25s", needed_by="arpo/Search-v0's BM25 index")
        self.params = params or BM25Params()
        self.passages = passages if passages is not None else load_corpus(corpus)
        self.corpus_hash = corpus_hash(self.passages)
        stem = _stemmer(self.params.stemmer)
        self._effective = {**asdict(self.params), "stemmer": self.params.stemmer if stem else None,
                           "format": INDEX_FORMAT}
        key = hashlib.sha256(json.dumps(self._effective, sort_keys=True).encode()).hexdigest()[:8]
        self.name = f"bm25:{self.corpus_hash}"
        self.index_dir = Path(index_dir) if index_dir else cache_dir() / "bm25" / f"{self.corpus_hash}-{key}"
        self._lock = threading.Lock()
        self.loaded_from_disk = False
        self.build_seconds = 0.0
        self._load_or_build(stem, use_disk_cache)

    # ----- index ----------------------------------------------------------------------------------
    def _tokenizer(self, stem: Any) -> Any:
        require("search", "bm25s", needed_by="arpo/Search-v0's BM25 index")
        from bm25s.tokenization import Tokenizer
        return Tokenizer(lower=True, stopwords=self.params.stopwords, stemmer=stem)

    def _load_or_build(self, stem: Any, use_disk_cache: bool) -> None:
        require("search", "bm25s", needed_by="arpo/Search-v0's BM25 index")
        import bm25s
        self._tok = self._tokenizer(stem)
        marker = self.index_dir / MARKER
        if use_disk_cache and marker.exists():
            problem: str | None = None
            try:
                meta = json.loads(marker.read_text())
                if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
                    problem = f"{marker} is damaged (no file checksums)"
                elif meta.get("params") == self._effective and meta.get("n") == len(self.passages):
                    problem = _damage(self.index_dir, meta["files"])
                    if problem is None:
                        self._bm25 = bm25s.BM25.load(str(self.index_dir), show_progress=False)
                        self._tok.load_vocab(str(self.index_dir))
                        self.loaded_from_disk = True
                        return
                else:
                    problem = f"{marker} describes another index (parameters or size differ)"
            except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
                problem = f"{self.index_dir} cannot be loaded ({type(exc).__name__}: {exc})"
            self._tok = self._tokenizer(stem)  # a failed load_vocab may have filled it
            if problem and str(self.index_dir) not in _reported:
                _reported.add(str(self.index_dir))
                log.warning("BM25 index: %s; rebuilding it", problem)
        t0 = time.perf_counter()
        tokens = self._tok.tokenize([f"{p.title}\n{p.text}" for p in self.passages], show_progress=False,
                                 return_as="tuple")
        self._bm25 = bm25s.BM25(k1=self.params.k1, b=self.params.b, method=self.params.method)
        self._bm25.index(tokens, show_progress=False)
        self.build_seconds = time.perf_counter() - t0
        if use_disk_cache:
            self._save()

    def _save(self) -> None:
        parent = self.index_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
        except OSError:
            return  # read-only cache location: keep the in-memory index
        try:
            self._bm25.save(str(tmp), show_progress=False)
            self._tok.save_vocab(str(tmp))
            (tmp / MARKER).write_text(json.dumps(
                {"params": self._effective, "n": len(self.passages), "corpus_hash": self.corpus_hash,
                 "files": index_checksums(tmp)}))
            try:
                os.replace(tmp, self.index_dir)  # atomic when the target does not exist or is empty
            except OSError:
                shutil.rmtree(self.index_dir, ignore_errors=True)  # a stale or concurrent build is there
                try:
                    os.replace(tmp, self.index_dir)
                except OSError:
                    pass  # another process won the race; its index is equivalent
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ----- search ---------------------------------------------------------------------------------
    def search(self, query: str, k: int) -> list[Hit]:
        """The ``k`` best passages with a positive score."""
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        if not query.strip():
            raise SearchError("the query is empty")
        k = min(k, len(self.passages))
        with self._lock:
            q = self._tok.tokenize([query], update_vocab=False, show_progress=False, return_as="string")
            if not any(q[0]):  # only stop words or unknown terms
                return []
            docs, scores = self._bm25.retrieve(q, k=k, show_progress=False, n_threads=1)
        hits = []
        for doc, score in zip(docs[0].tolist(), scores[0].tolist()):
            if score <= 0:
                continue
            p = self.passages[doc]
            hits.append(Hit(title=p.title, snippet=p.text, url=p.url, id=p.id, score=round(float(score), 4)))
        return hits

    def __deepcopy__(self, memo: dict) -> BM25Backend:
        return self  # read-only index: env forks share it
