"""Hand-made (prediction, gold, equal) pairs for the math-equivalence parity test: each label is what a
careful grader says, by construction. Families: fractions, signs, points, roots, intervals, sets, tuples,
matrices, percentages, units, degrees, money, text, boxes, expressions, infinity."""
from __future__ import annotations

Pair = tuple[str, str, bool]


def _fractions() -> list[Pair]:
    out: list[Pair] = []
    for n, d, dec in [(1, 2, "0.5"), (3, 4, "0.75"), (1, 4, "0.25"), (5, 8, "0.625"), (7, 5, "1.4"), (9, 20, "0.45")]:
        out += [(f"\\frac{{{n}}}{{{d}}}", dec, True), (f"\\dfrac{{{n}}}{{{d}}}", f"{n}/{d}", True),
                (f"{n}/{d}", f"\\frac{{{n}}}{{{d}}}", True), (f"\\frac{{{d}}}{{{n}}}", f"\\frac{{{n}}}{{{d}}}", False),
                (f"-\\frac{{{n}}}{{{d}}}", dec, False), (f"\\tfrac{{{2 * n}}}{{{2 * d}}}", f"\\frac{{{n}}}{{{d}}}", True)]
    out += [("\\dfrac12", "0.5", True), ("\\frac{2}{3}", "0.67", False), ("\\frac{1}{3}", "0.3333333", True)]
    return out


def _signs_and_points() -> list[Pair]:
    out: list[Pair] = []
    for k in (1, 3, 7, 12, 250):
        out += [(f"-{k}", str(k), False), (str(k), f"-{k}", False), (f"-{k}", f"-{k}", True), (f"+{k}", str(k), True),
                (str(k), str(k + 1), False), (f"{k}.0", str(k), True)]
    out += [("1.5", "15", False), ("0.25", "25", False), ("2.50", "2.5", True), ("3.14", "3.41", False),
            ("1,000", "1000", True), ("10^3", "1000", True), ("1e3", "1000", True), ("0.1", "0.01", False)]
    return out


def _roots() -> list[Pair]:
    return [("\\sqrt{2}", "2^{1/2}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("\\sqrt{3}", "\\sqrt{2}", False),
            ("\\sqrt[3]{8}", "2", True), ("2\\sqrt{3}", "\\sqrt{12}", True), ("\\sqrt{12}", "3\\sqrt{2}", False),
            ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True), ("-\\sqrt{5}", "\\sqrt{5}", False),
            ("3+\\sqrt{2}", "\\sqrt{2}+3", True), ("3-\\sqrt{2}", "3+\\sqrt{2}", False)]


def _intervals_sets_tuples() -> list[Pair]:
    return [("[0,1)", "(0,1]", False), ("[0,1]", "[0, 1]", True), ("(-\\infty, 2)", "(-\\infty,2)", True),
            ("(2,\\infty)", "[2,\\infty)", False), ("(-3, 3)", "(-3, 3]", False), ("[1,5]", "[1,4]", False),
            ("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty,0)\\cup(1,\\infty)", True),
            ("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty,0]\\cup(1,\\infty)", False),
            ("\\{1,2\\}", "\\{2,1\\}", True), ("\\{1,2\\}", "\\{1,3\\}", False), ("\\{1,2,3\\}", "\\{1,2\\}", False),
            ("(1,2)", "(2,1)", False), ("(3,-4)", "(3,-4)", True), ("(3,4)", "(3,-4)", False),
            ("(1,2,3)", "(1,2,3)", True), ("(0,0,1)", "(0,1,0)", False), ("1, 2", "2, 1", True),
            ("-2, 3", "2, 3", False)]


def _matrices() -> list[Pair]:
    m = "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"
    return [(m, m, True), (m, m.replace("4", "5"), False), (m, m.replace("pmatrix", "bmatrix"), True),
            (m, "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
            ("\\begin{pmatrix}-1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
            ("\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", "\\begin{pmatrix}\\frac{1}{2}\\\\2\\end{pmatrix}", True)]


def _units_percent_degrees_money() -> list[Pair]:
    return [("50\\%", "50", True), ("50\\%", "0.5", True), ("25\\%", "50", False), ("12.5\\%", "12.5", True),
            ("-5\\%", "5\\%", False), ("5 cm", "5", True), ("5 \\text{ cm}", "5", True), ("5 cm", "6", False),
            ("12 apples", "12", True), ("7 \\text{ meters}", "7", True), ("8\\text{ m}^2", "8", True),
            ("30^\\circ", "30", True), ("30°", "30", True), ("45^\\circ", "30", False), ("-30^\\circ", "30", False),
            ("90^{\\circ}", "90", True), ("\\$18.50", "18.5", True), ("\\$18.50", "18.05", False),
            ("$18.50", "18.5", True), ("\\$1,000", "1000", True), ("\\$5", "\\$6", False), ("\\$0.75", "0.75", True),
            ("18.50 dollars", "18.5", True), ("\\$-3", "3", False)]


def _text() -> list[Pair]:
    return [("Paris", "paris", True), ("dog", "god", False), ("yes", "no", False), ("\\text{(C)}", "C", True),
            ("B", "C", False), ("\\text{Paris}", "Paris", True), ("even", "odd", False), ("Tuesday", "tuesday", True),
            ("\\text{Tuesday}", "Thursday", False), ("north", "thorn", False), ("no", "on", False),
            ("\\textbf{(A)}", "A", True), ("(D)", "D", True), ("A", "(B)", False), ("infinite", "finite", False)]


def _boxes() -> list[Pair]:
    return [("\\boxed{3}", "3", True), ("\\boxed{\\frac{1}{2}}", "0.5", True), ("\\boxed{-2}", "2", False),
            ("\\boxed{3} \\boxed{4}", "3", False), ("\\boxed{\\boxed{5}}", "5", True),
            ("\\boxed{x+1}", "x+1", True), ("\\boxed{(0,1]}", "[0,1)", False), ("\\boxed{\\sqrt{2}}", "\\sqrt{2}", True)]


def _expressions() -> list[Pair]:
    return [("x-1", "x+1", False), ("2x+1", "1+2x", True), ("x^2", "x\\cdot x", True), ("(x+1)^2", "x^2+2x+1", True),
            ("(x-1)^2", "x^2+2x+1", False), ("x=3", "3", True), ("x=-3", "3", False), ("\\pi", "3.14159265", True),
            ("2\\pi", "\\pi", False), ("-\\infty", "\\infty", False), ("\\infty", "\\infty", True),
            ("\\frac{x}{2}", "0.5x", True), ("e^{2}", "e^2", True), ("\\ln 2", "\\log 2", False), ("2^{10}", "1024", True),
            ("a+b", "b+a", True), ("a-b", "b-a", False), ("3x", "x3", True), ("\\sin^2 x + \\cos^2 x", "1", True),
            ("10!", "3628800", True)]


def _integers() -> list[Pair]:
    out: list[Pair] = []
    for k in range(0, 100, 7):
        out += [(str(k), str(k), True), (str(k), str(k + 10), False), (f"{k}", f"{k}.00", True)]
    return out


PAIRS: list[Pair] = (_fractions() + _signs_and_points() + _roots() + _intervals_sets_tuples() + _matrices()
                     + _units_percent_degrees_money() + _text() + _boxes() + _expressions() + _integers())
