"""A step-by-step restatement of ARPO's training reward, for the parity test only.

Source: ``ARPO/verl_arpo_entropy/verl/utils/reward_score/deep_research.py::compute_score`` in
github.com/dongguanting/ARPO. Each function follows one function there, statement by statement and quirks
included (where ``<result>`` is searched from, ``str.find(..., -1)``, the ``\\boxed `` branch that wins over
braces, the assertion that rejects ``\\fbox``). It is deliberately naive code: it is the specification the
library's :func:`arpo_env.rewards.arpo_score` is checked against, not an implementation to use.
"""
from __future__ import annotations

import re
import string
from collections import Counter


def validate(text: str) -> bool:
    if text.count("<think>") != text.count("</think>"):
        return False
    if text.count("<think>") == 0 or text.count("</think>") == 0:
        return False
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return False
    for tag in ("search", "python"):
        cur = 0
        while True:
            call = text.find(f"<{tag}>", cur)
            if call == -1:
                break
            res = text.find("<result>", call)
            call_end = text.find(f"</{tag}>", call)
            res_end = text.find("</result>", res)
            if res == -1 or call_end == -1 or res_end == -1:
                return False
            if not (call < call_end < res < res_end):
                return False
            cur = res_end
    a, b = text.find("<answer>"), text.find("</answer>")
    if a > b:
        return False
    inner = text[a:b]
    return "\\boxed{" in inner and "}" in inner


def last_box(s: str) -> str | None:
    idx = s.rfind("\\boxed")
    if "\\boxed " in s:
        return "\\boxed " + s.split("\\boxed ")[-1].split("$")[0]
    if idx < 0:
        idx = s.rfind("\\fbox")
        if idx < 0:
            return None
    depth, i, right = 0, idx, None
    while i < len(s):
        if s[i] == "{":
            depth += 1
        if s[i] == "}":
            depth -= 1
            if depth == 0:
                right = i
                break
        i += 1
    return None if right is None else s[idx:right + 1]


def unbox(s: str) -> str:
    if "\\boxed " in s:
        assert s.startswith("\\boxed ")
        return s[len("\\boxed "):]
    assert s.startswith("\\boxed{")
    assert s[-1] == "}"
    return s[len("\\boxed{"):-1]


def norm(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def f1(pred: str, golds) -> float:
    golds = [golds] if isinstance(golds, str) else golds
    best = 0.0
    for g in golds:
        p, t = norm(pred), norm(g)
        if p in ("yes", "no", "noanswer") and p != t:
            continue
        if t in ("yes", "no", "noanswer") and p != t:
            continue
        same = sum((Counter(p.split()) & Counter(t.split())).values())
        if same == 0:
            continue
        prec, rec = same / len(p.split()), same / len(t.split())
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def compute_score(text: str, golds) -> float:
    if not validate(text):
        return -1.0
    m = re.search(r"<answer>(.*?)</answer>", text.strip(), re.DOTALL)
    if not m:
        return -1.0
    try:
        answer = unbox(last_box(m.group(1)))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - ARPO turns any extraction error into -1
        return -1.0
    score = f1(answer, golds)
    if score > 0 and "</search>" in text and "</python>" in text:
        return score + 0.1
    return score if score > 0 else 0.0
