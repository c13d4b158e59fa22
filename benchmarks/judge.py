"""LLM-as-judge: any model behind the :class:`arpo_env.TextCompleter` protocol grades a prediction
against the gold answers with a fixed, published rubric (:data:`RUBRIC`, versioned by
:data:`RUBRIC_VERSION`; its hash goes into every run's ``metadata.json``).

The judge answers with one word; ``CORRECT`` scores 1, anything else 0. A reply that contains neither
``CORRECT`` nor ``INCORRECT`` is recorded as unparsable (score 0) so a weak judge cannot silently inflate
scores. Deterministic only if the completer decodes greedily (use temperature 0 for judges).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

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

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


@dataclass
class Verdict:
    """One judgement."""

    score: float
    """1.0 for CORRECT, else 0.0."""
    reply: str
    """The judge's raw reply (stored in results for audits)."""
    parsed: bool
    """Whether the reply contained a verdict."""


class LLMJudge:
    """Grades with :data:`RUBRIC` through ``completer`` (e.g. an agent backend's ``complete``)."""

    def __init__(self, completer: TextCompleter, name: str = "judge", max_new_tokens: int = 8):
        self.completer, self.name, self.max_new_tokens = completer, name, max_new_tokens

    def describe(self) -> dict[str, str]:
        """What determines the judge's scores (for ``metadata.json``)."""
        return {"name": self.name, "rubric": RUBRIC_VERSION, "rubric_sha256": RUBRIC_SHA256}

    def __call__(self, question: str, prediction: str | None, gold: str | Sequence[str]) -> Verdict:
        if prediction is None or not prediction.strip():
            return Verdict(0.0, "", True)
        golds = [gold] if isinstance(gold, str) else list(gold)
        prompt = RUBRIC.format(question=question, gold=" | ".join(golds), prediction=prediction)
        reply = self.completer.complete([{"role": "user", "content": prompt}], max_new_tokens=self.max_new_tokens)
        m = _VERDICT.search(reply or "")
        if m is None:
            return Verdict(0.0, reply, False)
        return Verdict(float(m.group(1).upper() == "CORRECT"), reply, True)
