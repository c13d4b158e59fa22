"""LLM-as-judge: any model behind the :class:`arpo_env.TextCompleter` protocol grades a prediction
against the gold answers with a fixed, published rubric (:data:`RUBRIC`, versioned by
:data:`RUBRIC_VERSION`; its hash and the verdict parser's version go into every run's ``metadata.json``).

The judge's reply is read by :func:`parse_verdict`: the text after a reasoning block (``<think>…</think>``),
a labelled verdict (``Verdict: …``) when there is one, negations before the bare word (``not correct``,
``incorrect``, ``wrong`` are INCORRECT). A reply with no verdict, or with both (``CORRECT or INCORRECT``),
or whose reasoning never finished, is **unparsed**: it scores 0, is stored with the row
(``judge_verdict: "unparsed"``) and counted in the run's summary, so a weak judge cannot inflate scores
unnoticed. Deterministic only if the completer decodes greedily (use temperature 0 for judges).

Not covered: replies in languages other than English; verdict synonyms beyond those in :data:`_NEGATIVE`
and :data:`_POSITIVE`.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from arpo_env.agent import TextCompleter

RUBRIC_VERSION = "arpo-judge-v1"
RUBRIC = """You are grading an answer to a question against the reference answer(s).

Question: {question}
Reference answer(s): {gold}
Predicted answer: {prediction}

Rules:
1. The prediction is CORRECT if it states the same fact, entity, number or choice as one reference answer.
   Ignore capitalisation, punctuation, articles, word order, units written out or abbreviated, and
   equivalent forms of numbers (1/2 = 0.5 = 50%), names (with or without titles or middle names) and dates.
2. Numbers must agree to the precision the reference gives; a range or a hedge between several candidates
   is INCORRECT. A prediction that contains the reference plus contradicting claims is INCORRECT.
3. For multiple choice, the chosen letter or the choice's text must match the reference choice.
4. An empty prediction, a refusal or "I don't know" is INCORRECT.

Reply with exactly one word: CORRECT or INCORRECT."""
RUBRIC_SHA256 = hashlib.sha256(RUBRIC.encode()).hexdigest()[:16]

PARSER_VERSION = "verdict-v2"
"""Version of :func:`parse_verdict` (part of the judge's description: a changed parser is a changed judge)."""

VerdictLabel = Literal["correct", "incorrect", "unparsed"]
_NEGATIVE = (r"\bincorrect\b|\bnot\s+(?:entirely\s+|fully\s+|quite\s+)?correct\b|\bisn'?t\s+correct\b"
             r"|\bwrong\b|\bnot\s+right\b|\bfalse\b")
_POSITIVE = r"\bcorrect\b|\bright\b|\btrue\b"
_MENTION = re.compile(f"(?P<neg>{_NEGATIVE})|(?P<pos>{_POSITIVE})", re.IGNORECASE)
_LABELLED = re.compile(r"(?:verdict|final\s+(?:answer|verdict|grade|judg(?:e)?ment)|grade|judg(?:e)?ment|answer)"
                       r"\s*(?:is)?\s*[:=\-]?\s*[*_`\"'(\[]*\s*(?P<word>[^\n.;]{0,40})", re.IGNORECASE)
_THINK_OPEN, _THINK_CLOSE = re.compile(r"<think(?:ing)?>", re.I), re.compile(r"</think(?:ing)?>", re.I)


def _polarities(text: str) -> set[str]:
    return {"incorrect" if m.group("neg") else "correct" for m in _MENTION.finditer(text)}


def parse_verdict(reply: str | None) -> VerdictLabel:
    """The verdict in a judge's reply: ``correct``, ``incorrect`` or ``unparsed`` (see the module docstring).

    Order: drop everything up to the last ``</think>`` (an unclosed ``<think>`` is unparsed: the token budget
    ended the reasoning); then the last labelled verdict (``Verdict: CORRECT``, ``Final answer: incorrect``)
    if its words hold exactly one polarity; else the whole remaining text if it holds exactly one."""
    text = reply or ""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    elif _THINK_OPEN.search(text):
        return "unparsed"
    for m in reversed(list(_LABELLED.finditer(text))):
        found = _polarities(m.group("word"))
        if len(found) == 1:
            return found.pop()  # type: ignore[return-value]
    found = _polarities(text)
    return found.pop() if len(found) == 1 else "unparsed"  # type: ignore[return-value]


@dataclass
class Verdict:
    """One judgement."""

    score: float
    """1.0 for CORRECT, else 0.0 (unparsed included)."""
    reply: str
    """The judge's raw reply (stored in results for audits)."""
    label: VerdictLabel
    """What :func:`parse_verdict` read: ``correct``, ``incorrect`` or ``unparsed``."""

    @property
    def parsed(self) -> bool:
        """Whether the reply held a verdict."""
        return self.label != "unparsed"


DEFAULT_JUDGE_TOKENS = 1024
"""Token budget of a judge reply: room for a reasoning judge's ``<think>`` block; a plain judge stops after
one word anyway."""


class LLMJudge:
    """Grades with :data:`RUBRIC` through ``completer`` (e.g. an agent backend's ``complete``).

    ``max_new_tokens`` bounds the reply; a reasoning judge (Qwen3, R1-style) needs hundreds of tokens before
    its verdict: a reply cut inside its reasoning is unparsed, never guessed."""

    def __init__(self, completer: TextCompleter, name: str = "judge", max_new_tokens: int = DEFAULT_JUDGE_TOKENS):
        if max_new_tokens < 1:
            raise ValueError(f"the judge's max_new_tokens must be >= 1, got {max_new_tokens}")
        self.completer, self.name, self.max_new_tokens = completer, name, max_new_tokens

    def describe(self) -> dict[str, str]:
        """What determines the judge's scores (for ``metadata.json``)."""
        return {"name": self.name, "rubric": RUBRIC_VERSION, "rubric_sha256": RUBRIC_SHA256,
                "parser": PARSER_VERSION, "max_new_tokens": str(self.max_new_tokens)}

    def __call__(self, question: str, prediction: str | None, gold: str | Sequence[str]) -> Verdict:
        if prediction is None or not prediction.strip():
            return Verdict(0.0, "", "incorrect")
        golds = [gold] if isinstance(gold, str) else list(gold)
        prompt = RUBRIC.format(question=question, gold=" | ".join(golds), prediction=prediction)
        reply = self.completer.complete([{"role": "user", "content": prompt}], max_new_tokens=self.max_new_tokens)
        label = parse_verdict(reply)
        return Verdict(float(label == "correct"), reply or "", label)
