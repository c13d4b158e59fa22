"""``arpo traces``: teacher demonstrations played through the real envs (real tool results), as ShareGPT.

A programmatic teacher plays each env's own training tasks; every turn goes through ``env.step``, so the
observations are the tools' real output and the reward is the env's own (only trajectories with reward
> 0 are kept; the count dropped is reported). Deterministic by seed: the task of trajectory i is drawn
by ``env.reset(seed=seed * 100003 + i)`` and the think wording by an RNG of (seed, i).

Teachers:
- ``calculator``: one ``<calculator>`` call with the task's expression, then the boxed result;
- ``python``: two calls that reuse the session's variables (define, then compute and print), then the answer;
- ``search`` (Search-v0 / MultiTool-v0): synthetic single-hop questions built from the bundled corpus
  ("What is TITLE?", gold = the "is a ..." phrase of the passage's first sentence), a search for the
  title (sometimes the question first), then the answer copied from the gold. The shipped HotpotQA
  training questions are also the ``hotpotqa_offline`` benchmark, so they are NOT used (decontamination);
- ``qa``, ``fact`` and ``word`` (:mod:`arpo_env.trainers.teachers`): ARPO's multi-hop training questions
  answered with a span copied from the search results; template fact questions ("Who directed the 1948
  film T?", :mod:`arpo_env.trainers.fact_questions`) answered the same way, kept only when the search shows
  the gold; and generated word problems solved in Python.

``arpo traces --env ENV_ID=N`` uses the env's default teacher (:data:`DEFAULT_TEACHER`);
``--env ENV_ID:TEACHER=N`` picks one (e.g. ``arpo/Search-v0:qa=60``, ``arpo/Python-v0:word=40``).

Decontamination (:func:`check_decontaminated`): every question of every shipped benchmark test set
(:func:`arpo_env.benchmarks.registry.list_benchmarks`, loaded from the shipped files) is normalised
(lower case, alphanumerics only) and any trajectory whose question matches fails the generator.

Not covered: browse demonstrations, two-hop search demonstrations.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from arpo_env.trainers.decontamination import (  # noqa: F401 - re-exported
    DecontaminationError,
    benchmark_questions,
    check_decontaminated,
    normalize,
)
from arpo_env.trainers.sft_data import Example

Turns = Generator[str, "str | None", None]
"""A teacher: yields actions, receives each observation."""

THINK = {
    "calc": ["I will compute {q} with the calculator.", "Let me use the calculator for this expression.",
             "The expression is {e}; the calculator evaluates it exactly.", "I should calculate {e} first."],
    "answer": ["The result is {a}.", "So the answer is {a}.", "The tool gave {a}, which answers the question.",
               "I have the answer: {a}."],
    "py1": ["I will set up the values in Python.", "Let me write code for this.", "First define the inputs in Python."],
    "py2": ["Now compute the answer from the variables.", "Use the variables defined above to finish.",
            "Compute and print the result."],
    "search": ["I need to look up {t}.", "Let me search for {t}.", "I should search the corpus for {t}.",
               "Search for information about {t}."],
}


def _pick(rng: np.random.Generator, key: str, **kw: str) -> str:
    opts = THINK[key]
    return opts[int(rng.integers(len(opts)))].format(**kw)


def _calc(task: Any, rng: np.random.Generator) -> Turns:
    e = task.metadata["expression"]
    obs = yield f"<think>{_pick(rng, 'calc', q=task.question, e=e)}</think>\n<calculator>{e}</calculator>"
    a = _result(obs)
    yield f"<think>{_pick(rng, 'answer', a=a)}</think>\n<answer>\\boxed{{{a}}}</answer>"


def _python_code(task: Any) -> tuple[str, str]:
    nums = [int(x) for x in re.findall(r"\d+", task.question)]
    kind = task.metadata.get("kind")
    if kind == "digit_sum":
        return f"import math\nn = {nums[0]}\nf = math.factorial(n)\nprint(len(str(f)))", \
            "s = sum(int(d) for d in str(f))\nprint(s)"
    if kind == "prime_count":
        return (f"n = {nums[0]}\nsieve = [True] * n\nsieve[0:2] = [False, False]\n"
                "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n"
                "        sieve[i*i::i] = [False] * len(sieve[i*i::i])\nprint(n)"), "print(sum(sieve))"
    if kind == "modpow":
        return f"a, e, m = {nums[0]}, {nums[1]}, {nums[2]}\nprint(a, e, m)", "print(pow(a, e, m))"
    return (f"n = {nums[0]}\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(n)"), "print(a)"


def _python(task: Any, rng: np.random.Generator) -> Turns:
    c1, c2 = _python_code(task)
    yield f"<think>{_pick(rng, 'py1')}</think>\n<python>\n{c1}\n</python>"
    obs = yield f"<think>{_pick(rng, 'py2')}</think>\n<python>\n{c2}\n</python>"
    a = _result(obs).splitlines()[-1].strip()
    yield f"<think>{_pick(rng, 'answer', a=a)}</think>\n<answer>\\boxed{{{a}}}</answer>"


def _search(task: Any, rng: np.random.Generator) -> Turns:
    t = task.metadata["title"]
    if rng.random() < 0.3:
        yield f"<think>{_pick(rng, 'search', t='the question')}</think>\n<search>{task.question}</search>"
    yield f"<think>{_pick(rng, 'search', t=t)}</think>\n<search>{t}</search>"
    a = task.answer[0]
    yield f"<think>The passage about {t} says it is {a}.</think>\n<answer>\\boxed{{{a}}}</answer>"


def _result(obs: str | None) -> str:
    text = (obs or "").replace("<result>", "").replace("</result>", "")
    return text.strip()


_DEF = re.compile(r"^[^.]{0,120}? (?:is|was) (an? [^,.;()]{3,60}?|the [^,.;()]{3,60}?)(?:[,.;(]| that | which | who | in | of )")


def corpus_tasks() -> list[Any]:
    """Synthetic "What is TITLE?" tasks from the bundled corpus (gold: the definitional phrase)."""
    from arpo_env.envs.search.corpus import load_corpus
    from arpo_env.task import Task
    out = []
    for p in load_corpus():
        m = _DEF.match(p.text)
        phrase = m.group(1) if m else ""
        if m and len(p.title) < 60 and 3 <= len(phrase.split()) <= 7 and not re.search(r"[\"'\u201c]", phrase):
            out.append(Task(f"What is {p.title}?", [phrase.strip()], id=p.id, metadata={"title": p.title}))
    return out


def _corpus_pool(n: int, seed: int) -> list[Any]:
    return corpus_tasks()


def _qa_pool(n: int, seed: int) -> list[Any]:
    from arpo_env.trainers.teachers import load_qa_tasks
    return load_qa_tasks()


def _fact_pool(n: int, seed: int) -> list[Any]:
    from arpo_env.trainers.fact_questions import fact_tasks
    return fact_tasks(seed)


def _word_pool(n: int, seed: int) -> list[Any]:
    from arpo_env.trainers.teachers import word_tasks
    return word_tasks(n, seed)


def _teachers() -> dict[str, tuple[Callable[[Any, np.random.Generator], Turns], Callable[[int, int], list[Any]] | None]]:
    from arpo_env.trainers.teachers import fact_teacher, qa_teacher, word_teacher
    return {"calculator": (_calc, None), "python": (_python, None), "search": (_search, _corpus_pool),
            "qa": (qa_teacher, _qa_pool), "fact": (fact_teacher, _fact_pool), "word": (word_teacher, _word_pool)}


DEFAULT_TEACHER = {"arpo/Calculator-v0": "calculator", "arpo/Python-v0": "python", "arpo/Search-v0": "search",
                   "arpo/MultiTool-v0": "search"}
"""The teacher of an env when ``arpo traces --env ENV=N`` names none (``ENV:TEACHER=N`` picks one)."""
TEACHER_NAMES = ("calculator", "python", "search", "qa", "fact", "word")


def play(env_id: str, n: int, seed: int = 0, env_kwargs: dict[str, Any] | None = None,
         teacher: str | None = None) -> tuple[list[Example], int]:
    """``n`` trajectories of ``teacher`` (default: :data:`DEFAULT_TEACHER` of ``env_id``) in ``env_id``;
    returns (kept examples, dropped count). Teachers with a task pool play pool items in a seeded order."""
    import arpo_env
    name = teacher or DEFAULT_TEACHER.get(env_id)
    teachers = _teachers()
    if name is None or name not in teachers:
        raise ValueError(f"no teacher {name!r} for {env_id}; use ENV:TEACHER=N with a teacher of "
                         f"{', '.join(TEACHER_NAMES)}, or an env of {', '.join(DEFAULT_TEACHER)}")
    turns, pool_fn = teachers[name]
    env = arpo_env.make(env_id, **(env_kwargs or {}))
    pool = pool_fn(n, seed) if pool_fn is not None else None
    order = np.random.default_rng([seed, 7, zlib.crc32(env_id.encode())]).permutation(len(pool)) if pool else None
    kept, dropped = [], 0
    try:
        for i in range(n):
            s = seed * 100003 + i
            rng = np.random.default_rng([seed, i])
            options = None
            if pool is not None and order is not None:
                options = {"task": pool[int(order[i % len(pool)])]}
            _, info = env.reset(seed=s, options=options)
            task = env.unwrapped.episode.task
            gen = turns(task, rng)
            segments: list[tuple[str, bool]] = []
            obs: str | None = None
            reward, done = 0.0, False
            try:
                act = next(gen)
                while not done:
                    obs, reward, term, trunc, _ = env.step(act)
                    done = term or trunc
                    segments.append((act, True))
                    if obs:
                        segments.append((obs, False))
                    if not done:
                        act = gen.send(obs)
            except StopIteration:
                pass
            msgs = info["messages"]
            if done and reward > 0:
                kept.append(Example(msgs[0]["content"], msgs[1]["content"], segments,
                                    source=f"{env_id}:{name}#{i}"))
            else:
                dropped += 1
    finally:
        env.close()
    return kept, dropped


#: Envs whose search tool takes ``SearchConfig`` keywords (``backend=...``).
SEARCH_ENVS = ("arpo/Search-v0", "arpo/MultiTool-v0")


def write_traces(out: str | Path, counts: dict[str, int], seed: int = 0,
                 search_backend: str | None = None) -> dict[str, Any]:
    """Play ``counts`` (``ENV_ID`` or ``ENV_ID:TEACHER`` -> trajectories), check decontamination, write ShareGPT
    JSONL to ``out``. ``search_backend`` (``bm25``, ``hybrid``, ...) is passed to the envs with a search tool
    (:data:`SEARCH_ENVS`); ``None`` keeps their default (``auto``: hybrid when the ``dense`` extra is installed)."""
    examples: list[Example] = []
    report: dict[str, Any] = {}
    for key, n in counts.items():
        env_id, _, teacher = key.partition(":")
        kwargs = {"backend": search_backend} if search_backend and env_id in SEARCH_ENVS else None
        kept, dropped = play(env_id, n, seed, env_kwargs=kwargs, teacher=teacher or None)
        examples += kept
        report[key] = {"kept": len(kept), "dropped": dropped}
    check_decontaminated(examples)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for e in examples:
            f.write(json.dumps(e.to_sharegpt()) + "\n")
    return report
