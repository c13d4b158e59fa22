"""Evaluation metrics. Each takes a prediction (the final answer, e.g. the last ``\\boxed{}``) and gold
answers (a string or a list of aliases) and returns a score in [0, 1], the best over the golds.
docs/scorers.md lists every scorer with its reference and every deliberate difference.

- :func:`exact_match`, :func:`f1` — the official HotpotQA/SQuAD formulas (reused from
  :mod:`arpo_env.rewards`): lower case, drop punctuation and the articles a/an/the, collapse whitespace;
  F1 over tokens, and ``yes``/``no``/``noanswer`` score 0 unless matched exactly.
- :func:`arpo_eval_em`, :func:`arpo_eval_f1`, :func:`arpo_eval_acc` — ARPO's evaluation code, which
  produced its published QA numbers: punctuation kept, no yes/no rule, plain-substring ``acc``.
- :func:`cover_exact_match` — 1 when a normalised gold occurs in the normalised prediction as a run of
  whole tokens. Search-R1's ``subem_check`` is a plain substring test instead: there ``"1"`` covers ``"10"``
  and an empty gold covers everything; here neither does.
- :func:`math_equal` — equivalence by math-verify (``\\frac{1}{2}`` = ``0.5``, ``5 cm`` = ``5``, sets,
  intervals and tuples); a different value never scores 1.
- :func:`pass_at_k` — the unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), k <= n.
- The LLM judge lives in :mod:`arpo_env.benchmarks.judge`.

Not covered: multiple-choice letter extraction from free text (the agent's boxed answer is compared).
"""
from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence

from arpo_env.extras import require
from arpo_env.rewards import exact_match as _em
from arpo_env.rewards import f1_score as _f1
from arpo_env.rewards import normalize_answer, token_f1

Gold = str | Sequence[str]


def _golds(gold: Gold) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(prediction: str | None, gold: Gold) -> float:
    """Official HotpotQA EM, max over golds; ``None`` (no answer) scores 0."""
    return 0.0 if prediction is None else _em(prediction, gold)


def f1(prediction: str | None, gold: Gold) -> float:
    """Official HotpotQA token F1, max over golds; ``None`` scores 0."""
    return 0.0 if prediction is None else _f1(prediction, gold)


def cover_exact_match(prediction: str | None, gold: Gold) -> float:
    """1.0 if some normalised, non-empty gold appears in the normalised prediction on token boundaries."""
    if prediction is None:
        return 0.0
    p = f" {normalize_answer(prediction)} "
    return float(any((g := normalize_answer(x)) and f" {g} " in p for x in _golds(gold)))


def _mv_timeouts() -> dict[str, int | None]:
    # math-verify's timeouts use SIGALRM, which only works in the main thread
    main = threading.current_thread() is threading.main_thread()
    return {"parse": 5 if main else None, "verify": 5 if main else None}


_CURRENCY = re.compile(r"\\\$|\$(?=\s*\d)")  # an escaped dollar, or a bare '$' before a number: money
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}")
_MATH_SIGNS = re.compile(r"[\d=^_]|\\(?!text|mathrm|textbf|textit|mathbf|mbox|operatorname)[A-Za-z]+")


def _money_free(text: str) -> str:
    """``\\$18.50`` and a bare ``$18.50`` are amounts of money, not math delimiters."""
    if "\\$" in text or text.count("$") % 2 == 1:
        return _CURRENCY.sub("", text)
    return text


def _mv_parse(text: str):  # noqa: ANN202
    require("bench", "math_verify", needed_by="the math_equiv metric")
    from math_verify import parse

    text = _money_free(text.strip())
    wrapped = text if ("$" in text or "\\boxed" in text or "\\[" in text) else f"${text}$"
    out = parse(wrapped, parsing_timeout=_mv_timeouts()["parse"])
    if not out and wrapped != text:
        out = parse(text, parsing_timeout=_mv_timeouts()["parse"])
    return out


def _text_key(text: str) -> str:
    """Light normalisation for free text: lower case, ``\\text{}`` unwrapped, ``$`` and spacing commands dropped,
    whitespace collapsed, a trailing full stop dropped. Signs, points and brackets are kept."""
    text = _TEXT_WRAP.sub(lambda m: m.group(1), _money_free(text))
    text = re.sub(r"\\[,;:! ]|~|\$", " ", text)
    return " ".join(text.lower().split()).rstrip(".").strip()


def _is_text(text: str) -> bool:
    """A word answer (no digits, no operators, no LaTeX math): math-verify would read ``dog`` as the product
    ``d*o*g`` and call it equal to ``god``, so such answers are compared as text."""
    bare = _TEXT_WRAP.sub(lambda m: m.group(1), text)
    return not _MATH_SIGNS.search(bare) and re.search(r"[A-Za-z]{2,}", bare) is not None


def _verify(gold_parsed: list, pred_parsed: list) -> bool:
    from math_verify import verify

    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_mv_timeouts()["verify"]))
    except Exception:  # math-verify may raise on exotic input; treat as not equal
        return False


def math_equal(prediction: str | None, gold: Gold) -> float:
    """1.0 if ``prediction`` is mathematically equal to some gold, max over golds.

    - Both sides parse (math-verify): math-verify's verdict decides. A different value never scores 1
      (``-3`` vs ``3``, ``[0,1)`` vs ``(0,1]``). Word answers are the one exception in the other direction:
      math-verify reads ``dog`` as ``d*o*g``, so when either side is a word answer (:func:`_is_text`), an
      "equal" from math-verify also needs the texts to match (:func:`_text_key`).
    - One side does not parse: text comparison by :func:`_text_key`, which keeps signs, points and brackets.
    - Money: ``\\$18.50`` and a lone ``$18.50`` are read as 18.50 (not as math delimiters). Units, percentages
      and degrees are math-verify's: ``5 cm`` = 5, ``50\\%`` = 0.5 = 50 (it accepts both), ``30^\\circ`` = 30.

    Not covered: word answers that are really products of variables (``xy`` vs ``yx`` compare as text);
    math-verify rounds floats to 6 significant digits. Every difference from math-verify is listed in
    ``docs/scorers.md``.
    """
    if prediction is None or not prediction.strip():
        return 0.0
    pred = _mv_parse(prediction)
    for g in _golds(gold):
        gold_parsed = _mv_parse(g)
        if pred and gold_parsed:
            same = _verify(gold_parsed, pred)
            if same and (_is_text(prediction) or _is_text(g)):
                same = _text_key(prediction) == _text_key(g)
        else:
            same = bool(_text_key(g)) and _text_key(prediction) == _text_key(g)
        if same:
            return 1.0
    return 0.0


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _arpo_golds(gold: Gold) -> list[str]:
    """ARPO's reading of the references: a list as is; a string starting with ``[`` split at commas."""
    if not isinstance(gold, str):
        return [str(g) for g in gold]
    if not gold.startswith("["):
        return [gold]
    return [part.strip() for part in re.split(r",\s*", gold.strip("[]"))]


def _arpo_norm(text: str) -> str:
    """ARPO's evaluation normalisation for QA: lower case, strip, drop the articles, collapse whitespace.
    Punctuation is kept (``d.c.`` is not ``dc``)."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().strip()).split())


def arpo_eval_f1(prediction: str | None, gold: Gold) -> float:
    """The F1 of ARPO's evaluation code (``evaluation/src/metrics.py::evaluate_qa_prediction``), which
    produced its published QA numbers: :func:`_arpo_norm` (punctuation kept) and no ``yes``/``no`` rule;
    max over the references. Differs from the official :func:`f1` on about 1 pair in 10 of varied input."""
    if not prediction:
        return 0.0
    p = _arpo_norm(prediction)
    return max((token_f1(p, _arpo_norm(r)) for r in _arpo_golds(gold)), default=0.0)


def arpo_eval_em(prediction: str | None, gold: Gold) -> float:
    """The exact match of ARPO's evaluation code (normalisation of :func:`arpo_eval_f1`)."""
    if not prediction:
        return 0.0
    p = _arpo_norm(prediction)
    return float(any(p == _arpo_norm(r) for r in _arpo_golds(gold)))


def arpo_eval_acc(prediction: str | None, gold: Gold) -> float:
    """ARPO's ``acc``: a normalised reference occurs in the normalised prediction as a plain substring
    (``1`` is in ``10``; an empty reference is in everything). Compare :func:`cover_exact_match`."""
    if not prediction:
        return 0.0
    p = _arpo_norm(prediction)
    return float(any(_arpo_norm(r) in p for r in _arpo_golds(gold)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` attempts of which ``c`` are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= attempts ({n})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


SCORERS = {"em": exact_match, "f1": f1, "cover_em": cover_exact_match, "math_equiv": math_equal,
           "arpo_em": arpo_eval_em, "arpo_f1": arpo_eval_f1, "arpo_acc": arpo_eval_acc}
"""Offline metrics by name (the judge needs a model and is in :mod:`arpo_env.benchmarks.judge`)."""


def score_all(prediction: str | None, gold: Gold, names: Iterable[str] = ("em", "f1", "cover_em")) -> dict[str, float]:
    """Every named offline metric of one prediction."""
    return {n: float(SCORERS[n](prediction, gold)) for n in names}


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); 0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)
