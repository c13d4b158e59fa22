"""math_equal against math-verify on 200+ labelled pairs (tests/benchmarks/math_pairs.py).

math-verify's own verdict here is ``verify(parse("$gold$"), parse("$pred$"))``; ``None`` when it cannot
parse a side. The differences are pinned: a new one fails the test until it is understood and listed
(docs/scorers.md lists the same pairs)."""
from __future__ import annotations

import pytest

from arpo_env.benchmarks.metrics import math_equal
from tests.benchmarks.math_pairs import PAIRS

pytest.importorskip("math_verify")

WE_EQUAL_MATH_VERIFY_NOT: dict[tuple[str, str], str] = {}
"""Pairs we score 1 and math-verify does not, with why (none at present)."""

WE_DIFFER_MATH_VERIFY_EQUAL = {
    ("no", "on"): "math-verify reads both as the product n*o; word answers are compared as text",
}
"""Pairs math-verify calls equal and we do not (word answers read as products of symbols)."""

KNOWN_MISSES = {
    ("1e3", "1000"): "math-verify does not read e-notation",
    ("12.5\\%", "12.5"): "math-verify parses both and says different (it accepts 50\\% = 50 but not 12.5\\% = 12.5)",
    ("18.50 dollars", "18.5"): "math-verify does not parse a number followed by a plural unit word",
}
"""Truly equal pairs that still score 0 (a miss, never a false 1)."""


def _math_verify(pred: str, gold: str) -> bool | None:
    from math_verify import parse, verify

    g, p = parse(f"${gold}$"), parse(f"${pred}$")
    return None if not g or not p else bool(verify(g, p))


def test_the_pair_set_is_large_and_varied():
    assert len(PAIRS) >= 200
    assert 0.3 < sum(e for _, _, e in PAIRS) / len(PAIRS) < 0.7


def test_parity_with_math_verify():
    ours = {(p, g): math_equal(p, g) == 1.0 for p, g, _ in PAIRS}
    mv = {(p, g): _math_verify(p, g) for p, g, _ in PAIRS}
    says_different_we_equal = [k for k in ours if mv[k] is False and ours[k]]
    assert says_different_we_equal == []
    assert {k for k in ours if ours[k] and not mv[k]} == set(WE_EQUAL_MATH_VERIFY_NOT)
    assert {k for k in ours if mv[k] and not ours[k]} == set(WE_DIFFER_MATH_VERIFY_EQUAL)


def test_a_wrong_answer_never_scores_one():
    assert [(p, g) for p, g, e in PAIRS if not e and math_equal(p, g) == 1.0] == []


def test_misses_are_only_the_known_ones():
    assert {(p, g) for p, g, e in PAIRS if e and math_equal(p, g) == 0.0} == set(KNOWN_MISSES)


@pytest.mark.parametrize("pred,gold", [("-3", "3"), ("1.5", "15"), ("x-1", "x+1"), ("[0,1)", "(0,1]"),
                                       ("-\\infty", "\\infty"), ("dog", "god")])
def test_the_reported_sign_and_bracket_errors_score_zero(pred, gold):
    assert math_equal(pred, gold) == 0.0


def test_escaped_and_bare_dollars_are_money():
    assert math_equal("\\$18.50", "18.5") == 1.0
    assert math_equal("$18.50", "18.5") == 1.0
    assert math_equal("\\$18.50", "18.05") == 0.0
