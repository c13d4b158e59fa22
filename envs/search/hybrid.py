"""``hybrid``: BM25 and dense retrieval fused, plus a second hop for multi-hop questions.

One query runs in two rounds over one corpus (both backends must index the same passages):

1. **First hop.** BM25 and dense each rank ``pool`` passages; their reciprocal ranks are summed
   (weights ``w_bm25``, ``w_dense``; RRF constant ``rrf_k``).
2. **Second hop.** (a) *Title links*: passages whose title is mentioned in the question or in the text of
   the ``link_from`` best first-hop passages (exact, case-folded n-gram match against the corpus titles,
   also without a trailing ``(disambiguation)``; by default only where the mention is capitalised, i.e. a
   proper noun: "a comedy film" does not link to the page "Comedy!"), ordered by dense similarity to the
   question: this is
   how the bridge entity of a HotpotQA/2Wiki question is reached (``link_from`` > 1 with ``link_decay``
   prefers candidates linked from better-ranked passages). (b) *Pseudo-relevance feedback* (Rocchio in
   embedding space): the question's vector plus ``prf_alpha`` times the mean stored embedding of the
   ``prf_docs`` best first-hop passages, normalised, searched again dense (``w_prf``).

The final score of a passage is the weighted sum of its reciprocal ranks in the lists it appears in; the
top ``k`` distinct passages are returned (the same k as any other backend). The defaults were chosen on
a tuning set that is neither evaluation set (``bench/search.py`` and docs/retrieval.md tell which).
``w_links = w_prf = 0`` gives plain RRF fusion. Costs per query: one BM25 query, ONE encoder call (the
question; feedback and link ordering reuse the stored passage vectors) and a few vector products. Not
covered: learned rerankers, query decomposition by an LLM, link extraction beyond exact title matches.
"""
from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from arpo_env.envs.search.base import Hit, check_batch
from arpo_env.envs.search.bm25 import BM25Backend
from arpo_env.envs.search.dense import DenseBackend

_WORD = re.compile(r"\w+(?:['’.-]\w+)*", re.UNICODE)
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_MAX_TITLE_WORDS = 10
_COMMON = frozenset("the a an of in on and or to for is was it he she they this that with from by at as be "
                    "his her its their who what which when where how why".split())


@dataclass(frozen=True)
class HybridConfig:
    """Fusion and second-hop weights (the defaults are the tuned ones)."""

    pool: int = 50
    """Passages each first-hop ranker contributes."""
    rrf_k: float = 60.0
    """Reciprocal-rank constant: a list's item at rank r (from 1) adds ``w / (rrf_k + r)``."""
    w_bm25: float = 1.0
    """Weight of the BM25 ranking of the question."""
    w_dense: float = 0.5
    """Weight of the dense ranking of the question."""
    w_links: float = 2.0
    """Weight of the title-linked passages (0: no link hop). Above ``w_bm25 + w_dense`` a passage the best
    first-hop passage names (the bridge entity: "directed by Kenneth Branagh") outranks first-hop passages
    that only resemble the question."""
    link_from: int = 1
    """How many of the best first-hop passages are read for title mentions (the question always is)."""
    w_prf: float = 1.0
    """Weight of the dense feedback ranking (0: no feedback round)."""
    prf_docs: int = 2
    """Feedback passages: the query vector plus the stored embeddings of this many best first-hop passages."""
    prf_alpha: float = 1.0
    """Weight of the feedback passages' mean embedding added to the query vector (Rocchio's beta)."""
    link_decay: float = 0.0
    """Link candidates are ordered by similarity / r**link_decay, r the rank of the best first-hop passage
    linking to them (question mentions count as rank 1); 0: by similarity alone."""
    link_feedback: bool = False
    """Order link candidates by similarity to the feedback vector (question + best passages), not the question."""
    min_title_chars: int = 4
    """Titles shorter than this are never linked (too ambiguous)."""
    link_proper_only: bool = True
    """Link a title only where every word of its mention outside a small function-word list starts with a
    capital letter or a digit (a proper-noun mention); False: any case-folded match."""


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


class TitleLinker:
    """Finds corpus titles mentioned in a text (exact case-folded word n-grams; with ``proper_only`` only
    mentions whose words outside ``_COMMON`` are capitalised in the text)."""

    def __init__(self, titles: list[str], min_chars: int = 4, proper_only: bool = False):
        self.proper_only = proper_only
        self._index: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(titles):
            for form in {_norm(t), _norm(_PAREN.sub("", t))}:
                if len(form) >= min_chars and form not in _COMMON and len(form.split()) <= _MAX_TITLE_WORDS:
                    self._index[form].append(i)
        self._longest = max((len(f.split()) for f in self._index), default=1)

    def mentions(self, text: str) -> list[int]:
        """Passage indices whose title occurs in ``text``, in order of first mention (longest match first)."""
        cased = _WORD.findall(text)
        words = [w.casefold() for w in cased]
        out: dict[int, None] = {}
        i = 0
        while i < len(words):
            step = 1
            for n in range(min(self._longest, len(words) - i), 0, -1):
                hit = self._index.get(" ".join(words[i:i + n]))
                if hit:
                    if not self.proper_only or all(w[0].isupper() or w[0].isdigit() for w in cased[i:i + n]
                                                   if w.casefold() not in _COMMON):
                        out.update(dict.fromkeys(hit))
                    step = n
                    break
            i += step
        return list(out)


class HybridBackend:
    """A :class:`~arpo_env.envs.search.base.SearchBackend` fusing ``bm25`` and ``dense`` (same corpus)."""

    def __init__(self, bm25: BM25Backend, dense: DenseBackend, config: HybridConfig | None = None):
        if bm25.corpus_hash != dense.corpus_hash:
            raise ValueError(f"hybrid search needs one corpus: BM25 indexes {bm25.corpus_hash}, "
                             f"dense {dense.corpus_hash}")
        self.bm25, self.dense, self.config = bm25, dense, config or HybridConfig()
        self.passages = bm25.passages
        c = self.config
        self.name = (f"hybrid:{dense.name.split(':')[1]}:{bm25.corpus_hash}:"
                     f"{c.w_bm25:g},{c.w_dense:g},{c.w_links:g}x{c.link_from},{c.w_prf:g}v{c.prf_docs}x{c.prf_alpha:g},"
                     f"{c.link_decay:g}{'f' if c.link_feedback else ''}{'p' if c.link_proper_only else ''},"
                     f"{c.pool},{c.rrf_k:g}")
        self._linker = TitleLinker([p.title for p in self.passages], c.min_title_chars, c.link_proper_only)
        self._links: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._ids = {p.id: i for i, p in enumerate(self.passages)}

    def _passage_links(self, i: int) -> list[int]:
        with self._lock:
            got = self._links.get(i)
        if got is None:
            got = [j for j in self._linker.mentions(self.passages[i].text) if j != i]
            with self._lock:
                self._links[i] = got
        return got

    def _bm25_ranks(self, query: str) -> list[int]:
        return [self._ids[h.id] for h in self.bm25.search(query, self.config.pool)]

    def search_many(self, queries: list[str], k: int) -> list[list[Hit]]:
        """:meth:`search` for a batch (first-hop and feedback encoder calls are batched)."""
        check_batch(queries, k)
        if not queries:
            return []
        c = self.config
        qv = self.dense.encode_queries(queries)
        d_idx, _ = self.dense.rank(qv, c.pool)
        fused: list[dict[int, float]] = []
        for q, row in zip(queries, d_idx):
            score: dict[int, float] = defaultdict(float)
            self._add(score, self._bm25_ranks(q), c.w_bm25)
            self._add(score, [int(i) for i in row], c.w_dense)
            fused.append(score)
        firsts = [sorted(s, key=lambda i: -s[i]) for s in fused]
        fb = None
        if c.w_prf > 0 or c.link_feedback:
            # Rocchio in embedding space: no second encoder call (the passages' vectors are stored).
            emb = self.dense.embeddings
            fb = np.stack([qv[n] + c.prf_alpha * emb[f[:c.prf_docs]].mean(axis=0) if f else qv[n]
                           for n, f in enumerate(firsts)])
            fb /= np.linalg.norm(fb, axis=1, keepdims=True)
            fb = fb.astype(np.float32)
        if fb is not None and c.w_prf > 0:
            p_idx, _ = self.dense.rank(fb, c.pool)
            for score, row in zip(fused, p_idx):
                self._add(score, [int(i) for i in row], c.w_prf)
        out = []
        for n, (q, score, first) in enumerate(zip(queries, fused, firsts)):
            if c.w_links > 0:
                # candidate -> best (lowest) rank of a passage linking to it; question mentions rank 1
                cands: dict[int, int] = dict.fromkeys(self._linker.mentions(q), 1)
                for r, src in enumerate(first[:c.link_from], 1):
                    for j in self._passage_links(src):
                        cands.setdefault(j, r)
                if cands:
                    ids = np.fromiter(cands, dtype=np.int64)
                    sims = self.dense.embeddings[ids] @ (fb[n] if c.link_feedback and fb is not None else qv[n])
                    if c.link_decay:
                        sims = sims / np.fromiter(cands.values(), dtype=np.float64) ** c.link_decay
                    self._add(score, [int(ids[j]) for j in np.argsort(-sims, kind="stable")[:c.pool]], c.w_links)
            best = sorted(score, key=lambda i: (-score[i], i))[:k]
            out.append([self._hit(i, score[i]) for i in best])
        return out

    def _add(self, score: dict[int, float], ranked: list[int], weight: float) -> None:
        if weight <= 0:
            return
        for r, i in enumerate(ranked, 1):
            score[i] += weight / (self.config.rrf_k + r)

    def search(self, query: str, k: int) -> list[Hit]:
        """The ``k`` best distinct passages after both hops."""
        return self.search_many([query], k)[0]

    def _hit(self, i: int, score: float) -> Hit:
        p = self.passages[i]
        return Hit(title=p.title, snippet=p.text, url=p.url, id=p.id, score=round(score, 6))

    def __deepcopy__(self, memo: dict[Any, Any]) -> HybridBackend:
        return self  # read-only indexes: env forks share them
