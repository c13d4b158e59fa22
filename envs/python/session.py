"""Host side of sandboxed sessions: a :class:`Tree` (one sandbox with its zygote) and its :class:`Session` s.

- ``Tree.spawn()`` asks the zygote for a fresh session (a ``fork`` of the small zygote: about a
  millisecond, no interpreter start-up).
- ``Session.fork()`` asks the session to ``os.fork()`` itself: the child shares nothing with its parent
  but copy-on-write memory pages, gets its own channel (a new socketpair end passed with ``SCM_RIGHTS``) and
  a copy of the scratch directory. Cost: page tables, not data (see ``bench/python_tool.py``).
- ``Session.execute()`` runs a cell with a wall-clock deadline. Past it the session's process group is
  killed and the caller gets ``error="Timeout"``; a crashed session gives ``"SessionDied"``, a reply that
  fails the checks below ``"ProtocolError"``. Restarting is the tool's job (:mod:`arpo_env.envs.python.tool`).
- Every request carries an id; a reply counts only if it echoes that id and every byte of it came from the
  session's own process (``SCM_CREDENTIALS``). So a process the agent's code forked can never make a call
  return someone else's output (the worker also keeps such children off the channel).
- A fork that fails raises :class:`SandboxError` naming the cause: refused inside the sandbox (no free
  file descriptor, the process budget spent; the parent stays usable), or a child that died or hung
  before greeting (it is killed, and reaped by its parent session: no process or zombie is left).
- A tree lives while any of its sessions does (reference count); the last ``close`` tears it down
  (the tier kills every process of the tree).

Limits: branches are not isolated from each other. The sessions of one tree (an episode and every
``fork`` of it) share the tree's uid, its process budget (``max_processes``: ``RLIMIT_NPROC`` on the tree's
own uid when root, the container's pids limit on docker; none for an unprivileged subprocess or bwrap
tier) and its tmpfs (``scratch_mb``). So one branch can read and write a sibling's scratch files, signal
or kill a sibling (its next call reports the death and restarts it empty), hold the whole process budget
so that a sibling can neither ``os.fork()`` nor be forked (``SandboxError`` naming the cause), and fill the
tmpfs for all of them (``tests/envs/python/test_python_siblings.py`` asserts exactly this). Different trees
(episodes) are isolated from each other.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from typing import Any

from arpo_env.envs.python import channel
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import ExecResult, ProtocolError, SandboxError, Tier, Zygote


class Tree:
    """One sandbox: a zygote plus the sessions spawned from it and forked from those."""

    def __init__(self, tier: Tier, config: SandboxConfig):
        self.tier, self.config = tier, config
        self.zygote: Zygote = tier.start(config)
        self._lock = threading.Lock()
        self._refs = 0
        self._closed = False
        try:
            msg, _ = channel.recv(self.zygote.ctl, timeout=config.start_timeout)
            if msg.get("op") != "hello":
                raise SandboxError(f"unexpected greeting from the {tier.name} sandbox: {msg}")
        except (channel.ChannelClosed, channel.ChannelTimeout, channel.ChannelCorrupt) as exc:
            tier.stop(self.zygote)
            raise SandboxError(f"the {tier.name} sandbox did not start: {exc}") from exc

    @property
    def alive(self) -> bool:
        return not self._closed

    def spawn(self) -> Session:
        """A fresh, empty session in this tree."""
        host, worker = channel.pair()
        try:
            with self._lock:
                if self._closed:
                    raise SandboxError("the sandbox tree is closed")
                channel.send(self.zygote.ctl, {"op": "spawn"}, (worker.fileno(),))
                worker.close()
                reply, _ = channel.recv(self.zygote.ctl, timeout=self.config.start_timeout)
            return Session(self, host, reply.get("pid"))
        except (channel.ChannelClosed, channel.ChannelTimeout, channel.ChannelCorrupt, OSError) as exc:
            host.close()
            worker.close()
            self._closed = True
            raise SandboxError(f"the {self.tier.name} sandbox's zygote is gone: {exc}") from exc

    def kill_group(self, host_pid: int | None, ns_pid: int | None) -> None:
        """SIGKILL a session's process group (directly when allowed, else through the zygote)."""
        if host_pid:
            try:
                os.killpg(host_pid, signal.SIGKILL)
                return
            except (PermissionError, ProcessLookupError):
                pass
        if ns_pid and not self._closed:
            try:
                with self._lock:
                    channel.send(self.zygote.ctl, {"op": "kill", "pid": ns_pid})
                    channel.recv(self.zygote.ctl, timeout=5)
            except (channel.ChannelClosed, channel.ChannelTimeout, channel.ChannelCorrupt, OSError):
                pass

    def _acquire(self) -> None:
        with self._lock:
            self._refs += 1

    def _release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Tear the whole tree down (every session in it dies). Idempotent."""
        with self._lock:
            self._closed = True
        self.tier.stop(self.zygote)


class Session:
    """A live Python session (host handle). Not thread-safe: one caller at a time.

    Every request carries an id; a reply is accepted only with that id and only from the session's own
    process (:func:`arpo_env.envs.python.channel.check_reply`). A reply that fails closes the session:
    ``execute`` returns ``error="ProtocolError"``, ``fork`` raises :class:`ProtocolError`.
    """

    def __init__(self, tree: Tree, chan: Any, spawn_pid: int | None, *, forked: bool = False):
        self.tree = tree
        self.chan = chan
        self.closed = False
        self.ns_pid: int | None = spawn_pid
        self.host_pid: int | None = None
        self.scratch = ""
        self.calls = 0
        self._request_id = 0
        self.fork_seconds = 0.0
        """Time the parent spent in ``os.fork()`` when this session was forked (0 if spawned)."""
        tree._acquire()
        try:
            hello, host_pid = channel.recv(chan, timeout=tree.config.start_timeout)
        except (channel.ChannelClosed, channel.ChannelTimeout, channel.ChannelCorrupt) as exc:
            self.close()
            raise SandboxError(f"a new session did not answer: {type(exc).__name__}: {exc}") from exc
        if hello.get("op") != "hello" or (forked and spawn_pid is not None and hello.get("pid") != spawn_pid):
            self.close()
            raise SandboxError(f"a new session greeted with {hello!r} (expected a hello from pid {spawn_pid})")
        self.ns_pid = hello.get("pid") or spawn_pid
        self.host_pid = host_pid
        self.scratch = hello.get("scratch", "")

    @property
    def alive(self) -> bool:
        return not self.closed

    def died_between_calls(self) -> bool:
        """True when the worker is gone although nobody closed it (killed by a limit, a signal from
        another process, or the sandbox's death): its end of the channel reads as end-of-file. Only
        meaningful between calls, when the worker owes no reply."""
        if self.closed:
            return False
        ready, _, _ = select.select([self.chan], [], [], 0)
        if not ready:
            return False
        try:
            return self.chan.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _request(self, msg: dict[str, Any], timeout: float | None, fds: tuple[int, ...] = ()) -> dict[str, Any]:
        """Send one request and return its checked reply. Raises the channel's errors or
        :class:`ProtocolError` (the caller closes the session)."""
        self._request_id += 1
        channel.send(self.chan, {**msg, "id": self._request_id}, fds)
        try:
            reply, sender = channel.recv(self.chan, timeout=timeout)
        except channel.ChannelCorrupt as exc:
            raise ProtocolError(str(exc)) from exc
        problem = channel.check_reply(reply, sender, self._request_id, self.host_pid)
        if problem:
            raise ProtocolError(problem)
        return reply

    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell. Never raises for the code's behaviour; a dead session gives ``SessionDied``."""
        if self.closed:
            return ExecResult("", "SessionDied", metadata={"reason": "the session is closed"})
        timeout = self.tree.config.timeout if timeout is None else timeout
        start = time.monotonic()
        self.calls += 1
        try:
            reply = self._request({"op": "exec", "code": code}, timeout)
        except channel.ChannelTimeout:
            self.close()
            return ExecResult("", "Timeout", seconds=time.monotonic() - start,
                              metadata={"timeout": timeout})
        except channel.ChannelClosed as exc:
            self.close()
            return ExecResult("", "SessionDied", seconds=time.monotonic() - start,
                              metadata={"reason": str(exc)})
        except ProtocolError as exc:
            self.close()
            return ExecResult("", "ProtocolError", seconds=time.monotonic() - start,
                              metadata={"reason": str(exc)})
        if reply.get("op") != "result":
            return ExecResult(f"Error: the sandbox could not run the cell: {reply.get('error', reply)}",
                              "SandboxError", seconds=time.monotonic() - start)
        return ExecResult(str(reply.get("output", "")), reply.get("error"), int(reply.get("dropped_bytes", 0)),
                          seconds=time.monotonic() - start)

    def fork(self) -> Session:
        """An independent copy of this session (variables, imports, scratch files).

        Raises :class:`SandboxError` naming the cause when the fork fails; every process of a failed fork
        is killed and reaped. A fork the sandbox refused (no free file descriptor, process limit) leaves
        this session usable; a lost or untrusted channel closes it."""
        if self.closed:
            raise SandboxError("cannot fork a closed session")
        host, worker = channel.pair()
        try:
            try:
                reply = self._request({"op": "fork"}, self.tree.config.start_timeout, (worker.fileno(),))
            finally:
                worker.close()
        except (channel.ChannelClosed, channel.ChannelTimeout, ProtocolError) as exc:
            host.close()
            self.close()
            if isinstance(exc, ProtocolError):
                raise
            raise SandboxError(f"the session died while forking: {exc}") from exc
        if reply.get("op") != "forked":
            host.close()
            raise SandboxError(f"the sandbox refused the fork: {reply.get('error', reply)}")
        pid = reply.get("pid")
        try:
            child = Session(self.tree, host, pid, forked=True)
        except SandboxError as exc:
            reaped = self._reap(pid)
            raise SandboxError(f"the forked session failed to start ({exc}); its process was killed"
                               + (" and reaped" if reaped else "")) from exc
        child.fork_seconds = float(reply.get("fork_seconds", 0.0))
        return child

    def _reap(self, pid: int | None) -> bool:
        """Have this session kill and reap its forked child ``pid``; whether that was confirmed."""
        if pid is None or self.closed:
            return False
        try:
            return bool(self._request({"op": "reap", "pid": pid}, self.tree.config.start_timeout).get("done"))
        except (channel.ChannelClosed, channel.ChannelTimeout, ProtocolError):
            self.close()
            return False

    def close(self) -> None:
        """Kill the session (its process group) and release the tree. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.chan.close()  # the session's watchdog kills its group when it sees this
        finally:
            try:
                self.tree.kill_group(self.host_pid, self.ns_pid)
            finally:
                self.tree._release()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
