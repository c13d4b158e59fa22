"""The Ray backend of :mod:`arpo_env.env_workers`: each env worker is a Ray actor that owns its envs.

``ray_worker_factory(...)`` gives an :class:`arpo_env.env_workers.EnvWorkerPool` workers that are threaded
Ray actors (``max_concurrency=threads``) with an explicit ``num_cpus`` and *hard* node affinity
(``NodeAffinitySchedulingStrategy(node_id, soft=False)``, default: the node of the calling process), so a
trainer rank's envs run on its own machine. The actor holds an :class:`~arpo_env.env_workers.EnvServer`:
``fork`` runs inside the actor and returns a handle there, exactly as with the process backend.

Ray must be initialised by the caller (``ray.init(...)``; this module never starts a cluster). A call that
fails because the actor died (``RayActorError``) or exceeds ``call_timeout`` (the actor is then killed)
raises :class:`~arpo_env.env_workers.WorkerDied`. The actor's process is Ray's to reap; sandboxes it
started die with it (``PR_SET_PDEATHSIG``).

Not covered: actor restarts (``max_restarts=0``: a dead actor's envs are gone, the pool starts a new one);
placement groups; GPUs for env actors.
"""
from __future__ import annotations

from typing import Any

from arpo_env.env_workers import EnvHandle, EnvServer, WorkerDied, WorkerFactory
from arpo_env.extras import require


def _ray() -> Any:
    return require("ray", "ray", needed_by="env_worker_backend='ray'")


class _Host:
    """The actor body (wrapped with ``ray.remote`` at first use)."""

    def __init__(self, owner: tuple[int, int, int], env_id: str, env_kwargs: dict[str, Any],
                 imports: tuple[str, ...]):
        import importlib
        for module in imports:
            importlib.import_module(module)
        self.server = EnvServer(owner, env_id, env_kwargs)

    def call(self, op: str, handle: EnvHandle | None, args: tuple[Any, ...]) -> Any:
        return self.server.call(op, handle, args)

    def shutdown(self) -> None:
        self.server.close_all()


class RayWorker:
    """One env worker as a Ray actor (implements :class:`arpo_env.env_workers.Worker`)."""

    def __init__(self, owner: tuple[int, int, int], env_id: str, env_kwargs: dict[str, Any], *,
                 threads: int = 4, num_cpus: float = 1.0, node_id: str | None = None,
                 call_timeout: float = 300.0, imports: tuple[str, ...] = ()):
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if not ray.is_initialized():
            raise RuntimeError("env_worker_backend='ray' needs Ray started first: call ray.init(...) "
                               "(or ray.init(address='auto') on a cluster)")
        node = node_id or ray.get_runtime_context().get_node_id()
        actor_cls = ray.remote(_Host)
        self.owner, self.call_timeout = owner, call_timeout
        self.dead: str | None = None
        self.actor = actor_cls.options(
            num_cpus=num_cpus, max_concurrency=max(1, threads), max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote(owner, env_id, env_kwargs, imports)

    @property
    def alive(self) -> bool:
        return self.dead is None

    def call(self, op: str, handle: EnvHandle | None, *args: Any) -> Any:
        ray = _ray()
        from ray.exceptions import GetTimeoutError, RayActorError
        if self.dead is not None:
            raise WorkerDied(self.dead)
        ref = self.actor.call.remote(op, handle, args)
        try:
            return ray.get(ref, timeout=self.call_timeout)
        except RayActorError as exc:
            self.dead = f"env worker actor {self.owner[1]} died: {type(exc).__name__}"
        except GetTimeoutError:
            self.dead = f"env worker actor {self.owner[1]} gave no answer to {op!r} within {self.call_timeout}s"
            ray.kill(self.actor, no_restart=True)
        except ray.exceptions.RayTaskError as exc:  # the env's own error: re-raise it as itself
            raise exc.as_instanceof_cause() from None
        raise WorkerDied(self.dead)

    def stop(self) -> None:
        ray = _ray()
        if self.dead is None:
            try:
                ray.get(self.actor.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - killed below either way
                pass
        ray.kill(self.actor, no_restart=True)
        self.dead = self.dead or f"env worker actor {self.owner[1]} was stopped"


def ray_worker_factory(env_id: str, env_kwargs: dict[str, Any] | None = None, *, threads: int = 4,
                       num_cpus: float = 1.0, node_id: str | None = None, call_timeout: float = 300.0,
                       imports: tuple[str, ...] = ()) -> WorkerFactory:
    """A ``worker_factory`` for :class:`~arpo_env.env_workers.EnvWorkerPool` making :class:`RayWorker` s."""
    _ray()
    kwargs = dict(env_kwargs or {})
    return lambda owner: RayWorker(owner, env_id, kwargs, threads=threads, num_cpus=num_cpus, node_id=node_id,
                                   call_timeout=call_timeout, imports=imports)
