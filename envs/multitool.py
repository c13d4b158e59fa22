"""``arpo/MultiTool-v0``: ARPO's training and evaluation env: search + python (+ browse when enabled).

- Tools: ``<search>`` (any backend of :mod:`arpo_env.envs.search`; offline BM25 by default), ``<python>`` (the
  sandboxed interpreter of :mod:`arpo_env.envs.python`, built by ``arpo_env.envs.python.make_python_tool(**python_kwargs)``
  unless ``python_factory`` supplies another), and ``<browse>`` with ``browse=True``.
- ARPO's protocol prompt, one call budget for all tools together (``max_tool_calls``, default 3), and
  ARPO's reward: format -1; F1 of the boxed answer; +0.1 when F1 > 0 and both search and python were used.
- Default tasks: the 100 bundled HotpotQA questions (their evidence is in the bundled corpus).

Fork kind: ``process``: each tool forks itself (:class:`arpo_env.tools.ForkableTool`): the python session
is forked by its sandbox, search copies its history and shares the index and cache, browse copies its
reading state and shares fetcher and page store. With a live backend (ddgs search or live browsing) the
kind is ``external``: siblings share the cache, and the env is not deterministic.

Python tool contract (what ``python_factory`` must return): a :class:`~arpo_env.tools.Tool` named
``python`` taking code as its argument; ``fork()`` (ForkableTool) for independent branches; optional
``reset()`` (called on every env reset) and ``close()``. A factory, not an instance, is injected because
``fresh_copy`` and forks must never share one interpreter session.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arpo_env.agent import TextCompleter
from arpo_env.config import split_fields
from arpo_env.env import TextEnv
from arpo_env.envs.search.base import SearchBackend
from arpo_env.fork import ForkKind
from arpo_env.task import Task, TaskSource
from arpo_env.tools import Tool

PythonFactory = Callable[..., Tool]

ARPO_SYSTEM_PROMPT = (
    "You are a helpful assistant that solves the given question step by step, using {tool_phrase}. "
    "Given a question, first think about the reasoning process, then give the answer. While thinking you "
    "may call {tool_calls} whenever a fact or a calculation is needed. Put the reasoning inside "
    "<think> </think> and the final answer inside <answer> </answer>. Each tool call is answered inside "
    "<result> </result>. For example: <think> reasoning </think> <search> search query </search> "
    "<result> search results </result> <think> reasoning </think> <python> python code </python> "
    "<result> interpreter output </result>{browse_example} <think> reasoning </think> <answer> The final "
    "answer is \\[ \\boxed{{answer here}} \\] </answer>. You may make at most {budget} tool calls in total. "
    "At the end of the answer, the exact final answer must be inside \\boxed{{}} in LaTeX format.")


def default_python_factory(**kwargs: Any) -> Tool:
    """``arpo_env.envs.python.make_python_tool(**kwargs)``, imported only when a MultiTool env is built."""
    try:
        from arpo_env.envs.python import make_python_tool
    except ImportError as exc:
        raise ImportError("MultiTool-v0 needs the python sandbox tool (arpo_env.envs.python.make_python_tool), which "
                          f"cannot be imported ({exc}); pass python_factory=... to use another python tool") from exc
    return make_python_tool(**kwargs)


class MultiToolEnv(TextEnv):
    """Search + python (+ browse). Keywords: :class:`~arpo_env.envs.search.tool.SearchConfig` fields,
    ``browse`` (enable it) with :class:`~arpo_env.envs.browse.env.BrowseConfig` fields (``browse_source``,
    ``page_chars``, ``store_path``, ...), ``python_factory``/``python_kwargs``, ``backend_impl``,
    ``fetcher_impl``, ``summariser``, and the :class:`~arpo_env.env.EnvConfig` fields."""

    fork_kind = ForkKind.PROCESS
    declared_tools = ("search", "python", "browse")

    def __init__(self, *, browse: bool = False, python_factory: PythonFactory | None = None,
                 python_kwargs: dict[str, Any] | None = None, backend_impl: SearchBackend | None = None,
                 fetcher_impl: Any = None, summariser: TextCompleter | None = None,
                 browse_source: str = "corpus", **kwargs: Any):
        from arpo_env.envs.browse.env import BrowseConfig, make_browse_tool
        from arpo_env.envs.search.env import SearchConfig, make_search_tool

        kwargs = dict(kwargs)
        if browse and "show_urls" not in kwargs:
            kwargs["show_urls"] = True  # so the agent can open what it found
        mine, rest = split_fields(SearchConfig, kwargs)
        search_config = SearchConfig(**mine)
        mine, rest = split_fields(BrowseConfig, {**rest, "source": browse_source, "corpus": search_config.corpus})
        browse_config = BrowseConfig(**mine)
        if not browse and any(k in kwargs for k in ("store_path", "store_mode", "page_chars", "allow_private", "fetch")):
            raise TypeError("browse options were given but browse=False; pass browse=True to enable <browse>")
        tools: list[Tool] = [make_search_tool(search_config, backend_impl)]
        python = (python_factory or default_python_factory)(**(python_kwargs or {}))
        if getattr(python, "name", None) != "python":
            raise ValueError(f"the python factory must return a tool named 'python', got {getattr(python, 'name', None)!r}")
        tools.append(python)
        if browse:
            tools.append(make_browse_tool(browse_config, fetcher_impl, summariser))
        self.search_config, self.browse_config, self.browse_enabled = search_config, browse_config, browse
        super().__init__(tools, **rest)
        if search_config.live or (browse and browse_config.live and fetcher_impl is None):
            self.fork_kind, self.deterministic = ForkKind.EXTERNAL, False

    @property
    def system_prompt(self) -> str:
        if self._system_prompt is not None:
            return self._system_prompt
        browse = "browse" in self.tools
        return ARPO_SYSTEM_PROMPT.format(
            tool_phrase=("a search tool, a web page reader and a python interpreter" if browse
                         else "a search tool and a python interpreter"),
            tool_calls=("<search> to search, <browse> with a URL (optionally 'URL | goal') to read a page, "
                        "and <python> to run code" if browse else "<search> to search and <python> to run code"),
            browse_example=(" <think> reasoning </think> <browse> https://… | what to look for </browse> "
                            "<result> page text </result>" if browse else ""),
            budget=self.config.max_tool_calls)

    def default_task_source(self) -> TaskSource:
        from arpo_env.envs.search.env import hotpotqa_tasks
        return hotpotqa_tasks()

    def _on_reset(self, task: Task) -> None:
        for tool in self.tools.values():
            reset = getattr(tool, "reset", None)
            if callable(reset):
                reset()

    def example_actions(self) -> list[str]:
        task = self.episode.task
        titles = task.metadata.get("supporting_titles") or [task.question]
        answer = task.answer[0] if task.answer else "unknown"
        acts = [f"<think>Search first.</think><search>{task.question}</search>",
                "<think>Keep a note in Python.</think><python>notes = ['step 1']\nprint(len(notes))</python>",
                "<think>Use the note again.</think><python>notes.append('step 2')\nprint(notes)</python>"]
        if "browse" in self.tools and self.config.max_tool_calls >= 4:
            from arpo_env.envs.search.corpus import wiki_url
            acts.insert(1, f"<browse>{wiki_url(titles[-1])}</browse>")
        return acts + [f"<think>Done.</think><answer>The final answer is \\[ \\boxed{{{answer}}} \\]</answer>"]
