"""The sandbox protocol: what a tier provides, and the errors it raises.

A tier (``arpo_env.envs.python.tiers``) starts *trees*: one sandbox holding a zygote process (see
:mod:`arpo_env.envs.python.worker`) from which sessions are spawned, and within which sessions fork. The host side
of sessions and trees is tier-agnostic (:mod:`arpo_env.envs.python.session`); a tier only knows how to start a
zygote with a control channel, whether it can work on this machine, and how to tear a tree down.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from arpo_env.envs.python.config import SandboxConfig


class SandboxError(RuntimeError):
    """The sandbox failed (could not start, lost its control channel)."""


class ProtocolError(SandboxError):
    """A reply failed the host's checks (wrong request id, wrong sending process, garbled framing): the
    channel is no longer trusted and the session is closed. Never turned into a result."""


class SandboxUnavailable(SandboxError):
    """The requested tier cannot work on this machine; the message says why and how to fix it."""


@dataclass
class ExecResult:
    """The outcome of running one cell."""

    output: str
    """Stdout and stderr interleaved, as the session wrote them (with the traceback on error)."""
    error: str | None = None
    """Exception class name when the cell raised; ``"Timeout"``, ``"SessionDied"`` or ``"ProtocolError"``
    (a reply failed the host's checks, see :mod:`arpo_env.envs.python.channel`) for host-side ends."""
    dropped_bytes: int = 0
    """Output bytes not returned (beyond the worker's buffer)."""
    restarted: bool = False
    """The session was killed (timeout, crash, limit) and replaced by a fresh one: state was lost."""
    seconds: float = 0.0
    """Wall time of the call."""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Zygote:
    """A started tree: its control channel and what the tier needs to tear it down."""

    ctl: socket.socket
    pid: int | None
    """Zygote pid in the host's pid namespace (``None`` if unknown)."""
    uid: int | None
    """Uid the tree's processes run as on the host (``None``: the caller's own)."""
    own_uid: bool
    """The uid belongs to this tree alone (so killing by uid is safe)."""
    handle: Any = None
    """Tier-specific (a ``Popen`` or a docker container)."""


class Tier(Protocol):
    """A way of starting sandboxed zygotes."""

    name: str
    fork_method: str
    """How sessions fork in this tier (``os.fork`` inside the sandbox for all three built-ins)."""

    def available(self, config: SandboxConfig) -> tuple[bool, str]:
        """Whether this tier can run here, and a one-line reason (what is missing and how to fix it)."""
        ...

    def start(self, config: SandboxConfig) -> Zygote:
        """Start a zygote; raises :class:`SandboxUnavailable` or :class:`SandboxError`."""
        ...

    def stop(self, zygote: Zygote) -> None:
        """Tear the tree down for good (kill every process of it, free its resources). Idempotent."""
        ...
