"""ARPO's reward functions (ARPO.md section 2) as plain functions usable by any env or metric.

- :func:`normalize_answer`, :func:`exact_match`, :func:`f1_score`: SQuAD/HotpotQA normalisation (lower
  case, strip punctuation and the articles a/an/the, collapse whitespace); for F1, ``yes``/``no``/
  ``noanswer`` must match exactly, as in the official HotpotQA evaluation script.
- :func:`check_format`: ARPO's format validation; any failure gives reward -1.
- :func:`arpo_reward`: F1 against the best gold + 0.1 when F1 > 0 and both search and python were used.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

from arpo_env.parsing import RESULT_CLOSE, RESULT_OPEN, extract_boxed

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower, drop punctuation, drop articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold, else 0.0."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _golds(gold)))


def _f1_single(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if (p in _SPECIAL or g in _SPECIAL) and p != g:
        return 0.0
    p_tok, g_tok = p.split(), g.split()
    common = Counter(p_tok) & Counter(g_tok)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p_tok), same / len(g_tok)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-level F1, max over golds (0.0 for an empty gold list)."""
    return max((_f1_single(prediction, g) for g in _golds(gold)), default=0.0)


def _calls_in_order(text: str, tag: str) -> bool:
    """Each ``<tag>`` is followed, in order, by ``</tag>``, ``<result>`` and ``</result>``."""
    pos = 0
    while (start := text.find(f"<{tag}>", pos)) != -1:
        close = text.find(f"</{tag}>", start)
        r_open = text.find(RESULT_OPEN, close if close != -1 else start)
        r_close = text.find(RESULT_CLOSE, r_open if r_open != -1 else start)
        if -1 in (close, r_open, r_close) or not start < close < r_open < r_close:
            return False
        pos = r_close
    return True


def check_format(response: str, tools: Iterable[str] = ("search", "python")) -> tuple[bool, str]:
    """ARPO's format check of a whole response (model turns and inserted results). Returns (ok, reason).

    Balanced ``<think>`` tags; exactly one ``<answer>…</answer>``; each call of each tool in ``tools``
    followed in order by its closing tag and a ``<result>…</result>``; ``\\boxed{}`` inside the answer.
    """
    if response.count("<think>") != response.count("</think>"):
        return False, "<think> and </think> are not balanced"
    if response.count("<answer>") != 1 or response.count("</answer>") != 1:
        return False, "there must be exactly one <answer>…</answer>"
    for tag in tools:
        if not _calls_in_order(response, tag):
            return False, f"a <{tag}> call is not followed by </{tag}> and a <result>…</result>"
    a_start, a_end = response.find("<answer>"), response.find("</answer>")
    if a_start > a_end:
        return False, "</answer> comes before <answer>"
    if extract_boxed(response[a_start:a_end]) is None:
        return False, "no \\boxed{} inside the answer"
    return True, "ok"


def arpo_reward(
    response: str,
    gold: str | Sequence[str],
    tools: Iterable[str] = ("search", "python"),
    bonus_tools: tuple[str, ...] = ("search", "python"),
    bonus: float = 0.1,
) -> float:
    """ARPO's reward: -1 on a format failure; else F1 of the last ``\\boxed{}`` of the answer vs the best
    gold, plus ``bonus`` when F1 > 0 and every tool of ``bonus_tools`` was called at least once."""
    tools = tuple(tools)
    ok, _ = check_format(response, tools)
    if not ok:
        return -1.0
    a_start, a_end = response.find("<answer>"), response.find("</answer>")
    prediction = extract_boxed(response[a_start:a_end]) or ""
    f1 = f1_score(prediction, gold)
    if f1 > 0 and bonus_tools and all(f"<{t}>" in response for t in bonus_tools):
        return f1 + bonus
    return f1
