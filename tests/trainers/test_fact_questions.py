"""Template fact questions: spans of their own paragraph, none from the hotpotqa_offline evidence pool."""
from __future__ import annotations

import numpy as np

from arpo_env.task import Task
from arpo_env.trainers.fact_questions import PER_KIND, fact_tasks, facts
from arpo_env.trainers.teachers import qa_teacher


def test_facts_reads_films_people_places_and_works():
    film = ("The Tender Years is a 1948 American drama film directed by Harold D. Schuster, written by Arnold "
            "Belgard. It was released on January 3, 1948.")
    assert facts("The Tender Years (1948 film)", film) == [("director", "The Tender Years", "Harold D. Schuster"),
                                                          ("year", "The Tender Years", "1948")]
    person = ("Eduardo De Filippo( 24 May 1900 \u2013 31 October 1984) was an Italian actor and playwright. "
              "He was born in Naples, Italy to a family of actors.")
    got = {k: g for k, _, g in facts("Eduardo De Filippo", person)}
    assert got == {"born": "24 May 1900", "died": "31 October 1984", "nationality": "Italian",
                   "birthplace": "Naples, Italy"}
    assert facts("Fox Lake, Wisconsin", "Fox Lake is a city in Dodge County, Wisconsin, United States.") == [
        ("located", "Fox Lake, Wisconsin", "Dodge County, Wisconsin")]
    song = "Aren't You Glad is a song by Brian Wilson for the Beach Boys."
    assert facts("Aren't You Glad", song) == [("song", "Aren't You Glad", "Brian Wilson")]
    assert facts("Foo", "Foo is a thing that exists.") == []


def test_person_pattern_needs_the_dates_in_parentheses():
    text = "Hassan Al- Qeed( born 13 April 1998), he is a Saudi Arabian football player."
    assert all(k != "nationality" for k, _, _ in facts("Hassan Al-Qeed", text))  # no "was a(n) X" after the dates
    assert facts("Per Wind", "Per Wind( born 2 May 1955) is a Danish actor.") == [
        ("born", "Per Wind", "2 May 1955"), ("nationality", "Per Wind", "Danish")]
    assert facts("Per Wind", "Per Wind( born 1955) is a Danish actor.") == []  # a bare year is not read


def test_fact_tasks_are_deterministic_capped_and_skip_the_benchmark_evidence_pool():
    from arpo_env.envs.search.corpus import load_corpus
    passages = load_corpus()
    text = {p.title: p.text for p in passages if not p.id.startswith("hotpotqa/")}
    held = {p.title for p in passages if p.id.startswith("hotpotqa/")}
    a, b = fact_tasks(0), fact_tasks(0)
    assert [t.question for t in a] == [t.question for t in b] and len(a) > 500
    kinds = [t.metadata["fact"] for t in a]
    assert max(kinds.count(k) for k in set(kinds)) <= PER_KIND and len(set(kinds)) >= 6
    for t in a:
        assert t.metadata["title"] not in held  # hotpotqa_offline's evidence is never a question's source
        assert t.answer[0] in text[t.metadata["title"]]  # the gold is copied from the paragraph
        assert t.answer[0].lower() not in t.question.lower()
    assert [t.question for t in fact_tasks(1)] != [t.question for t in a]  # the wording follows the seed


def test_fact_teacher_gives_up_when_the_search_does_not_show_the_gold():
    task = Task("Who directed the film Nothing?", ["Zyx Quuxley"], metadata={"kind": "span"})
    gen = qa_teacher(task, np.random.default_rng(0), need_evidence=True)
    assert "<search>" in next(gen)
    final = gen.send("<result>\nPage 1: Nothing (film): Nothing is a 2003 film by Vincenzo Natali.\n</result>")
    assert "\\boxed{unknown}" in final  # scored 0 by the env, so arpo traces drops it
    gen = qa_teacher(task, np.random.default_rng(0))
    next(gen)
    assert "\\boxed{Zyx Quuxley}" in gen.send("<result>\nPage 1: Nothing: no match here.\n</result>")


def test_no_fact_answers_a_benchmark_question_unless_the_answer_is_a_year_or_a_nationality():
    import re

    from arpo_env.trainers.decontamination import benchmark_answers, normalize
    tests = benchmark_answers("qa")
    assert "new york new york" in tests  # 2Wiki: "Where was the director of film The Half-Way Girl born?"
    tasks = fact_tasks(1)
    nationalities = {t.answer[0] for t in tasks if t.metadata["fact"] == "nationality"}
    leaked = [t for t in tasks if normalize(t.answer[0]) in tests
              and not (re.fullmatch(r"\d{4}", t.answer[0]) or t.answer[0] in nationalities)]
    assert leaked == []
    assert not any(t.question == "Where was John Francis Dillon born?" for t in tasks)
