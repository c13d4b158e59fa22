"""``arpo/Search-v0``: multi-hop questions answered with ``<search>query</search>``.

Default tasks: the 100 bundled HotpotQA training questions, whose supporting passages are in the bundled
corpus, searched offline (deterministic) with the ``hybrid`` backend (BM25 + dense + a title-link hop;
BM25 alone without the ``dense`` extra), or ``backend="remote"`` asks a Search-R1 retrieval server
(``remote_url=``; docs/retrieval.md). ``backend="ddgs"`` searches the live web (then the
env is ``external``: not deterministic, forks share the cache); ``backend="replay"`` answers only from a
recorded cache. Reward: ARPO's (format -1; F1 of the boxed answer).

Fork kind: ``state``. The tool's query history is copied; the backend (index, cache handle) is shared.
"""
from __future__ import annotations

from typing import Any, cast

from arpo_env.config import split_fields
from arpo_env.env import TextEnv
from arpo_env.envs.search.base import SearchBackend
from arpo_env.envs.search.tool import SearchConfig, SearchTool, build_backend
from arpo_env.fork import ForkKind
from arpo_env.task import ListTaskSource, Task, TaskSource


def hotpotqa_tasks() -> ListTaskSource:
    """The 100 bundled HotpotQA questions as tasks (metadata: supporting titles, type, level)."""
    from arpo_env.envs.search.corpus import load_hotpotqa_questions
    tasks = []
    for q in load_hotpotqa_questions():
        titles = list(dict.fromkeys(t for t, _ in q["supporting_facts"]))
        tasks.append(Task(q["question"], [q["answer"]], id=q["id"],
                          metadata={"supporting_titles": titles, "type": q["type"], "level": q["level"]}))
    return ListTaskSource(tasks)


def make_search_tool(config: SearchConfig, backend: SearchBackend | None = None) -> SearchTool:
    """A search tool for ``config`` (``backend`` injects a ready backend, e.g. a test double)."""
    source = ("the web" if config.backend in ("ddgs", "replay") else
              "a passage corpus" if config.corpus else "a Wikipedia passage corpus")
    return SearchTool(build_backend(config, backend), top_k=config.top_k, snippet_chars=config.snippet_chars,
                      show_titles=config.show_titles, show_urls=config.show_urls, source=source)


class SearchEnv(TextEnv):
    """Question answering with a search tool. Keywords: every :class:`SearchConfig` field, ``backend_impl``
    (a ready :class:`SearchBackend`), and the :class:`~arpo_env.env.EnvConfig` fields."""

    fork_kind = ForkKind.STATE
    fork_shared = ("backend", "task_source")
    declared_tools = ("search",)

    def __init__(self, *, backend_impl: SearchBackend | None = None, **kwargs: Any):
        mine, rest = split_fields(SearchConfig, kwargs)
        self.search_config = SearchConfig(**mine)
        tool = make_search_tool(self.search_config, backend_impl)
        self.backend = tool.backend
        super().__init__([tool], **rest)
        if self.search_config.live:
            self.fork_kind, self.deterministic = ForkKind.EXTERNAL, False

    @property
    def search_tool(self) -> SearchTool:
        """This env's search tool (after an ``external`` fork, the child's own fork of it)."""
        return cast(SearchTool, self.tools["search"])

    def default_task_source(self) -> TaskSource:
        return hotpotqa_tasks()

    def _on_reset(self, task: Task) -> None:
        self.search_tool.reset()

    def example_actions(self) -> list[str]:
        task = self.episode.task
        titles = task.metadata.get("supporting_titles") or [task.question]
        answer = task.answer[0] if task.answer else "unknown"
        return [f"<think>Search for the question.</think><search>{task.question}</search>",
                f"<think>Look up the second entity.</think><search>{titles[-1]}</search>",
                f"<think>Found it.</think><answer>\\boxed{{{answer}}}</answer>"]


def recall_at_k(backend: SearchBackend, questions: list[dict], ks: tuple[int, ...] = (5, 10)) -> dict[str, Any]:
    """Share of gold supporting passages (by title) found in the top k for the question text as query.

    Returns ``{"recall@k": ..., "all_found@k": ...}`` (the latter: share of questions with every gold
    passage retrieved)."""
    kmax = max(ks)
    found = {k: 0 for k in ks}
    complete = {k: 0 for k in ks}
    total = 0
    for q in questions:
        gold = set(t for t, _ in q["supporting_facts"])
        titles = [h.title for h in backend.search(q["question"], kmax)]
        total += len(gold)
        for k in ks:
            got = gold & set(titles[:k])
            found[k] += len(got)
            complete[k] += int(got == gold)
    out: dict[str, Any] = {"questions": len(questions), "gold_passages": total}
    for k in ks:
        out[f"recall@{k}"] = round(found[k] / max(1, total), 4)
        out[f"all_found@{k}"] = round(complete[k] / max(1, len(questions)), 4)
    return out


__all__ = ["SearchEnv", "hotpotqa_tasks", "make_search_tool", "recall_at_k"]
