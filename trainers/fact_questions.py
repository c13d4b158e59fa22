"""Template fact questions from the bundled corpus, for the ``fact`` teacher of ``arpo traces``.

Multi-hop QA benchmarks want an entity, a place or a date copied from a page ("Who directed ...?",
"Where was ... born?"), not a description. This module reads the first sentences of the corpus's
Wikipedia paragraphs with a few regular patterns and writes single-hop questions whose gold is a span of
the paragraph:

- films: "T is a 1948 American drama film directed by P" -> "Who directed the 1948 film T?" (P), and
  "In what year was the film T released?" (1948);
- people: "N (24 May 1900 - 31 October 1984) was an Italian actor" -> "What nationality was N?" (Italian),
  "When was N born?" (24 May 1900), "When did N die?" (31 October 1984); "N was born in Place" ->
  "Where was N born?";
- places: "X is a town in Y" -> "Where is X?" (Y); founding years: "X was founded in 1902" ->
  "When was X founded?";
- works: "X is a ... novel / album / song by P" -> "Who wrote X?" / "Who released X?" (P).

Only the ``musique`` and ``2wiki`` pools are read: the ``hotpotqa`` pool holds the evidence of the
``hotpotqa_offline`` benchmark, so no question is written from it (nor from a paragraph whose title is also
a ``hotpotqa`` title). A fact whose gold is the gold of a QA benchmark question is dropped too ("Where was
John Francis Dillon born?" is the last hop of 2Wiki's "Where was the director of film The Half-Way Girl
born?"), except bare years and nationality words, answers too common to name a test question. The
``fact`` teacher (:func:`arpo_env.trainers.teachers.fact_teacher`) keeps a question only when its search
shows the gold, so every kept trajectory answers from what it read.

Not covered: two-hop compositions ("Where was the director of T born?"), comparison questions, yes/no,
birth or death given as a bare year.
"""
from __future__ import annotations

import re
from typing import Any

_WORD = r"(?:[A-Z]\.|[A-Z][\w'\u00C0-\u024F-]*)"  # a capitalised word or an initial ("J.")
_NAME = _WORD + r"(?: (?:de |van |von |da |di |del |la |le )?" + _WORD + r"){0,3}"
_PLACE = r"[A-Z][\w.'\u00C0-\u024F-]*(?: [A-Z][\w.'\u00C0-\u024F-]*){0,2}(?:, [A-Z][\w.'\u00C0-\u024F-]*(?: [A-Z][\w.'\u00C0-\u024F-]*){0,2})?"
_DATE = r"(?:\d{1,2} [A-Z][a-z]+ \d{3,4}|[A-Z][a-z]+ \d{1,2}, \d{3,4})"

_FILM = re.compile(r"^[^.]{0,150}? (?:is|was) an? (\d{4}) [^.]{0,60}?\bfilm\b[^.]{0,40}? directed by (" + _NAME + ")")
_PERSON = re.compile(r"^[^(]{2,80}\(\s?(?:born )?(" + _DATE + r")?(?:\s?[-\u2013]\s?(" + _DATE + r"))?\s?\)[,]? "
                     r"(?:is|was) an? ([A-Z][a-z]+(?:-[A-Z][a-z]+)?) [a-z]")
_BORN_IN = re.compile(r"\b(?:He|She) was born in (" + _PLACE + r")")
_PLACE_IN = re.compile(r"^[^.]{0,100}? is an? (?:small )?(?:city|town|village|municipality|commune|suburb) "
                       r"(?:and [a-z ]+ )?in (?:the )?(" + _PLACE + ")")
_FOUNDED = re.compile(r"\b(?:was|were) (?:founded|established) in (\d{4})\b")
_WORK = re.compile(r"^[^.]{0,100}? (?:is|was) (?:an?|the) [^.]{0,50}?\b(novel|album|song|single|play|book) "
                   r"(?:written |recorded |released )?by (?:the )?(?:[a-z]+ )*(" + _NAME + ")")

_ASK = {
    "director": ["Who directed the {y} film {t}?", "Who is the director of the film {t}?", "The film {t} was directed by whom?"],
    "year": ["In what year was the film {t} released?", "When was the film {t} released?"],
    "nationality": ["What nationality was {t}?", "What nationality is {t}?", "{t} was from which country?"],
    "born": ["When was {t} born?", "What is the birth date of {t}?"],
    "died": ["When did {t} die?", "On what date did {t} die?"],
    "birthplace": ["Where was {t} born?", "In which place was {t} born?"],
    "located": ["Where is {t}?", "In which region is {t} located?"],
    "founded": ["When was {t} founded?", "In what year was {t} founded?"],
    "novel": ["Who wrote the novel {t}?"], "book": ["Who wrote the book {t}?"], "play": ["Who wrote the play {t}?"],
    "album": ["Who released the album {t}?"], "song": ["Who recorded the song {t}?"], "single": ["Who released the single {t}?"],
}


def _bare(title: str) -> str:
    """The title without its disambiguation ("Forbidden Ground (2013 film)" -> "Forbidden Ground")."""
    return re.sub(r"\s*\([^)]*\)$", "", title).strip()


def facts(title: str, text: str) -> list[tuple[str, str, str]]:
    """(kind, subject, gold) triples a paragraph states in its first sentences; gold is a span of ``text``."""
    t, head = _bare(title), text[:400]
    out: list[tuple[str, str, str]] = []
    if m := _FILM.match(head):
        out += [("director", t, m.group(2)), ("year", t, m.group(1))]
    if m := _PERSON.match(head):
        if m.group(1):
            out.append(("born", t, m.group(1)))
        if m.group(2):
            out.append(("died", t, m.group(2)))
        out.append(("nationality", t, m.group(3)))
    if m := _BORN_IN.search(text[:600]):
        out.append(("birthplace", t, m.group(1)))
    if not out and (m := _PLACE_IN.match(head)):
        out.append(("located", t, m.group(1)))
    if m := _FOUNDED.search(head):
        out.append(("founded", t, m.group(1)))
    if not out and (m := _WORK.match(head)):
        out.append((m.group(1), t, m.group(2)))
    golds = [(k, s, g.strip(" ,.")) for k, s, g in out]
    return [(k, s, g) for k, s, g in golds if len(g) > 2 and g.lower() not in s.lower()]


PER_KIND = 120
"""At most this many questions of one kind (films and birth dates would otherwise be most of them)."""


def fact_tasks(seed: int = 0) -> list[Any]:
    """The template questions of the ``musique`` and ``2wiki`` pools as tasks (metadata ``kind`` "span",
    ``fact``, ``title``), at most :data:`PER_KIND` of each kind, one wording per fact, both drawn by
    ``seed``; deterministic. The film questions name the first 4-digit number of the paragraph as the year."""
    import numpy as np

    from arpo_env.envs.search.corpus import load_corpus
    from arpo_env.task import Task
    from arpo_env.trainers.decontamination import benchmark_answers, normalize
    passages = load_corpus()
    held = {p.title for p in passages if p.id.startswith("hotpotqa/")}
    rng = np.random.default_rng([seed, 31])
    found = [(p, f) for p in passages if p.title not in held and len(p.title) <= 70 for f in facts(p.title, p.text)]
    nationalities = {g for _, (k, _, g) in found if k == "nationality"}
    tests = benchmark_answers("qa")
    by_kind: dict[str, list[Any]] = {}
    for p, (kind, subject, gold) in found:
        if kind != "nationality" and gold.split()[0] in nationalities:  # "an album by (the) British band"
            continue
        if normalize(gold) in tests and not (gold in nationalities or re.fullmatch(r"\d{4}", gold)):
            continue  # possibly the last hop of a benchmark question
        year = re.search(r"\b(\d{4})\b", p.text[:200])
        forms = _ASK[kind]
        q = forms[int(rng.integers(len(forms)))].format(t=subject, y=year.group(1) if year else "")
        by_kind.setdefault(kind, []).append(
            Task(q, [gold], id=f"fact-{p.id}-{kind}", metadata={"kind": "span", "fact": kind, "title": p.title}))
    out: list[Any] = []
    for kind in sorted(by_kind):
        tasks = by_kind[kind]
        keep = sorted(rng.choice(len(tasks), size=min(PER_KIND, len(tasks)), replace=False))
        out += [tasks[int(i)] for i in keep]
    return out
