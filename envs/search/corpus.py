"""Passage corpora: JSON-lines files of ``{"id", "title", "text"}`` (optional ``"url"``), plain or gzip-compressed.

The bundled corpus (:data:`BUNDLED_CORPUS`, ~9,000 passages) is the union of three public multi-hop QA
pools (HippoRAG's copies of HotpotQA, MuSiQue and 2WikiMultihopQA training contexts; MIT code, CC BY-SA /
CC BY / Apache-2.0 data). :data:`HOTPOTQA_QUESTIONS` holds the 100 HotpotQA training questions whose
supporting passages are all in that corpus (fields ``id, question, answer, supporting_facts, type,
level, context`` = the 10 HotpotQA ``[title, sentences]`` paragraphs): the offline multi-hop set used for recall and as the Search env's default tasks.
:func:`build_bundled_corpus` regenerates both files from the raw downloads.

A corpus is identified by :func:`corpus_hash` (SHA-256 of its canonical lines), which keys the on-disk
index cache and the search cache, so editing a corpus never serves stale results.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DATA_DIR = Path(__file__).parent / "data"
BUNDLED_CORPUS = DATA_DIR / "wiki_multihop_corpus.jsonl.gz"
"""The default offline corpus shipped with the package."""
HOTPOTQA_QUESTIONS = DATA_DIR / "hotpotqa_train_100.jsonl.gz"
"""100 HotpotQA training questions whose evidence is in :data:`BUNDLED_CORPUS`."""


@dataclass(frozen=True)
class Passage:
    """One corpus passage."""

    id: str
    title: str
    text: str
    url: str = ""
    """Where the passage comes from ('' when unknown); shown by search and opened by browse."""


def _open_text(path: Path):
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield the JSON objects of a ``.jsonl`` or ``.jsonl.gz`` file (blank lines skipped)."""
    with _open_text(Path(path)) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None


def load_corpus(path: str | Path = BUNDLED_CORPUS) -> list[Passage]:
    """Read a corpus; every line needs ``text`` (``title`` defaults to '', ``id`` to the line number).

    Raises ``ValueError`` naming the line of the first bad record, and for an empty corpus.
    """
    out = []
    for i, rec in enumerate(iter_jsonl(path)):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise ValueError(f"{path}: record {i + 1} needs a string 'text' field, got {str(rec)[:80]!r}")
        out.append(Passage(str(rec.get("id", i)), str(rec.get("title", "") or ""), rec["text"],
                           str(rec.get("url", "") or "")))
    if not out:
        raise ValueError(f"{path}: the corpus is empty")
    return out


def wiki_url(title: str) -> str:
    """The English Wikipedia URL of an article title."""
    return "https://en.wikipedia.org/wiki/" + quote(title.strip().replace(" ", "_"), safe="()_,'-.:")


def corpus_hash(passages: Iterable[Passage]) -> str:
    """SHA-256 (hex, first 16 chars) over the passages' canonical JSON, in order."""
    h = hashlib.sha256()
    for p in passages:
        h.update(json.dumps([p.id, p.title, p.text, p.url], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def write_jsonl_gz(records: Iterable[dict], path: str | Path) -> int:
    """Write records as gzip JSON lines deterministically (mtime 0, so the bytes are reproducible)."""
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        for rec in records:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode())
            n += 1
    return n


def load_hotpotqa_questions(path: str | Path = HOTPOTQA_QUESTIONS) -> list[dict]:
    """The bundled 100 HotpotQA questions (``supporting_facts`` = ``[[title, sentence index], ...]``)."""
    return list(iter_jsonl(path))


def build_bundled_corpus(source_dir: str | Path, out_dir: str | Path = DATA_DIR) -> dict[str, int]:
    """Regenerate the bundled corpus and question files from HippoRAG's raw corpus files in ``source_dir``.

    Passages are de-duplicated on (title, text); ids are ``<dataset>/<n>``; every passage gets its
    Wikipedia URL (all three pools are Wikipedia paragraphs). Returns counts.
    """
    src, out = Path(source_dir), Path(out_dir)
    seen: set[tuple[str, str]] = set()
    records: list[dict] = []

    def add(dataset: str, title: str, text: str) -> None:
        key = (title.strip(), " ".join(text.split()))
        if key in seen or not key[1]:
            return
        seen.add(key)
        records.append({"id": f"{dataset}/{len(records)}", "title": key[0], "text": key[1],
                        "url": wiki_url(key[0])})

    hotpot = json.loads((src / "hotpotqa_train_corpus.json").read_text())
    for title, sentences in hotpot.items():
        add("hotpotqa", title, "".join(sentences))
    for name, file in (("musique", "musique_train_corpus.json"), ("2wiki", "2wikimultihopqa_corpus.json")):
        for rec in json.loads((src / file).read_text()):
            add(name, rec["title"], rec["text"])
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(records, out / BUNDLED_CORPUS.name)
    questions = [{"id": q["_id"], "question": q["question"], "answer": q["answer"],
                  "supporting_facts": q["supporting_facts"], "type": q.get("type", ""),
                  "level": q.get("level", ""), "context": q.get("context", [])}
                 for q in json.loads((src / "hotpotqa_train.json").read_text())]
    write_jsonl_gz(questions, out / HOTPOTQA_QUESTIONS.name)
    return {"passages": len(records), "questions": len(questions)}
