"""A step-by-step restatement of ARPO's evaluation QA metrics, for the parity test only.

Source: ``evaluation/src/metrics.py::evaluate_qa_prediction`` in github.com/dongguanting/ARPO (the code behind
its published QA numbers): ``normalize_answer(text, remove_articles=True)`` (lower, strip, articles, spaces;
punctuation kept), token-overlap F1 with no yes/no rule, EM, plain-substring acc; a reference string that
starts with ``[`` is split at commas."""
from __future__ import annotations

import re
from collections import Counter


def _norm(text) -> str:
    text = str(text).lower().strip()
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def evaluate_qa(prediction: str, references) -> dict[str, float]:
    if isinstance(references, str):
        references = [references] if not references.startswith("[") else \
            [e.strip() for e in re.split(r",\s*", references.strip("[]"))]
    out = {"em": 0, "acc": 0, "f1": 0.0}
    pred = _norm(prediction)
    for ref in references:
        r = _norm(ref)
        p_tok, r_tok = pred.split(), r.split()
        same = sum((Counter(p_tok) & Counter(r_tok)).values())
        if same == 0:
            f1 = 0.0
        else:
            prec = same / len(p_tok) if p_tok else 0
            rec = same / len(r_tok) if r_tok else 0
            f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        out["em"] = max(out["em"], int(pred == r))
        out["acc"] = max(out["acc"], int(r in pred))
        out["f1"] = max(out["f1"], f1)
    return out
