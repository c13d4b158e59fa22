"""The built-in benchmarks: ARPO's 13 evaluation sets, SimpleQA, and an offline multi-hop set.

Metrics: F1 for the four multi-hop QA sets (as ARPO reports them); math equivalence through math-verify
for the math sets (ARPO used an LLM judge there; math-verify is deterministic and offline); the LLM judge
for the deep-search sets and SimpleQA, falling back to cover-EM when no judge is configured (the
leaderboard says which metric each number is).

Default environments (ARPO.md section 1): math -> ``arpo/Python-v0`` (3 tool calls); multi-hop QA ->
``arpo/MultiTool-v0`` (search + python, 3 calls, offline BM25 by default); deep search ->
``arpo/MultiTool-v0`` with browse enabled and 6 calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from arpo_env.benchmarks.benchmark import Benchmark, qa_parser
from arpo_env.benchmarks.data import xbench_decrypt

MATH_ENV = ("arpo/Python-v0", {"max_tool_calls": 3})
QA_ENV = ("arpo/MultiTool-v0", {"max_tool_calls": 3})
DEEP_ENV = ("arpo/MultiTool-v0", {"browse": True, "max_tool_calls": 6})
ARPO_SRC = "github.com/dongguanting/ARPO@e257337d evaluation/data"
GATED = ("It is gated upstream and may not be redistributed, so it is not shipped: download it yourself "
         "(after accepting its terms on the Hugging Face hub).")


def _gsm8k_answer(raw: Any) -> str:
    text = str(raw)
    if "####" not in text:
        raise ValueError("GSM8K answer has no '####' before the final number")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def _read_xbench(path: Path) -> list[tuple[int, dict[str, Any]]]:
    from arpo_env.benchmarks.data import DatasetFormatError, read_records

    out = []
    for line, rec in read_records(path):
        if "canary" not in rec or "prompt" not in rec:
            raise DatasetFormatError(path, line, "xbench CSV row needs prompt, answer and canary columns")
        try:
            q = xbench_decrypt(rec["prompt"], rec["canary"])
            a = xbench_decrypt(rec["answer"], rec["canary"])
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(path, line, f"cannot decrypt this xbench row ({exc})") from None
        out.append((line, {"id": rec.get("id"), "question": q, "answer": a}))
    return out


def _text_only(rec: dict[str, Any]) -> bool:
    return str(rec.get("image") or "") == "" and str(rec.get("has_image", "False")) != "True"


def _math(name: str, title: str, shipped: str, **kw: Any) -> Benchmark:
    return Benchmark(name, title, "math", "math_equiv", MATH_ENV[0], dict(MATH_ENV[1]), files=(f"{name}/test.jsonl",),
                     shipped=shipped, **{"source": ARPO_SRC, **kw})


def _qa(name: str, title: str, shipped: str | None, metric: str = "f1", fallback: str | None = None,
        env: tuple[str, dict] = QA_ENV, category: str = "qa", files: tuple[str, ...] | None = None,
        **kw: Any) -> Benchmark:
    return Benchmark(name, title, category, metric, env[0], dict(env[1]),
                     files=files if files is not None else (f"{name}/test.jsonl",), shipped=shipped,
                     fallback_metric=fallback, source=kw.pop("source", ARPO_SRC), **kw)


BUILTIN: list[Benchmark] = [
    _math("aime24", "AIME24", "aime24.jsonl.gz", parser=qa_parser(question_keys=("problem", "question"))),
    _math("aime25", "AIME25", "aime25.jsonl"),
    _math("math500", "MATH500", "math500.jsonl"),
    _math("gsm8k", "GSM8K", "gsm8k.jsonl.gz", parser=qa_parser(answer_fn=_gsm8k_answer)),
    _math("math", "MATH", "math.jsonl.gz", parser=qa_parser(meta_keys=("level", "subject", "type")),
          source="github.com/aiwaves-cn/agents@e8c4e3c2 (MATH test set, answer = last \\boxed{})"),
    _qa("hotpotqa", "HotpotQA", "hotpotqa.jsonl"),
    _qa("2wiki", "2Wiki", "2wiki.jsonl"),
    _qa("musique", "MuSiQue", "musique.jsonl"),
    _qa("bamboogle", "Bamboogle", "bamboogle.jsonl"),
    _qa("gaia", "GAIA", None, "judge", "cover_em", DEEP_ENV, "deepsearch", files=("gaia/test.jsonl",),
        parser=qa_parser(question_keys=("Question", "question"), id_keys=("task_id", "id"), meta_keys=("Level",)),
        how_to_get=GATED + " Expected: ARPO's gaia/test.jsonl (103 text-only dev questions).",
        source="GAIA text-only dev (ARPO's file)"),
    _qa("hle", "HLE", None, "judge", "cover_em", DEEP_ENV, "deepsearch", files=("hle/test.jsonl", "hle/top.json"),
        parser=qa_parser(meta_keys=("answer_type", "category")), keep=_text_only,
        how_to_get=GATED + " Expected: JSON lines with id, question, answer, answer_type (ARPO's hle/test.jsonl).",
        source="Humanity's Last Exam, text-only"),
    _qa("webwalker", "WebWalker", "webwalker.jsonl", "judge", "cover_em", DEEP_ENV, "deepsearch"),
    _qa("xbench", "xbench-DS", "xbench_deepsearch_2505.csv", "judge", "cover_em", DEEP_ENV, "deepsearch",
        files=("xbench/official/DeepSearch-2505.csv",), reader=_read_xbench,
        source="github.com/xbench-ai/xbench-evals@17c56219 DeepSearch-2505.csv (encrypted; decrypted on load)"),
    _qa("simpleqa", "SimpleQA", "simpleqa.jsonl", "judge", "cover_em", DEEP_ENV, "other", files=("SimpleQA/test.jsonl",)),
    _qa("hotpotqa_offline", "HotpotQA-offline", "hotpotqa_offline.jsonl", files=(),
        parser=qa_parser(meta_keys=("type", "level", "supporting_titles")),
        source="HippoRAG hotpotqa_train.json: 100 questions whose evidence is in the bundled offline corpus"),
]

ARPO_BENCHMARKS = ("aime24", "aime25", "math500", "gsm8k", "math", "hotpotqa", "2wiki", "musique", "bamboogle",
                   "gaia", "hle", "webwalker", "xbench")
"""The 13 sets of the ARPO paper."""
