"""``arpo/Browse-v0``: answer questions by reading pages with ``<browse>url</browse>``.

Sources of pages (``source=``):

- ``corpus`` (default, offline, deterministic): the bundled Wikipedia passages at their
  ``en.wikipedia.org`` URLs. Default tasks: the 100 bundled HotpotQA questions, with the URLs of their
  supporting pages given in the prompt (a reading task; combine with search in MultiTool-v0).
- ``store``: a :class:`~arpo_env.envs.browse.store.PageStore` file, replay-only (deterministic).
- ``live``: httpx + trafilatura (``external`` fork kind, not deterministic); with ``store_path`` the pages
  are recorded (``store_mode="read-write"``) so the run can be replayed with ``source="store"``.

Fork kind: ``state``: the reading state is copied; fetcher, store and summariser are shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from arpo_env.agent import TextCompleter
from arpo_env.config import split_fields
from arpo_env.env import TextEnv
from arpo_env.envs.browse.fetch import FetchConfig, HttpFetcher
from arpo_env.envs.browse.page import Fetcher
from arpo_env.envs.browse.store import CorpusPages, PageStore, StoreFetcher
from arpo_env.envs.browse.tool import BrowseTool, PageSummariser
from arpo_env.fork import ForkKind
from arpo_env.task import ListTaskSource, Task, TaskSource


@dataclass
class BrowseConfig:
    """Where pages come from and how they are shown (every field is a keyword of the browse envs)."""

    source: str = "corpus"
    """``corpus`` (bundled Wikipedia passages), ``store`` (a saved page store, replay-only) or ``live``."""
    corpus: str | None = None
    """For ``corpus``: a JSON-lines corpus whose records have ``url`` (None: the bundled one)."""
    store_path: str | None = None
    """SQLite page store: required for ``store``; for ``live``, where pages are recorded."""
    store_mode: str | None = None
    """``off``, ``read-write`` or ``replay-only``; None: ``replay-only`` for ``store``, ``read-write`` for
    ``live`` with a store, ``off`` otherwise."""
    page_chars: int = 3_000
    """Characters per window of a long page."""
    allow_private: bool = False
    """Let ``live`` fetch private and loopback addresses (tests, intranets)."""
    fetch: dict[str, Any] = field(default_factory=dict)
    """More :class:`~arpo_env.envs.browse.fetch.FetchConfig` options (timeout_s, max_bytes, max_redirects, ...)."""

    def __post_init__(self) -> None:
        if self.source not in ("corpus", "store", "live"):
            raise ValueError(f"browse source must be 'corpus', 'store' or 'live', got {self.source!r}")
        if self.source == "store" and not self.store_path:
            raise ValueError("source='store' needs store_path")
        if self.store_mode is None:
            self.store_mode = ("replay-only" if self.source == "store"
                               else "read-write" if self.source == "live" and self.store_path else "off")

    @property
    def live(self) -> bool:
        return self.source == "live" and self.store_mode != "replay-only"


def build_fetcher(config: BrowseConfig) -> Fetcher:
    """The fetcher described by ``config``."""
    if config.source == "corpus":
        from arpo_env.envs.search.corpus import BUNDLED_CORPUS
        return _corpus_pages(config.corpus or str(BUNDLED_CORPUS))
    live = None
    if config.source == "live":
        live = HttpFetcher(FetchConfig(**{"allow_private": config.allow_private, **config.fetch}))
        if config.store_mode == "off":
            return live
    if config.store_path is None or config.store_mode is None:
        raise ValueError(f"browse source {config.source!r} with store_mode {config.store_mode!r} needs store_path")
    store = PageStore(config.store_path, read_only=config.store_mode == "replay-only")
    return StoreFetcher(store, live, config.store_mode)


_CORPUS_PAGES: dict[str, CorpusPages] = {}


def _corpus_pages(path: str) -> CorpusPages:
    from arpo_env.envs.search.corpus import load_corpus
    if path not in _CORPUS_PAGES:
        _CORPUS_PAGES[path] = CorpusPages(load_corpus(path))
    return _CORPUS_PAGES[path]


def make_browse_tool(config: BrowseConfig, fetcher: Fetcher | None = None,
                     summariser: TextCompleter | PageSummariser | None = None) -> BrowseTool:
    """A browse tool for ``config``; ``summariser`` may be any TextCompleter (wrapped) or a PageSummariser."""
    if summariser is not None and not isinstance(summariser, PageSummariser):
        summariser = PageSummariser(summariser)
    return BrowseTool(fetcher or build_fetcher(config), page_chars=config.page_chars, summariser=summariser)


def browse_tasks() -> ListTaskSource:
    """The bundled HotpotQA questions with the URLs of their supporting pages in the metadata."""
    from arpo_env.envs.search.corpus import wiki_url
    from arpo_env.envs.search.env import hotpotqa_tasks
    tasks = hotpotqa_tasks().tasks
    for t in tasks:
        t.metadata["urls"] = [wiki_url(title) for title in t.metadata["supporting_titles"]]
    return ListTaskSource(tasks)


class BrowseEnv(TextEnv):
    """Reading pages to answer questions. Keywords: every :class:`BrowseConfig` field, ``fetcher_impl``
    (a ready :class:`~arpo_env.envs.browse.fetch.Fetcher`), ``summariser`` (a TextCompleter), and EnvConfig fields."""

    fork_kind = ForkKind.STATE
    fork_shared = ("fetcher", "summariser", "task_source")
    declared_tools = ("browse",)

    def __init__(self, *, fetcher_impl: Fetcher | None = None, summariser: TextCompleter | None = None,
                 **kwargs: Any):
        mine, rest = split_fields(BrowseConfig, kwargs)
        self.browse_config = BrowseConfig(**mine)
        tool = make_browse_tool(self.browse_config, fetcher_impl, summariser)
        self.fetcher, self.summariser = tool.fetcher, tool.summariser
        super().__init__([tool], **rest)
        if self.browse_config.live and fetcher_impl is None:
            self.fork_kind, self.deterministic = ForkKind.EXTERNAL, False

    @property
    def browse_tool(self) -> BrowseTool:
        """This env's browse tool (after an ``external`` fork, the child's own fork of it)."""
        return cast(BrowseTool, self.tools["browse"])

    def default_task_source(self) -> TaskSource:
        return browse_tasks()

    def build_prompt(self, task: Task) -> str:
        urls = task.metadata.get("urls") or []
        if not urls:
            return task.question
        return task.question + "\n\nPages that may help:\n" + "\n".join(f"- {u}" for u in urls)

    def _on_reset(self, task: Task) -> None:
        self.browse_tool.reset()

    def example_actions(self) -> list[str]:
        task = self.episode.task
        urls = task.metadata.get("urls") or ["https://en.wikipedia.org/wiki/Lisbon"]
        answer = task.answer[0] if task.answer else "unknown"
        return [f"<browse>{urls[0]} | {task.question}</browse>",
                f"<browse>{urls[-1]}</browse>",
                "<browse>back</browse>",
                f"<answer>\\boxed{{{answer}}}</answer>"]
