"""Our scorers against the reference implementations they claim to equal; prints JSON.

- ``reward``: :func:`arpo_env.rewards.arpo_score` vs ARPO's own ``compute_score`` on generated responses
  (the generator of tests/arpo_env/test_reward_parity.py, ``--responses`` of them). Needs ARPO's file:
  ``--arpo-reward PATH`` to ``verl/utils/reward_score/deep_research.py`` of github.com/dongguanting/ARPO
  (it imports transformers, nothing else heavy).
- ``eval_f1``: :func:`arpo_env.benchmarks.metrics.arpo_eval_f1` / ``arpo_eval_em`` vs ARPO's
  ``evaluate_qa_prediction`` (``--arpo-metrics PATH`` to ``evaluation/src/metrics.py``; its relative import of
  ``math_equivalence`` is stubbed) on the pairs of tests/benchmarks/qa_pairs.py.

    python bench/scorer_parity.py --arpo-reward ARPO/.../deep_research.py --arpo-metrics evaluation/src/metrics.py
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(path: str, name: str, package: str | None = None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    if package:
        mod.__package__ = package
    spec.loader.exec_module(mod)
    return mod


def reward_parity(path: str, n: int) -> dict[str, object]:
    from arpo_env.rewards import arpo_score
    from tests.arpo_env.test_reward_parity import generate

    ref = _load(path, "arpo_deep_research")
    diffs = []
    cases = generate(n, seed=1)
    for text, gold, _ in cases:
        with contextlib.redirect_stdout(io.StringIO()):  # ARPO's function prints every verdict
            theirs = float(ref.compute_score("bench", text, gold)["score"])
        if abs(arpo_score(text, gold).score - theirs) > 1e-9:
            diffs.append({"response": text, "gold": gold, "ours": arpo_score(text, gold).score, "arpo": theirs})
    return {"responses": len(cases), "differences": len(diffs), "examples": diffs[:5]}


def eval_f1_parity(path: str) -> dict[str, object]:
    from arpo_env.benchmarks.metrics import arpo_eval_em, arpo_eval_f1
    from tests.benchmarks.qa_pairs import PAIRS

    pkg = types.ModuleType("arpo_eval_src")
    pkg.__path__ = []  # type: ignore[attr-defined]
    stub = types.ModuleType("arpo_eval_src.math_equivalence")
    stub.is_equiv = lambda a, b: a == b  # type: ignore[attr-defined]
    sys.modules.update({"arpo_eval_src": pkg, "arpo_eval_src.math_equivalence": stub})
    ref = _load(path, "arpo_eval_src.metrics", package="arpo_eval_src")
    diffs = []
    for pred, gold in PAIRS:
        theirs = ref.evaluate_qa_prediction(pred, gold)
        if abs(arpo_eval_f1(pred, gold) - theirs["f1"]) > 1e-9 or arpo_eval_em(pred, gold) != theirs["em"]:
            diffs.append({"prediction": pred, "gold": gold, "arpo": theirs})
    return {"pairs": len(PAIRS), "differences": len(diffs), "examples": diffs[:5]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arpo-reward", help="path to ARPO's deep_research.py")
    p.add_argument("--arpo-metrics", help="path to ARPO's evaluation/src/metrics.py")
    p.add_argument("--responses", type=int, default=3000)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))  # the tests' generators
    out: dict[str, object] = {}
    if a.arpo_reward:
        out["reward"] = reward_parity(a.arpo_reward, a.responses)
    if a.arpo_metrics:
        out["eval_f1"] = eval_f1_parity(a.arpo_metrics)
    if not out:
        p.error("give --arpo-reward and/or --arpo-metrics")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
