"""Parse one agent turn into a tool call, a final answer, or an error; format tool results.

Tag protocol (ARPO.md section 1): a call is ``<NAME>args</NAME>`` for an enabled tool; the final answer
is ``<answer>…\\boxed{X}…</answer>``. When a turn holds several, the element whose closing tag comes
last wins, and its argument is the text between the last opening tag before that closing tag and the
closing tag itself (this is how generation stopped at a stop string reads). Chat-template JSON calls
(``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, Hermes/Qwen style) are accepted too.

Everything here is linear in the input and never raises on text: a malformed turn comes back as an
``Action`` of kind ``"invalid"`` whose ``error`` says what to fix.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

ActionKind = Literal["tool", "answer", "invalid", "none"]
RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>"
JSON_CALL_TAG = "tool_call"


@dataclass(frozen=True)
class Action:
    """One parsed agent turn."""

    kind: ActionKind
    """``tool`` (a call), ``answer`` (final answer), ``invalid`` (malformed) or ``none`` (no tag at all)."""
    name: str | None = None
    """Tool name for ``tool``."""
    args: str | None = None
    """Argument string for ``tool``; the answer block's inner text for ``answer``."""
    error: str | None = None
    """Why the turn is ``invalid``/``none``, written for the agent to read."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "args": self.args, "error": self.error}


def clean_text(text: Any) -> str:
    """Coerce an action to valid text: bytes are decoded, lone surrogates and NULs replaced."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def _json_call(body: str, tool_names: set[str]) -> Action:
    try:
        call = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return Action("invalid", error=f"the <{JSON_CALL_TAG}> body is not valid JSON ({exc})")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return Action("invalid", error=f'a <{JSON_CALL_TAG}> needs {{"name": ..., "arguments": ...}}')
    name, arguments = call["name"], call.get("arguments", "")
    if name not in tool_names:
        return Action("invalid", name=name, error=f"unknown tool {name!r}; available: {sorted(tool_names)}")
    if isinstance(arguments, dict):
        if len(arguments) != 1:
            return Action("invalid", name=name, error=f"{name} takes exactly one argument, got {sorted(arguments)}")
        arguments = next(iter(arguments.values()))
    return Action("tool", name=name, args=arguments if isinstance(arguments, str) else json.dumps(arguments))


def parse_action(text: str, tool_names: Iterable[str], *, json_calls: bool = True) -> Action:
    """Parse one turn. ``tool_names`` are the enabled tools; ``answer`` is always recognised."""
    names = set(tool_names)
    tags = names | {"answer"} | ({JSON_CALL_TAG} if json_calls else set())
    best_tag, best_close = None, -1
    for tag in tags:
        pos = text.rfind(f"</{tag}>")
        if pos > best_close:
            best_tag, best_close = tag, pos
    if best_tag is None:
        opened = sorted(t for t in tags if f"<{t}>" in text)
        if opened:
            t = opened[0]
            return Action("invalid", name=t, error=f"<{t}> was opened but never closed with </{t}>")
        return Action("none", error="no tool call and no <answer>…</answer> found in this turn")
    open_tag = f"<{best_tag}>"
    start = text.rfind(open_tag, 0, best_close)
    if start < 0:
        return Action("invalid", name=best_tag, error=f"</{best_tag}> has no matching {open_tag}")
    body = text[start + len(open_tag): best_close]
    if best_tag == "answer":
        return Action("answer", args=body)
    if best_tag == JSON_CALL_TAG:
        return _json_call(body.strip(), names)
    return Action("tool", name=best_tag, args=body)


def format_result(text: str) -> str:
    """The observation appended after a tool call: ``<result>\\n{text}\\n</result>``."""
    return f"{RESULT_OPEN}\n{text}\n{RESULT_CLOSE}"


BRACE = re.compile(r"[{}]")
"""One brace, either side (the brace scanners here and in :mod:`arpo_env.rewards`)."""
_BOX = "\\boxed"


@dataclass(frozen=True)
class BoxScan:
    """What one pass over a text's braces found."""

    content: str | None
    """Content of the last balanced ``\\boxed{…}``, or ``None``."""
    steps: int
    """Braces visited: the scan's work, at most ``len(text)`` (a test asserts it; no timing)."""


def scan_boxes(text: str) -> BoxScan:
    """One left-to-right pass: a stack of open braces, each marked with where its box's content starts when
    it opens a ``\\boxed{``; a closing brace pops its match. The box with the latest start among the closed
    ones wins, so an unbalanced last box falls back to the previous balanced one."""
    stack: list[int] = []
    best: tuple[int, int] | None = None
    steps = 0
    for m in BRACE.finditer(text):
        steps += 1
        i = m.start()
        if m.group() == "{":
            stack.append(i + 1 if i >= len(_BOX) and text.startswith(_BOX, i - len(_BOX)) else -1)
        elif stack:
            start = stack.pop()
            if start >= 0 and (best is None or start > best[0]):
                best = (start, i)
    return BoxScan(None if best is None else text[best[0]:best[1]], steps)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (nested braces balanced; an unbalanced last box falls back to the
    previous balanced one), or ``None``. Linear: see :func:`scan_boxes`."""
    return scan_boxes(text).content


def extract_answer(answer_block: str) -> str:
    """The answer string of an ``<answer>`` block: its last ``\\boxed{}`` content, else its stripped text."""
    boxed = extract_boxed(answer_block)
    return (boxed if boxed is not None else answer_block).strip()
