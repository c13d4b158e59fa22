"""Env workers: environments that live in worker processes which own their forks.

Some envs cannot move between processes: ``arpo/Python-v0`` forks its sandbox session by passing a socket
end with ``SCM_RIGHTS`` to the session process, so a tree and every fork of it stay in the process that
started them. An :class:`EnvWorkerPool` starts ``n`` worker processes (``multiprocessing``, spawn); each
builds envs with :func:`arpo_env.make` and keeps them in a table of integer handles. The client side is
:class:`EnvProxy`, a :class:`arpo_env.TextEnv` whose ``reset``/``step``/``end``/``fork``/``close`` run in
the owning worker (same observation and action spaces, ``last_turn``, ``episode``, ``stop_strings``), so
``make_env`` factories can return proxies and agents and trainers use them unchanged.

Semantics:

- ``fork(handle)`` runs in the worker that owns the handle and returns a handle in that same worker.
  A handle from another worker or another pool raises :class:`ForeignHandleError` (worker side too).
- Each worker serves calls in a small pool of long-lived threads (``threads``), so tool calls of envs in
  one worker still run concurrently; sandbox tiers tie sandbox life to the starting thread, and these
  threads live as long as the worker.
- A worker that dies (killed, crashed) or does not answer within ``call_timeout`` seconds is killed and
  reaped (its sandbox processes die with it: their tiers use ``PR_SET_PDEATHSIG``), then replaced by a
  fresh worker. Every proxy of it is marked dead: ``reset``/``fork`` raise :class:`WorkerDied`; ``step``
  returns an empty, truncated turn and sets :attr:`EnvProxy.died`, so a batched round finishes and the
  caller (``trainers.arpo_rollout``) drops that prompt's tree and samples it again.

Not covered: moving a live env between workers (impossible for process-forked envs); load balancing by
anything but the count of open handles; sharing one pool between processes.
"""
from __future__ import annotations

import copy
import itertools
import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from arpo_env.env import Episode, TextEnv, Turn
from arpo_env.spaces import UnicodeText

log = logging.getLogger(__name__)
_POOL_IDS = itertools.count(1)


class WorkerDied(RuntimeError):
    """The worker that owned an env died or stopped answering; its envs (and their forks) are gone."""


class ForeignHandleError(ValueError):
    """A handle was used with a worker or pool that does not own it."""


@dataclass(frozen=True)
class EnvHandle:
    """Where an env lives: pool id, worker slot, worker generation (a restarted slot is a new one), env id."""

    pool: int
    worker: int
    generation: int
    env: int


@dataclass
class EnvView:
    """What the client caches of a remote env after each call (plain, picklable data)."""

    episode: Episode | None
    last_turn: Turn | None
    stop_strings: tuple[str, ...]
    system_prompt: str
    max_observation_chars: int
    max_action_chars: int


class EnvServer:
    """The worker side: a table of envs by handle id, with the operations the proxy calls."""

    def __init__(self, owner: tuple[int, int, int], env_id: str, env_kwargs: dict[str, Any]):
        self.owner, self.env_id, self.env_kwargs = owner, env_id, env_kwargs
        self.envs: dict[int, TextEnv] = {}
        self.ids = itertools.count()
        self.lock = threading.Lock()

    def _get(self, handle: EnvHandle) -> TextEnv:
        if (handle.pool, handle.worker, handle.generation) != self.owner:
            raise ForeignHandleError(f"env handle {handle} belongs to another worker or pool than this one "
                                     f"{self.owner}; fork and step an env only where it lives")
        with self.lock:
            env = self.envs.get(handle.env)
        if env is None:
            raise KeyError(f"env handle {handle} is closed or unknown in this worker")
        return env

    def _add(self, env: TextEnv) -> tuple[EnvHandle, EnvView]:
        with self.lock:
            n = next(self.ids)
            self.envs[n] = env
        return EnvHandle(*self.owner, n), view(env)

    def call(self, op: str, handle: EnvHandle | None, args: tuple[Any, ...]) -> Any:
        if op == "pid":
            return os.getpid()
        if op == "make":
            import arpo_env
            return self._add(arpo_env.make(self.env_id, **self.env_kwargs))
        if handle is None:
            raise ValueError(f"operation {op!r} needs a handle")
        env = self._get(handle)
        if op == "reset":
            return env.reset(**args[0]), view(env)
        if op == "step":
            return env.step(args[0]), view(env)
        if op == "end":
            return env.end(), view(env)
        if op == "fork":
            return self._add(env.fork())
        if op == "close":
            with self.lock:
                self.envs.pop(handle.env, None)
            env.close()
            return None
        raise ValueError(f"unknown env worker operation {op!r}")

    def close_all(self) -> None:
        for env in list(self.envs.values()):
            try:
                env.close()
            except Exception as exc:  # closing must go on for the others
                log.warning("closing an env in a worker failed: %s", exc)
        self.envs.clear()


def view(env: TextEnv) -> EnvView:
    """The cached view of ``env`` (a copy: the client never shares state with the worker)."""
    ep = env._episode
    return EnvView(copy.deepcopy(ep), ep.last_turn if ep is not None else None, tuple(env.stop_strings),
                   env.system_prompt, env.config.max_observation_chars, env.config.max_action_chars)


def _serve(conn: Connection, owner: tuple[int, int, int], env_id: str, env_kwargs: dict[str, Any],
           threads: int, imports: tuple[str, ...]) -> None:
    """The worker process's main loop: requests ``(id, op, handle, args)`` in, ``(id, ok, value)`` out."""
    import importlib
    for module in imports:
        importlib.import_module(module)
    server = EnvServer(owner, env_id, env_kwargs)
    send_lock = threading.Lock()

    def run(req_id: int, op: str, handle: EnvHandle | None, args: tuple[Any, ...]) -> None:
        try:
            reply: tuple[Any, ...] = (req_id, True, server.call(op, handle, args))
        except Exception as exc:  # the client re-raises it
            reply = (req_id, False, exc)
        with send_lock:
            try:
                conn.send(reply)
            except Exception as exc:  # an unpicklable value or error: send its text
                conn.send((req_id, False, RuntimeError(f"{type(exc).__name__}: {exc}")))

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="arpo-env-worker") as pool:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            pool.submit(run, *msg)
    server.close_all()


class Worker(Protocol):
    """One worker as the proxies use it (the process and Ray backends implement it)."""

    owner: tuple[int, int, int]

    @property
    def alive(self) -> bool: ...
    def call(self, op: str, handle: EnvHandle | None, *args: Any) -> Any: ...
    def stop(self) -> None: ...


class ProcessWorker:
    """A worker process with a reader thread matching replies to pending calls (see module docstring)."""

    def __init__(self, owner: tuple[int, int, int], env_id: str, env_kwargs: dict[str, Any], *,
                 threads: int = 4, call_timeout: float = 300.0, start_method: str = "spawn",
                 imports: tuple[str, ...] = ()):
        self.owner, self.call_timeout = owner, call_timeout
        ctx: Any = mp.get_context(start_method)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, owner, env_id, env_kwargs, threads, imports),
                                   name=f"arpo-env-worker-{owner[1]}", daemon=True)
        self.process.start()
        child.close()
        self.pending: dict[int, Future[Any]] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count()
        self.dead: str | None = None
        self.reader = threading.Thread(target=self._read, name=f"arpo-env-worker-reader-{owner[1]}", daemon=True)
        self.reader.start()

    @property
    def alive(self) -> bool:
        return self.dead is None and self.process.is_alive()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _read(self) -> None:
        while True:
            try:
                req_id, ok, value = self.conn.recv()
            except (EOFError, OSError):
                self._die(f"env worker {self.owner[1]} (pid {self.process.pid}) died")
                return
            with self.lock:
                fut = self.pending.pop(req_id, None)
            if fut is not None:
                fut.set_result(value) if ok else fut.set_exception(value)

    def _die(self, why: str) -> None:
        with self.lock:
            if self.dead is None:
                self.dead = why
            pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerDied(why))
        self._reap()

    def _reap(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)

    def call(self, op: str, handle: EnvHandle | None, *args: Any) -> Any:
        """Run ``op`` in the worker and return its value (its error re-raised); :class:`WorkerDied` when
        the worker is dead or does not answer within ``call_timeout`` seconds (it is then killed)."""
        fut: Future[Any] = Future()
        with self.lock:
            if self.dead is not None:
                raise WorkerDied(self.dead)
            req_id = next(self.ids)
            self.pending[req_id] = fut
            try:
                self.conn.send((req_id, op, handle, args))
            except (OSError, ValueError) as exc:
                self.pending.pop(req_id, None)
                self.dead = f"env worker {self.owner[1]} cannot be reached: {exc}"
                raise WorkerDied(self.dead) from None
        try:
            return fut.result(timeout=self.call_timeout)
        except FutureTimeout:
            self._die(f"env worker {self.owner[1]} gave no answer to {op!r} within {self.call_timeout}s")
            raise WorkerDied(self.dead) from None

    def stop(self) -> None:
        """Ask the worker to close its envs and exit; kill and reap it if it does not within 10 s."""
        if self.dead is None and self.process.is_alive():
            try:
                with self.lock:
                    self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(timeout=10)
        self._die(f"env worker {self.owner[1]} was stopped")
        self.conn.close()


WorkerFactory = Callable[[tuple[int, int, int]], Worker]


class EnvWorkerPool:
    """``n`` workers serving envs of one id; :meth:`make` returns an :class:`EnvProxy` on the worker with
    the fewest open envs. A dead worker is replaced by a fresh one (a new generation) at the next
    :meth:`make`. Use as a context manager or call :meth:`close`."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, *, workers: int = 2,
                 threads: int = 4, call_timeout: float = 300.0, imports: tuple[str, ...] = (),
                 worker_factory: WorkerFactory | None = None):
        if workers < 1:
            raise ValueError(f"an env worker pool needs at least one worker, got workers={workers}")
        self.id = next(_POOL_IDS)
        kwargs = dict(env_kwargs or {})
        self.factory: WorkerFactory = worker_factory or (
            lambda owner: ProcessWorker(owner, env_id, kwargs, threads=threads, call_timeout=call_timeout,
                                        imports=imports))
        self.lock = threading.Lock()
        self.generations = [0] * workers
        self.workers: list[Worker] = [self.factory((self.id, i, 0)) for i in range(workers)]
        self.open = [0] * workers

    def _slot(self) -> int:
        with self.lock:
            for i, w in enumerate(self.workers):
                if not w.alive:
                    w.stop()
                    self.generations[i] += 1
                    self.workers[i] = self.factory((self.id, i, self.generations[i]))
                    self.open[i] = 0
            return min(range(len(self.workers)), key=lambda i: self.open[i])

    def make(self) -> EnvProxy:
        """A new env in a worker (the one with the fewest open envs)."""
        i = self._slot()
        worker = self.workers[i]
        handle, v = worker.call("make", None)
        self.open[i] += 1
        return EnvProxy(self, worker, handle, v)

    def fork(self, env: EnvProxy) -> EnvProxy:
        """Fork ``env`` where it lives; a proxy from another pool raises :class:`ForeignHandleError`."""
        if env.pool is not self or env.handle.pool != self.id:
            raise ForeignHandleError(f"env handle {env.handle} belongs to another env worker pool "
                                     f"(this is pool {self.id}); fork it with its own pool (env.fork())")
        return env.fork()

    def _closed(self, handle: EnvHandle) -> None:
        with self.lock:
            if self.generations[handle.worker] == handle.generation:
                self.open[handle.worker] = max(0, self.open[handle.worker] - 1)

    def close(self) -> None:
        """Stop every worker (their envs close with them)."""
        for w in self.workers:
            w.stop()

    def __enter__(self) -> EnvWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EnvProxy(TextEnv):
    """A :class:`arpo_env.TextEnv` whose episode runs in an env worker (see module docstring)."""

    def __init__(self, pool: EnvWorkerPool, worker: Worker, handle: EnvHandle, v: EnvView):
        # TextEnv.__init__ is not called: tools, task source and budgets live in the worker.
        self.pool, self.worker, self.handle, self._view = pool, worker, handle, v
        self.observation_space = UnicodeText(v.max_observation_chars)
        self.action_space = UnicodeText(v.max_action_chars)
        self.render_mode = None
        self.died: WorkerDied | None = None
        """Set when the owning worker died during a ``step`` (the step returned an empty truncated turn)."""
        self._closed = False

    def _call(self, op: str, *args: Any) -> Any:
        if self.died is not None:
            raise self.died
        try:
            return self.worker.call(op, self.handle, *args)
        except WorkerDied as exc:
            self.died = exc
            raise

    @property
    def lost(self) -> bool:
        """The owning worker is gone (a call failed with :class:`WorkerDied`, or the process ended)."""
        return self.died is not None or not self.worker.alive

    @property
    def system_prompt(self) -> str:
        return self._view.system_prompt

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return self._view.stop_strings

    @property
    def last_turn(self) -> Turn | None:
        return self._view.last_turn

    @property
    def _episode(self) -> Episode | None:  # type: ignore[override]
        return self._view.episode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        out, self._view = self._call("reset", {"seed": seed, "options": options})
        return out

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        try:
            out, self._view = self._call("step", action)
        except WorkerDied:
            return "", 0.0, False, True, {"worker_died": str(self.died)}
        return out

    def end(self) -> float:
        if self.died is not None:
            return 0.0
        reward, self._view = self._call("end")
        return float(reward)

    def fork(self) -> EnvProxy:
        handle, v = self._call("fork")
        self.pool.open[handle.worker] += 1
        return EnvProxy(self.pool, self.worker, handle, v)

    def fresh_copy(self) -> EnvProxy:
        return self.pool.make()

    def render(self) -> str | None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool._closed(self.handle)
        if self.died is None and self.worker.alive:
            try:
                self.worker.call("close", self.handle)
            except WorkerDied:
                pass
