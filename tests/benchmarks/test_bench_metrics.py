"""Metric parity: EM/F1 against the official HotpotQA evaluation formulas, math equivalence against
math-verify, cover-EM and the unbiased pass@k estimator."""
import math
import re
import string
from collections import Counter

import pytest

from arpo_env.benchmarks.metrics import cover_exact_match, exact_match, f1, math_equal, mean_and_se, pass_at_k


# --- the official HotpotQA formulas (hotpot_evaluate_v1.py), transcribed as the reference ---------------
def _official_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
    p, g = _official_normalize(prediction), _official_normalize(ground_truth)
    if p in ["yes", "no", "noanswer"] and p != g:
        return 0.0
    if g in ["yes", "no", "noanswer"] and p != g:
        return 0.0
    pt, gt = p.split(), g.split()
    common = Counter(pt) & Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pt), same / len(gt)
    return 2 * precision * recall / (precision + recall)


def _official_em(prediction, ground_truth):
    return float(_official_normalize(prediction) == _official_normalize(ground_truth))


CASES = [
    ("The Eiffel Tower", "Eiffel Tower"),            # article
    ("an apple", "the apple"),
    ("Washington, D.C.", "Washington DC"),           # punctuation
    ("U.S.A.", "usa"),
    ("  New   York  City ", "new york city"),        # whitespace
    ("Café Müller", "cafe muller"),                  # unicode: no accent folding, as the official script
    ("Café Müller", "Café Müller"),
    ("Pokémon’s theme", "Pokémon's theme"),          # curly apostrophe is not ASCII punctuation
    ("yes", "yes"), ("yes", "no"), ("yes it is", "yes"), ("noanswer", "no answer"),
    ("1.95 m", "1.95 m"), ("1.95m", "1.95 m"),
    ("theater", "the theater"),                      # 'the' only as a whole word
    ("Barack Obama Sr.", "Barack Obama"),
    ("the the the", "the"), ("", "anything"), ("a", ""),
    ("Frank Lowy AC", "Frank Lowy"),
    ("北京", "北京"), ("北京 大学", "北京"),
]


@pytest.mark.parametrize("pred,gold", CASES)
def test_em_f1_match_the_official_hotpotqa_formulas(pred, gold):
    assert exact_match(pred, gold) == _official_em(pred, gold)
    assert f1(pred, gold) == pytest.approx(_official_f1(pred, gold))


def test_lists_of_golds_take_the_best_alias():
    golds = ["the five boroughs", "City of New York", "New York City", "NYC"]
    assert exact_match("nyc", golds) == 1.0
    assert f1("New York", golds) == pytest.approx(max(_official_f1("New York", g) for g in golds))
    assert f1("New York", golds) == pytest.approx(0.8)
    assert exact_match("Boston", golds) == 0.0 and f1("x", []) == 0.0
    assert exact_match(None, golds) == 0.0 and f1(None, golds) == 0.0


def test_known_values():
    assert f1("Barack Obama Sr.", "Barack Obama") == pytest.approx(0.8)
    assert f1("yes it is", "yes") == 0.0      # the yes/no/noanswer rule
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0


def test_cover_em_uses_token_boundaries():
    assert cover_exact_match("It was the Eiffel Tower in Paris", ["eiffel tower"]) == 1.0
    assert cover_exact_match("10", "1") == 0.0
    assert cover_exact_match("Paris", ["Paris, France"]) == 0.0
    assert cover_exact_match("anything", [""]) == 0.0
    assert cover_exact_match(None, "x") == 0.0


@pytest.mark.parametrize("pred,gold,expected", [
    ("0.5", "\\frac{1}{2}", 1.0), ("\\dfrac12", "\\frac{1}{2}", 1.0),
    ("0.33", "\\frac13", 0.0),
    ("5 cm", "5", 1.0), ("10\\%", "10", 1.0), ("\\$18", "18", 1.0),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", 1.0),
    ("x = 3", "3", 1.0), ("1,000", "1000", 1.0), ("18.0", "18", 1.0),
    ("2\\sqrt{2}", "\\sqrt{8}", 1.0), ("p-q", "p - q", 1.0),
    ("\\text{(C)}", "C", 1.0), ("3", "4", 0.0), ("070", "70", 1.0),
    ("\\boxed{204}", "204", 1.0), ("", "1", 0.0), (None, "1", 0.0),
    ("James Madison", ["george washington", "james madison"], 1.0),  # free text falls back to EM
])
def test_math_equivalence(pred, gold, expected):
    assert math_equal(pred, gold) == expected


def test_math_equivalence_agrees_with_math_verify():
    from math_verify import parse, verify
    for pred, gold in [("0.5", "\\frac{1}{2}"), ("\\frac{2}{3}", "0.6667"), ("\\{1,2\\}", "\\{2,1\\}"),
                       ("e^{i\\pi}", "-1"), ("\\pi", "3.14159")]:
        assert math_equal(pred, gold) == float(verify(parse(f"${gold}$"), parse(f"${pred}$")))


def test_math_equivalence_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        assert list(ex.map(math_equal, ["0.5", "3"], ["\\frac12", "4"])) == [1.0, 0.0]


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 5) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 1, 5) == 1.0
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - math.comb(7, 4) / math.comb(10, 4))
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_mean_and_standard_error():
    m, se = mean_and_se([1.0, 0.0, 1.0, 0.0])
    assert m == 0.5 and se == pytest.approx(math.sqrt(1 / 3 / 4))
    assert mean_and_se([1.0]) == (1.0, 0.0)
