"""Retrieval quality on a question set: passage recall@k (annotated supporting passages) or answer recall@k.

A question set is JSON lines (``.jsonl`` or ``.jsonl.gz``), one question a line with ``question`` and
either gold passages or gold answers:

- ``supporting_facts`` (HotpotQA's ``[[title, sentence], ...]``) or ``supporting_titles``: scored by
  **passage recall@k**, the share of gold passages (by title) among the top k distinct passages;
- otherwise ``answers`` (a list of aliases) or ``answer``: scored by **answer recall@k**, the share of
  questions with an alias (whole words, case-folded) in the title or text of one of the top k passages.

Every backend is asked for the same k, so all of them are compared on k distinct passages. Shipped sets
(:data:`QUESTION_SETS`): ``hotpotqa`` (100, passage recall), ``2wiki`` (37 questions of ARPO's 2Wiki test
set whose evidence is in the bundled corpus, answer recall) and ``tune`` (184 of ARPO's RL training
questions, answer recall; what the hybrid defaults were chosen on). ``scripts/build_search_sets.py``
regenerates the last two and states the selection rule.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from arpo_env.envs.search.base import Hit, SearchBackend
from arpo_env.envs.search.corpus import DATA_DIR, HOTPOTQA_QUESTIONS, iter_jsonl

QUESTION_SETS: dict[str, Path] = {
    "hotpotqa": HOTPOTQA_QUESTIONS,
    "2wiki": DATA_DIR / "2wiki_test_in_corpus.jsonl.gz",
    "tune": DATA_DIR / "tune_train_in_corpus.jsonl.gz",
}
_WORD = re.compile(r"\w+(?:['’.-]\w+)*", re.UNICODE)


def _norm(text: str) -> str:
    return " " + " ".join(_WORD.findall(text.casefold())) + " "


def load_question_set(name_or_path: str | Path) -> list[dict[str, Any]]:
    """A shipped set by name (:data:`QUESTION_SETS`) or a user file, as ``{"question", "titles" | "answers"}``.

    Raises ``ValueError`` naming the line of a record without a question or without any gold."""
    path = QUESTION_SETS.get(str(name_or_path), Path(name_or_path))
    out = []
    for n, rec in enumerate(iter_jsonl(path), 1):
        q = rec.get("question") if isinstance(rec, dict) else None
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"{path}: record {n} needs a 'question' string")
        if rec.get("supporting_facts") or rec.get("supporting_titles"):
            titles = rec.get("supporting_titles") or [t for t, *_ in rec["supporting_facts"]]
            out.append({"question": q, "titles": list(dict.fromkeys(str(t) for t in titles))})
            continue
        answers = rec.get("answers", rec.get("answer"))
        answers = [answers] if isinstance(answers, str) else list(answers or [])
        answers = [str(a) for a in answers if str(a).strip()]
        if not answers:
            raise ValueError(f"{path}: record {n} needs 'supporting_facts', 'supporting_titles' or 'answers'")
        out.append({"question": q, "answers": answers})
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def search_batch(backend: SearchBackend, queries: list[str], k: int) -> list[list[Hit]]:
    """``backend.search_many`` when it has one (batched encoders, one HTTP call), else one query at a time."""
    many = getattr(backend, "search_many", None)
    if many is not None:
        return list(many(queries, k))
    return [backend.search(q, k) for q in queries]


def recall(backend: SearchBackend, questions: list[dict[str, Any]], ks: tuple[int, ...] = (5, 10),
           *, batch: int = 16) -> dict[str, Any]:
    """``recall@k`` for each k (passage recall or answer recall, as the set's gold says; see module doc),
    and ``all_found@k`` for passage-gold sets (share of questions with every gold passage retrieved)."""
    kmax = max(ks)
    hits: list[list[Hit]] = []
    for i in range(0, len(questions), batch):
        hits += search_batch(backend, [q["question"] for q in questions[i:i + batch]], kmax)
    kind = "passage" if "titles" in questions[0] else "answer"
    found = {k: 0.0 for k in ks}
    complete = {k: 0 for k in ks}
    total = 0
    for q, got in zip(questions, hits):
        if "titles" in q:
            gold = set(q["titles"])
            total += len(gold)
            for k in ks:
                have = gold & {h.title for h in got[:k]}
                found[k] += len(have)
                complete[k] += int(have == gold)
        else:
            total += 1
            aliases = [_norm(a) for a in q["answers"]]
            texts = [_norm(f"{h.title} {h.snippet}") for h in got]
            for k in ks:
                found[k] += int(any(a in t for a in aliases for t in texts[:k]))
    out: dict[str, Any] = {"metric": f"{kind} recall", "questions": len(questions)}
    for k in ks:
        out[f"recall@{k}"] = round(found[k] / max(1, total), 4)
        if kind == "passage":
            out[f"all_found@{k}"] = round(complete[k] / max(1, len(questions)), 4)
    return out
