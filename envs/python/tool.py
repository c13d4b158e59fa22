"""The ``python`` tool: a persistent, forkable, sandboxed Python session behind the Tool protocol.

``PythonTool(args)`` runs ``args`` as one notebook cell in the episode's session: variables, imports and
functions persist between calls; a trailing bare expression is printed (its ``repr``, unless ``None``).
The result text is stdout and stderr as written (with the traceback on error), cut to
``max_output_chars`` with a marker. A call past ``timeout`` kills the session; the next session starts
empty and the result says that state was lost. The same happens when the code crashes the interpreter
(segfault, ``os._exit``) or exceeds a resource limit, and when a reply fails the host's integrity check
(``ProtocolError``: not from the session's process, or not the answer to this call).

Code may ``os.fork()``: the child never answers for the session (see :mod:`arpo_env.envs.python.worker`);
what it prints while the forking cell runs is part of that cell's output, what it prints later is dropped.

The session starts lazily (first call, ``reset`` or ``fork``). ``fork()`` returns an independent tool
whose session is an OS-level fork of this one (copy-on-write). ``close()`` kills the session; the sandbox
tree goes when its last session closes.
"""
from __future__ import annotations

import threading
from typing import Any

from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.pool import take_tree
from arpo_env.envs.python.protocol import ExecResult, SandboxError
from arpo_env.envs.python.session import Session, Tree
from arpo_env.envs.python.tiers import pick
from arpo_env.tools import ToolResult

DESCRIPTION = ("runs Python 3 code in a persistent session (like a notebook: variables, imports and "
               "functions stay defined between calls; the value of a trailing expression is printed). "
               "Returns what the code prints, or the traceback. No network; the standard library{extra} "
               "is available. Write the code between the tags, e.g. <python>print(2 ** 10)</python>.")


class PythonTool:
    """A ``python`` tool bound to one session (see module docstring). Not thread-safe."""

    name = "python"
    example = "x = 6 * 7\nprint(x)"

    def __init__(self, config: SandboxConfig | None = None, *, _tree: Tree | None = None,
                 _session: Session | None = None, **kwargs: Any):
        self.config = config if config is not None else SandboxConfig(**kwargs)
        if config is not None and kwargs:
            raise TypeError("pass either a SandboxConfig or keyword options, not both")
        self._tier = _tree.tier if _tree is not None else pick(self.config)
        self._tree = _tree
        self._session = _session
        self._lock = threading.Lock()
        extra = " and numpy/sympy when installed" if self._tier.name != "docker" else ""
        self.description = DESCRIPTION.format(extra=extra)

    # ----- lifecycle ---------------------------------------------------------------------------
    @property
    def tier(self) -> str:
        """The sandbox tier in use (``subprocess``, ``bwrap`` or ``docker``)."""
        return self._tier.name

    def _new_session(self) -> Session:
        if self._tree is not None and self._tree.alive:
            try:
                return self._tree.spawn()
            except SandboxError:
                pass
        tree = take_tree(self._tier, self.config)
        try:
            session = tree.spawn()
        except SandboxError:
            tree.close()
            if self.config.pool_size <= 0:
                raise
            tree = Tree(self._tier, self.config)  # the pooled sandbox died while idle: start one now
            try:
                session = tree.spawn()
            except Exception:
                tree.close()
                raise
        except Exception:
            tree.close()
            raise
        self._tree = tree
        return session

    @property
    def session(self) -> Session:
        """The live session (started on first use)."""
        if self._session is None or not self._session.alive:
            self._session = self._new_session()
        return self._session

    def start(self) -> PythonTool:
        """Start the session now (instead of on the first call)."""
        _ = self.session
        return self

    def reset(self) -> None:
        """Replace the session with a fresh, empty one (a new episode)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        _ = self.session

    def fork(self) -> PythonTool:
        """An independent tool whose session is a copy of this one at this point."""
        child = self.session.fork()
        return PythonTool(self.config, _tree=child.tree, _session=child)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # ----- the call ----------------------------------------------------------------------------
    def execute(self, code: str) -> ExecResult:
        """Run one cell; on timeout, crash or limit the session is replaced (``restarted=True``)."""
        with self._lock:
            lost = self._session is not None and self._session.died_between_calls()
            if lost and self._session is not None:  # it died since the last call: say so, then run anew
                self._session.close()
                self._session = None
            try:
                result = self.session.execute(code)
            except SandboxError as exc:
                return ExecResult(f"Error: the Python sandbox failed: {exc}", "SandboxError")
            if result.error in ("Timeout", "SessionDied", "ProtocolError"):
                result.restarted = True
                try:
                    self._session = self._new_session()
                except SandboxError as exc:
                    result.metadata["restart_error"] = str(exc)
                    self._session = None
            if lost:
                result.restarted = True
                result.metadata["died_before_call"] = True
            return result

    def __call__(self, args: str) -> ToolResult:
        code = _strip_fence(args)
        if not code.strip():
            return ToolResult("Error: no code given. Write Python between <python> and </python>.", error=True)
        res = self.execute(code)
        text = res.output.rstrip("\n")
        limit = self.config.max_output_chars
        dropped = len(text) - limit if len(text) > limit else 0
        if dropped or res.dropped_bytes:
            text = text[:limit] + (f"\n... [output truncated: {dropped} more characters"
                                   f"{f' and {res.dropped_bytes} more bytes' if res.dropped_bytes else ''}]")
        if res.metadata.get("died_before_call"):
            text = ("Note: the Python session had died since the last call (killed by a limit or a signal); "
                    "it was restarted and every variable, import and function defined before is lost.\n"
                    + text)
        if res.error == "Timeout":
            text = (text + "\n" if text else "") + (
                f"Error: the code ran past the time limit of {self.config.timeout:g} s and was stopped. "
                "The session was restarted: every variable, import and function defined before is lost.")
        elif res.error == "SessionDied":
            text = (text + "\n" if text else "") + (
                "Error: the Python process died (a crash, os._exit, a signal or a resource limit such as "
                "CPU time or memory). The session was restarted: every variable, import and function "
                "defined before is lost.")
        elif res.error == "ProtocolError":
            text = (text + "\n" if text else "") + (
                "Error: the Python sandbox's reply failed the integrity check (it did not come from the "
                "session's process or did not answer this call; e.g. a process forked by the code wrote on "
                "the sandbox's channel), so it was discarded. The session was restarted: every variable, "
                "import and function defined before is lost.")
        elif not text:
            text = "(no output)" if res.error is None else f"Error: {res.error}"
        meta = {"tier": self.tier, "seconds": round(res.seconds, 6), "exception": res.error,
                "restarted": res.restarted, "dropped_bytes": res.dropped_bytes, **res.metadata}
        return ToolResult(text, error=res.error is not None, metadata=meta)


def _strip_fence(code: str) -> str:
    """Accept code wrapped in a Markdown fence (```python ... ```), as models often write it."""
    s = code.strip("\n")
    stripped = s.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        body = stripped[3:-3]
        first, _, rest = body.partition("\n")
        return (rest if first.strip().isidentifier() or not first.strip() else body).strip("\n")
    return s


def make_python_tool(**kwargs: Any) -> PythonTool:
    """The ``python`` tool (a :class:`~arpo_env.tools.ForkableTool`) for any env.

    Keywords are the fields of :class:`~arpo_env.envs.python.config.SandboxConfig`, the main ones:
    ``sandbox`` (``"auto"`` | ``"subprocess"`` | ``"bwrap"`` | ``"docker"``), ``timeout`` (seconds per
    call, default 10), ``memory_mb`` (1024), ``cpu_seconds`` (300 per session), ``max_processes`` (64),
    ``max_file_mb`` (64), ``scratch_mb`` (128), ``max_output_chars`` (8000), ``network`` (False),
    ``docker_image``, ``docker_url``. Raises :class:`~arpo_env.envs.python.protocol.SandboxUnavailable` naming the
    fix when the requested tier cannot run here. The session starts on first use.
    """
    return PythonTool(SandboxConfig(**kwargs))
