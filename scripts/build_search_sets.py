"""Build the two extra offline multi-hop question sets of the search benchmark from ../shared/data.

Only the 100 bundled HotpotQA questions come with annotated supporting passages. The other shipped
multi-hop sets have question + answer aliases only, so these sets are scored by **answer recall@k**
(share of questions with an answer alias in one of the top-k passages, DPR's "top-k accuracy"), and only
questions whose evidence is plausibly in the bundled corpus are kept:

- a corpus title of at least two words is mentioned in the question (the first-hop entity), and
- a non-yes/no answer alias of at least 3 characters occurs (whole words, case-folded) in some passage.

Writes ``envs/search/data/2wiki_test_in_corpus.jsonl.gz`` (from ARPO's 2WikiMultihopQA test set: the
second evaluation set) and ``envs/search/data/tune_train_in_corpus.jsonl.gz`` (from ARPO's RL training
questions ``train_10k.parquet``, QA half, minus any question of the two evaluation sets: the tuning set).
Run: ``python scripts/build_search_sets.py [SHARED_DATA_DIR]``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from arpo_env.envs.search.corpus import DATA_DIR, load_corpus, load_hotpotqa_questions, write_jsonl_gz
from arpo_env.envs.search.hybrid import TitleLinker, _norm


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
    passages = load_corpus()
    linker = TitleLinker([p.title for p in passages])
    blob = " " + " \n ".join(_norm(p.title + " " + p.text) for p in passages) + " "

    def covered(question: str, answers: list[str]) -> list[str] | None:
        aliases = [a for a in answers if len(a) >= 3 and _norm(a) not in ("yes", "no")]
        if not aliases:
            return None
        if not any(len(_norm(passages[i].title).split()) >= 2 for i in linker.mentions(question)):
            return None
        found = [a for a in aliases if f" {_norm(a)} " in blob]
        return aliases if found else None

    hotpot = {q["question"] for q in load_hotpotqa_questions()}
    wiki = []
    for n, line in enumerate(open(shared / "benchmarks" / "2wiki" / "test.jsonl", encoding="utf-8")):
        row = json.loads(line)
        aliases = covered(row["question"], list(row["answer"]))
        if aliases:
            wiki.append({"id": f"2wiki-test/{n}", "question": row["question"], "answers": aliases})
    import pyarrow.parquet as pq
    seen = hotpot | {r["question"] for r in wiki}
    tune = []
    for row in pq.read_table(shared / "train" / "train_10k.parquet").to_pylist():
        q = (row.get("extra_info") or {}).get("question")
        gold = str((row.get("reward_model") or {}).get("ground_truth", ""))
        if (not q or q in seen or len(q) > 400 or re.fullmatch(r"[\d.,\s/-]+", gold)
                or re.search(r"\\\(|\d\s*%|\$|\bsum of\b|\brate\b|meters|how many", q)):
            continue
        aliases = covered(q, [gold])
        if aliases:
            tune.append({"id": f"train10k/{row['extra_info'].get('index')}", "question": q, "answers": aliases})
            seen.add(q)
    print(json.dumps({"2wiki_test_in_corpus": write_jsonl_gz(wiki, DATA_DIR / "2wiki_test_in_corpus.jsonl.gz"),
                      "tune_train_in_corpus": write_jsonl_gz(tune, DATA_DIR / "tune_train_in_corpus.jsonl.gz")}))


if __name__ == "__main__":
    main()
