"""The ``browse`` tool: open a page, read it a window at a time, optionally summarised against a goal.

Argument syntax (one of):

- ``URL`` — open the page and show its first window;
- ``URL | goal`` — open it with a reading goal; with a summariser configured, the agent gets a summary
  of the page focused on the goal (ARPO's evaluation condenses pages this way); without one the goal is
  recorded and the page shown as usual;
- ``next`` / ``prev`` — the next or previous window of the current page;
- ``page N`` — window N (1-based) of the current page;
- ``back`` — return to the page visited before the current one (its first window), as a browser does.

A window is ``page_chars`` characters (cut at a paragraph or line break where possible). The tool's
state (current page, window, history) is plain data in :class:`BrowseState`: forks copy it and share the
fetcher and the summariser.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from arpo_env.agent import TextCompleter
from arpo_env.envs.browse.page import Fetcher, FetchError, Page
from arpo_env.tools import ToolResult

_PAGE_N = re.compile(r"^page\s+(\d+)$", re.I)

SUMMARY_PROMPT = """You are reading a web page for a research assistant.
Goal: {goal}
URL: {url}
Title: {title}

Page text:
{text}

Write the information from the page that helps with the goal, as a short factual summary (quote exact
names, dates and numbers). If the page has nothing relevant, say "The page has no information about the goal.\""""


@dataclass
class BrowseState:
    """What the browse tool remembers during an episode (plain data)."""

    url: str = ""
    title: str = ""
    windows: list[str] = field(default_factory=list)
    window: int = 0
    """0-based index of the window last shown."""
    history: list[str] = field(default_factory=list)
    """URLs opened, in order."""
    truncated: bool = False


def split_windows(text: str, size: int) -> list[str]:
    """Cut ``text`` into windows of at most ``size`` characters, preferring paragraph, line, then word
    breaks in the last third of each window."""
    text = text.strip()
    out = []
    while len(text) > size:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, size * 2 // 3, size)
            if cut > 0:
                break
        cut = cut if cut > 0 else size
        out.append(text[:cut].strip())
        text = text[cut:].strip()
    out.append(text)
    return [w for w in out if w] or [""]


class PageSummariser:
    """Condenses a page relative to a goal with any :class:`~arpo_env.agent.TextCompleter`."""

    def __init__(self, completer: TextCompleter, *, max_input_chars: int = 20_000, max_new_tokens: int = 512):
        self.completer, self.max_input_chars, self.max_new_tokens = completer, max_input_chars, max_new_tokens

    def __call__(self, page: Page, goal: str) -> str:
        prompt = SUMMARY_PROMPT.format(goal=goal, url=page.url, title=page.title or "(none)",
                                       text=page.text[: self.max_input_chars])
        return self.completer.complete([{"role": "user", "content": prompt}], self.max_new_tokens).strip()

    def __deepcopy__(self, memo: dict) -> PageSummariser:
        return self


class BrowseTool:
    """The ``browse`` tool (see module docstring). Never raises."""

    name = "browse"

    def __init__(self, fetcher: Fetcher, *, page_chars: int = 3_000,
                 summariser: PageSummariser | None = None, example: str = ""):
        if page_chars < 200:
            raise ValueError("page_chars must be at least 200")
        self.fetcher, self.page_chars, self.summariser = fetcher, page_chars, summariser
        self.example = example
        self.state = BrowseState()
        self.description = ("opens a web page and shows its main text a window at a time: <browse>URL</browse>, "
                            "<browse>URL | what you are looking for</browse>, then <browse>next</browse>, "
                            "<browse>prev</browse>, <browse>page N</browse> or <browse>back</browse>.")

    # ----- calls ----------------------------------------------------------------------------------
    def __call__(self, args: str) -> ToolResult:
        arg = " ".join(args.split())
        if not arg:
            return self._error("the argument is empty; write <browse>https://…</browse>")
        low = arg.lower()
        page_n = _PAGE_N.match(arg)
        if low in ("next", "prev", "previous") or page_n:
            if not self.state.windows:
                return self._error("no page is open; open one first with <browse>URL</browse>")
            n = len(self.state.windows)
            target = (self.state.window + 1 if low == "next" else self.state.window - 1 if low.startswith("prev")
                      else int(page_n.group(1)) - 1 if page_n else 0)
            if not 0 <= target < n:
                return self._error(f"there is no window {target + 1}; this page has {n} (1 to {n})")
            self.state.window = target
            return self._show()
        if low == "back":
            if len(self.state.history) < 2:
                return self._error("there is no previous page")
            return self._open(self.state.history[-2], goal="", back=True)
        url, _, goal = arg.partition(" | ") if " | " in arg else arg.partition("|")
        return self._open(url.strip(), goal.strip())

    def _open(self, url: str, goal: str, back: bool = False) -> ToolResult:
        try:
            page = self.fetcher.fetch(url)
        except FetchError as exc:
            return self._error(str(exc), url=url)
        except Exception as exc:  # a fetcher bug must not end the episode
            return self._error(f"{type(exc).__name__}: {exc}", url=url)
        st = self.state
        st.url, st.title, st.truncated = page.url or url, page.title, page.truncated
        st.windows, st.window = split_windows(page.text, self.page_chars), 0
        if back:
            st.history.pop()
        else:
            st.history.append(st.url)
        if goal and self.summariser is not None:
            try:
                summary = self.summariser(page, goal)
            except Exception as exc:  # fall back to the raw page
                return self._show(note=f"(summariser failed: {type(exc).__name__}; showing the page)")
            head = f"URL: {st.url}\nTitle: {st.title or '(none)'}\nSummary for the goal {goal!r}:\n\n"
            foot = f"\n\n[The page has {len(st.windows)} window(s); <browse>page 1</browse> shows the raw text.]"
            return ToolResult(head + summary + foot, metadata=self._meta(summarised=True))
        return self._show()

    def _show(self, note: str = "") -> ToolResult:
        st = self.state
        n = len(st.windows)
        head = f"URL: {st.url}\nTitle: {st.title or '(none)'}\nWindow {st.window + 1} of {n}"
        if note:
            head += f" {note}"
        body = st.windows[st.window] or "(the page has no readable text)"
        foot = []
        if st.window + 1 < n:
            foot.append("<browse>next</browse> shows more")
        if st.truncated and st.window + 1 == n:
            foot.append("the page was cut at the size limit")
        tail = f"\n\n[{'; '.join(foot)}.]" if foot else ""
        return ToolResult(f"{head}\n\n{body}{tail}", metadata=self._meta())

    def _error(self, message: str, **meta: Any) -> ToolResult:
        return ToolResult(f"Error: {message}", error=True, metadata=meta)

    def _meta(self, **extra: Any) -> dict[str, Any]:
        st = self.state
        return {"url": st.url, "window": st.window + 1, "windows": len(st.windows), **extra}

    # ----- episode state --------------------------------------------------------------------------
    def reset(self) -> None:
        self.state = BrowseState()

    def fork(self) -> BrowseTool:
        """Same fetcher and summariser, an independent copy of the reading state."""
        child = copy.copy(self)
        child.state = copy.deepcopy(self.state)
        return child
