"""Teachers of ``arpo traces`` that answer from tool results: training QA questions and word problems.

- ``qa`` (Search-v0 / MultiTool-v0): real multi-hop *training* questions (ARPO's RL set
  ``train_10k.parquet``, MIT; shipped as :data:`QA_QUESTIONS`, built by :func:`mine_qa_questions`) whose
  gold answer appears in the top 5 BM25 or hybrid results of the question itself in the bundled corpus, plus
  a few yes/no ones. The teacher searches the question, quotes the sentence of the page holding the answer and
  boxes the span copied from that page; for yes/no questions it boxes the gold word. No benchmark test
  question is in the file (:func:`mine_qa_questions` drops them and ``arpo traces`` checks again).
- ``fact`` (Search-v0 / MultiTool-v0): the same teacher on template fact questions of the corpus
  (:mod:`arpo_env.trainers.fact_questions`); a trajectory whose search does not show the gold is dropped.
- ``word`` (Python-v0): generated GSM8K-style word problems (:func:`word_problem`, templates written for this
  project, not taken from any test set); the teacher names the quantities in Python, prints the result and
  boxes it.

Not covered: two-hop search demonstrations (the second search of a bridge question), browse, word problems
with fractions or units conversion.
"""
from __future__ import annotations

import json
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

QA_QUESTIONS = Path(__file__).parent / "data" / "qa_train_questions.jsonl"
"""Mined training questions: ``{"question", "answer": [gold], "kind": "span" | "yesno"}`` per line."""

Turns = Generator[str, "str | None", None]


def load_qa_tasks(path: str | Path = QA_QUESTIONS) -> list[Any]:
    """The mined training questions as tasks (metadata ``kind``)."""
    from arpo_env.task import Task
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if line.strip():
                r = json.loads(line)
                out.append(Task(r["question"], list(r["answer"]), id=f"qa-train-{i}", metadata={"kind": r["kind"]}))
    return out


def mine_qa_questions(parquet: str | Path, out: str | Path = QA_QUESTIONS, *, yesno: int = 20,
                      max_answer_words: int = 6, max_passages: int = 1000, seed: int = 0,
                      backends: tuple[str, ...] = ("bm25", "hybrid")) -> dict[str, int]:
    """Write :data:`QA_QUESTIONS` from ARPO's ``train_10k.parquet`` (needs pyarrow): every ``qa`` row whose
    gold (at most ``max_answer_words`` words) is in the top-5 results of the question (by any of
    ``backends``; ``hybrid`` needs the ``dense`` extra) and in at most
    ``max_passages`` corpus passages (so common words like nationalities, found by chance, are out), and ``yesno``
    random yes/no rows; benchmark test questions are dropped. Returns the counts."""
    from arpo_env.extras import require
    require("train", "pyarrow", needed_by="reading ARPO's parquet training set")
    import pyarrow.parquet as pq

    from arpo_env.envs.search.base import format_hits
    from arpo_env.envs.search.corpus import load_corpus
    from arpo_env.envs.search.tool import shared_bm25, shared_hybrid
    from arpo_env.trainers.decontamination import benchmark_questions, normalize

    bench = benchmark_questions()
    searchers = [{"bm25": shared_bm25, "hybrid": shared_hybrid}[b](None) for b in backends]
    texts = [p.text.lower() for p in load_corpus()]
    spans, yn = [], []
    for r in pq.read_table(str(parquet)).to_pylist():
        if r.get("ability") != "qa":
            continue
        q = str(r["prompt"][-1]["content"]).strip()
        gold = str(r["reward_model"]["ground_truth"]).strip()
        if normalize(q) in bench or not gold:
            continue
        if gold.lower() in ("yes", "no"):
            yn.append({"question": q, "answer": [gold.lower()], "kind": "yesno"})
        elif (len(gold.split()) <= max_answer_words
              and any(_find(format_hits(b.search(q, 5), snippet_chars=500), gold) >= 0 for b in searchers)
              and sum(gold.lower() in t for t in texts) <= max_passages):
            spans.append({"question": q, "answer": [gold], "kind": "span"})
    rng = np.random.default_rng(seed)
    picked = [yn[int(i)] for i in sorted(rng.choice(len(yn), size=min(yesno, len(yn)), replace=False))]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for row in spans + picked:
            f.write(json.dumps(row) + "\n")
    return {"span": len(spans), "yesno": len(picked)}


def _find(text: str, gold: str) -> int:
    """Offset of ``gold`` in ``text`` as whole words, case-insensitive (-1 when absent)."""
    m = re.search(r"(?<!\w)" + re.escape(gold) + r"(?!\w)", text, re.IGNORECASE)
    return m.start() if m else -1


def _evidence(obs: str, gold: str) -> tuple[int, str, str] | None:
    """(page number, sentence, span as written there) of the first result line holding ``gold``."""
    for line in (obs or "").splitlines():
        m = re.match(r"Page (\d+): (?:[^:]{1,120}: )?(.*)", line)
        if not m:
            continue
        body = m.group(2)
        at = _find(body, gold)
        if at < 0:
            continue
        span = body[at:at + len(gold)]
        prev = body.rfind(". ", 0, at)
        start = prev + 2 if prev >= 0 else 0
        end = body.find(". ", at + len(gold))
        sentence = body[start:end if end > 0 else len(body)].strip().rstrip("…").strip().rstrip(".")
        if len(sentence) > 200:
            lo = max(start, at - 80)
            sentence = body[lo:at + len(gold) + 60].strip()
        return int(m.group(1)), sentence, span
    return None


def qa_teacher(task: Any, rng: np.random.Generator, *, need_evidence: bool = False) -> Turns:
    """Search the question, then answer from the page that holds the answer (yes/no: the gold word).
    ``need_evidence``: when no result line holds the gold, answer ``unknown`` (the env scores it 0, so
    ``arpo traces`` drops the trajectory) instead of stating the gold unseen."""
    intro = ["I should search for the question.", "Let me search for this.",
             "I need to find the facts in the corpus.", "Search the corpus for the question."]
    obs = yield f"<think>{intro[int(rng.integers(len(intro)))]}</think>\n<search>{task.question}</search>"
    gold = task.answer[0]
    found = _evidence(obs or "", gold) if task.metadata.get("kind") == "span" else None
    if found is None and need_evidence:
        yield "<think>The pages do not say.</think>\n<answer>\\boxed{unknown}</answer>"
        return
    if found is None:
        yield (f"<think>The pages give the facts needed; the answer is {gold}.</think>\n"
               f"<answer>\\boxed{{{gold}}}</answer>")
        return
    page, sentence, span = found
    yield (f"<think>Page {page} says: {sentence}. So the answer is {span}.</think>\n"
           f"<answer>\\boxed{{{span}}}</answer>")


def fact_teacher(task: Any, rng: np.random.Generator) -> Turns:
    """:func:`qa_teacher` on the template fact questions (:mod:`arpo_env.trainers.fact_questions`): only
    trajectories whose search shows the gold are kept."""
    return qa_teacher(task, rng, need_evidence=True)


_NAMES = ["Ana", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kofi", "Lena",
          "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
_ITEMS = ["apples", "pencils", "stickers", "cookies", "marbles", "books", "cards", "shells", "stamps", "candles"]


def word_problem(rng: np.random.Generator) -> tuple[str, list[str], int]:
    """(question, code lines that define the quantities and compute ``answer``, answer): one of 8 templates."""
    n, it = _NAMES[int(rng.integers(len(_NAMES)))], _ITEMS[int(rng.integers(len(_ITEMS)))]

    def r(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))
    k = int(rng.integers(8))
    if k == 0:
        a, b, c = r(3, 40), r(2, 9), r(3, 12)
        return (f"{n} has {a} {it}. {n} buys {b} packs with {c} {it} in each pack. How many {it} does {n} have now?",
                [f"start = {a}", f"packs = {b}", f"per_pack = {c}", "answer = start + packs * per_pack"], a + b * c)
    if k == 1:
        a, b, c = r(2, 6), r(2, 7), r(20, 400)
        return (f"{n} walks {a} laps {b} days a week. Each lap is {c} meters. How many meters does {n} walk in a week?",
                [f"laps = {a}", f"days = {b}", f"meters_per_lap = {c}", "answer = laps * days * meters_per_lap"],
                a * b * c)
    if k == 2:
        p, q = r(2, 15), r(2, 9)
        bill = ((p * q) // 10 + 1 + r(0, 3)) * 10
        return (f"A notebook costs ${p}. {n} buys {q} notebooks and pays with ${bill}. How much change does {n} get?",
                [f"price = {p}", f"count = {q}", f"paid = {bill}", "answer = paid - price * count"], bill - p * q)
    if k == 3:
        per, g = r(2, 12), r(2, 9)
        return (f"{n} shares {per * g} {it} equally among {g} friends. How many {it} does each friend get?",
                [f"total = {per * g}", f"friends = {g}", "answer = total // friends"], per)
    if k == 4:
        a, b, c = r(20, 90), r(2, 15), r(2, 15)
        return (f"A box holds {a} {it}. {n} gives away {b} and then loses {c}. How many {it} are left in the box?",
                [f"total = {a}", f"given = {b}", f"lost = {c}", "answer = total - given - lost"], a - b - c)
    if k == 5:
        a = 2 * r(2, 30)
        return (f"{n} has {a} red {it} and half as many blue {it}. How many {it} does {n} have in total?",
                [f"red = {a}", "blue = red // 2", "answer = red + blue"], a + a // 2)
    if k == 6:
        price, pct = r(2, 20) * 10, [10, 20, 25, 50][int(rng.integers(4))]
        return (f"A bike costs ${price}. Its price goes up by {pct}%. What is the new price in dollars?",
                [f"price = {price}", f"increase = price * {pct} // 100", "answer = price + increase"],
                price + price * pct // 100)
    h, w, d = r(5, 30), r(2, 8), r(2, 6)
    return (f"{n} earns ${h} per hour and works {w} hours a day for {d} days. How much does {n} earn in dollars?",
            [f"rate = {h}", f"hours = {w}", f"days = {d}", "answer = rate * hours * days"], h * w * d)


def word_tasks(n: int, seed: int) -> list[Any]:
    """``n`` word problems as tasks (metadata ``code``), a pure function of (seed, index)."""
    from arpo_env.task import Task
    out = []
    for i in range(n):
        q, code, a = word_problem(np.random.default_rng([seed, i, 11]))
        out.append(Task(q, [str(a)], id=f"word-{seed}-{i}", metadata={"code": code}))
    return out


def word_teacher(task: Any, rng: np.random.Generator) -> Turns:
    """Name the quantities in Python and print the answer, then box the printed value."""
    intro = ["I will write the quantities as Python variables and compute the answer.",
             "Let me set up the numbers in Python.", "I can compute this step by step with Python."]
    code = "\n".join([*task.metadata["code"], "print(answer)"])
    obs = yield f"<think>{intro[int(rng.integers(len(intro)))]}</think>\n<python>\n{code}\n</python>"
    a = (obs or "").replace("<result>", "").replace("</result>", "").strip().splitlines()[-1].strip()
    yield f"<think>The program printed {a}, so the answer is {a}.</think>\n<answer>\\boxed{{{a}}}</answer>"
