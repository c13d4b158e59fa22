"""ARPO's reward functions (ARPO.md section 2) as plain functions usable by any env or metric.

- :func:`normalize_answer`, :func:`exact_match`, :func:`f1_score`: SQuAD/HotpotQA normalisation (lower
  case, strip punctuation and the articles a/an/the, collapse whitespace); for F1, ``yes``/``no``/
  ``noanswer`` must match exactly, as in the official HotpotQA evaluation script.
- :func:`check_format`, :func:`arpo_score`, :func:`arpo_reward`: ARPO's training reward, equal to
  ``compute_score`` in ARPO's public code (``verl/utils/reward_score/deep_research.py``) on every response
  (tests/arpo_env/test_reward_parity.py checks 500+ generated responses against a transcription of it).
  Format failure -1; else the F1 of the answer's last box, +0.1 when F1 > 0 and the text holds both
  ``</search>`` and ``</python>``; 0 when F1 = 0.
- The ``arpo-calls`` variant (:func:`arpo_score` with ``called=``): the same, except that the bonus needs a
  real call of every bonus tool, as counted by the env, instead of the closing tags somewhere in the text.

ARPO's behaviours kept on purpose (docs/scorers.md lists them with examples): no ``<think>`` at all is a
format failure; the box is the *last* ``\\boxed`` of the answer, and if that one is unbalanced or is not
``\\boxed{`` the reward is -1 (an earlier box is not tried); ``\\boxed x`` (a space, no braces) anywhere in
the answer wins over braces and reads up to the next ``$``; a ``<result>`` written inside a call
(``<search>q <result>…</search>``) is a format failure; only ``search`` and ``python`` calls are checked.
Not covered: ARPO strips the tokenizer's EOS before extracting the answer; that never changes the score.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arpo_env.parsing import BRACE, RESULT_CLOSE, RESULT_OPEN

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


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the whitespace tokens of two already-normalised strings (shared tokens counted with
    multiplicity; 0 when none are shared)."""
    p_tok, g_tok = prediction.split(), gold.split()
    same = sum((Counter(p_tok) & Counter(g_tok)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p_tok), same / len(g_tok)
    return 2 * precision * recall / (precision + recall)


def _f1_single(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if (p in _SPECIAL or g in _SPECIAL) and p != g:
        return 0.0
    return token_f1(p, g)


def f1_score(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-level F1, max over golds (0.0 for an empty gold list)."""
    return max((_f1_single(prediction, g) for g in _golds(gold)), default=0.0)


@dataclass(frozen=True)
class RewardBreakdown:
    """One reward with its parts (ARPO's ``compute_score`` returns the same fields)."""

    score: float
    """-1 (format), 0 (wrong), F1, or F1 + bonus."""
    reason: str
    """Why, in a few words."""
    answer: str | None = None
    """The boxed answer the F1 was computed on (``None`` before extraction)."""
    f1: float = 0.0
    """F1 of ``answer`` against the best gold."""


def _calls_in_order(text: str, tag: str) -> bool:
    """Each ``<tag>`` is followed by ``</tag>``, then ``<result>``, then ``</result>``; both result tags are
    searched from the call's start (so a ``<result>`` inside the call fails), as ARPO's check does."""
    pos = 0
    while (start := text.find(f"<{tag}>", pos)) != -1:
        r_open = text.find(RESULT_OPEN, start)
        close = text.find(f"</{tag}>", start)
        r_close = text.find(RESULT_CLOSE, r_open)
        if -1 in (r_open, close, r_close) or not start < close < r_open < r_close:
            return False
        pos = r_close
    return True


ARPO_FORMAT_TOOLS = ("search", "python")
"""The tools whose calls ARPO's format check inspects."""


def check_format(response: str, tools: Iterable[str] = ARPO_FORMAT_TOOLS) -> tuple[bool, str]:
    """ARPO's format check of a whole response (model turns and inserted results). Returns (ok, reason).

    Balanced and present ``<think>`` tags; exactly one ``<answer>`` and one ``</answer>``, in that order;
    each call of each tool in ``tools`` followed, in order, by its closing tag and a ``<result>…</result>``;
    ``\\boxed{`` and a ``}`` inside the answer."""
    n_think = response.count("<think>")
    if n_think != response.count("</think>"):
        return False, "<think> and </think> are not balanced"
    if n_think == 0:
        return False, "no <think>…</think>"
    if response.count("<answer>") != 1 or response.count("</answer>") != 1:
        return False, "there must be exactly one <answer>…</answer>"
    for tag in tools:
        if not _calls_in_order(response, tag):
            return False, f"a <{tag}> call is not followed by </{tag}> and a <result>…</result>"
    a_start, a_end = response.find("<answer>"), response.find("</answer>")
    if a_start > a_end:
        return False, "</answer> comes before <answer>"
    inner = response[a_start:a_end]
    if "\\boxed{" not in inner or "}" not in inner:
        return False, "no \\boxed{} inside the answer"
    return True, "ok"


def arpo_box(answer: str) -> str | None:
    """The answer ARPO reads from an answer block, or ``None`` where ARPO's extraction fails (reward -1).

    If ``\\boxed `` (with a space) occurs anywhere: the text after its last occurrence, up to a ``$``.
    Else the last ``\\boxed``: braces are counted from there and the first ``}`` that brings the count to 0
    ends it; it must read ``\\boxed{…}`` (no closing brace, or ``\\boxed`` not followed by ``{``: ``None``).
    One scan from the last box: linear in the input."""
    if "\\boxed " in answer:
        return answer.split("\\boxed ")[-1].split("$")[0]
    idx = answer.rfind("\\boxed")
    if idx < 0:
        return None  # ARPO then tries \\fbox, which it rejects as well
    depth = 0
    for m in BRACE.finditer(answer, idx):
        depth += 1 if m.group() == "{" else -1
        if m.group() == "}" and depth == 0:
            box = answer[idx:m.end()]
            return box[len("\\boxed{"):-1] if box.startswith("\\boxed{") else None
    return None


def arpo_score(
    response: str,
    gold: str | Sequence[str],
    *,
    format_tools: Iterable[str] = ARPO_FORMAT_TOOLS,
    bonus_tools: Sequence[str] = ARPO_FORMAT_TOOLS,
    bonus: float = 0.1,
    called: Mapping[str, int] | None = None,
) -> RewardBreakdown:
    """ARPO's reward of ``response`` with its parts. With the defaults and ``called=None`` this is ARPO's
    ``compute_score`` exactly. ``called`` (tool name -> calls the env ran) makes it the ``arpo-calls``
    variant: the bonus needs ``called[t] > 0`` for every bonus tool instead of ``</t>`` in the text."""
    ok, reason = check_format(response, tuple(format_tools))
    if not ok:
        return RewardBreakdown(-1.0, f"bad format: {reason}")
    a_start = response.find("<answer>") + len("<answer>")
    answer = arpo_box(response[a_start:response.find("</answer>")])
    if answer is None:
        return RewardBreakdown(-1.0, "no balanced \\boxed{} at the answer's last box")
    f1 = f1_score(answer, gold)
    if f1 <= 0:
        return RewardBreakdown(0.0, "wrong answer, good format", answer, f1)
    if called is None:
        used = all(f"</{t}>" in response for t in bonus_tools)
    else:
        used = all(called.get(t, 0) > 0 for t in bonus_tools)
    if bonus_tools and used:
        return RewardBreakdown(f1 + bonus, f"F1 {f1:.3f} + {bonus} for using {' and '.join(bonus_tools)}", answer, f1)
    return RewardBreakdown(f1, f"F1 {f1:.3f}", answer, f1)


def arpo_reward(response: str, gold: str | Sequence[str], **options: Any) -> float:
    """:func:`arpo_score`'s score (the same keyword options)."""
    return arpo_score(response, gold, **options).score


REWARDS = ("arpo", "arpo-calls")
"""Built-in reward names for :attr:`arpo_env.EnvConfig.reward`."""
