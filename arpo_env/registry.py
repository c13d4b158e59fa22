"""Registration on top of Gymnasium's registry.

``register(id, entry_point="module:Class", **kwargs)`` registers with Gymnasium (so ``gymnasium.make``
works) and records the env in arpo-env's own table (``list_envs``, ``arpo envs``). Built-in envs are
registered by entry-point strings and imported lazily. Third-party packages register without touching
this code through the entry-point group ``arpo_env.envs``, in one of two forms::

    [project.entry-points."arpo_env.envs"]
    "myns/MyEnv-v0" = "my_pkg.envs:MyEnv"      # id form: the name is the env id, the value its class
    my_pkg = "my_pkg.register:register_all"     # function form: called with no arguments (or a module)

Id-form entry points are registered when ``arpo_env`` is imported, *without importing the plugin*
(Gymnasium imports ``my_pkg.envs`` at the first ``make``), so ``gymnasium.make("myns/MyEnv-v0")`` works
after a bare ``import arpo_env``. Function-form entry points must run the plugin's code to learn its ids:
they run at the first :func:`make`, :func:`list_envs` or :func:`get_record` (or :func:`load_plugins`); a
``gymnasium.make`` before that does not see their envs. Gymnasium >= 1.0 has no plugin group of its own.
Not covered: an entry point removed from the environment while the process runs stays registered.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from arpo_env.errors import UserError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "arpo_env.envs"

#: Built-in environments: id -> (entry point, description, the extras (``pip install 'arpo-env[NAME]'``) it
#: needs with its default settings). Imported only when made or described. Options can need more extras:
#: ``backend='ddgs'`` (search), Browse-v0's ``source='live'`` (browse), the sandbox's docker tier (docker).
BUILTIN_ENVS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "arpo/Calculator-v0": ("arpo_env.envs.calculator:CalculatorEnv",
                           "arithmetic word problems with a safe calculator", ()),
    "arpo/Python-v0": ("arpo_env.envs.python.env:PythonEnv",
                       "compute questions with a persistent, forkable, sandboxed Python session", ()),
    "arpo/Search-v0": ("arpo_env.envs.search.env:SearchEnv",
                       "multi-hop QA with search (offline BM25 or live DuckDuckGo)", ("search",)),
    "arpo/Browse-v0": ("arpo_env.envs.browse.env:BrowseEnv", "read web pages (offline page store or live http)", ()),
    "arpo/MultiTool-v0": ("arpo_env.envs.multitool:MultiToolEnv", "ARPO's env: search + python (+ browse)",
                          ("search",)),
}


class UnknownEnvError(UserError, gym.error.Error, KeyError):
    """An id that is not registered; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class EnvRecord:
    """What arpo-env knows about a registered env."""

    id: str
    entry_point: str | Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "user"
    """``builtin``, ``plugin:<dist>`` or ``user``."""
    extras: tuple[str, ...] = ()
    """The arpo-env extras the env needs with its default settings (see :mod:`arpo_env.extras`)."""

    def missing_extras(self) -> list[str]:
        """Those of :attr:`extras` not (completely) installed; checked without importing anything."""
        from arpo_env.extras import is_installed
        return [e for e in self.extras if not is_installed(e)]

    def load(self) -> Callable[..., Any]:
        """The env class, or the factory callable it was registered with (imports the module)."""
        if callable(self.entry_point):
            return self.entry_point
        module, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), attr)


_RECORDS: dict[str, EnvRecord] = {}
_plugins_loaded = False
_bad_ids: set[str] = set()  # id-form entry points that failed to register (warned about once)


def register(id: str, entry_point: str | Callable[..., Any], *, description: str = "",
             source: str = "user", extras: tuple[str, ...] = (), **kwargs: Any) -> None:
    """Register an env under ``id`` (``namespace/Name-vN``) for ``arpo_env.make`` and ``gymnasium.make``.

    ``kwargs`` become the env's default constructor arguments; ``make(id, **more)`` overrides them.
    ``extras``: arpo-env extras it needs (shown by ``arpo envs``). Re-registering an id replaces it.
    """
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'package.module:ClassName', got {entry_point!r}")
    if id in gym.registry:
        del gym.registry[id]
    gym.register(id=id, entry_point=entry_point, kwargs=dict(kwargs), disable_env_checker=False)
    _RECORDS[id] = EnvRecord(id, entry_point, dict(kwargs), description, source, tuple(extras))


def _is_id_form(ep: importlib.metadata.EntryPoint) -> bool:
    return "/" in ep.name and ":" in ep.value


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    return getattr(ep.dist, "name", ep.name) if getattr(ep, "dist", None) else ep.name


def _register_id_entry_points() -> None:
    """Register every id-form entry point (``"ns/Name-vN" = "module:Class"``) without importing it."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _is_id_form(ep) and ep.name not in _RECORDS and ep.name not in _bad_ids:
            try:
                register(ep.name, ep.value, source=f"plugin:{_dist_name(ep)}")
            except Exception as exc:  # a malformed plugin entry must not break `import arpo_env`
                _bad_ids.add(ep.name)
                log.warning("arpo_env: plugin env %r (%s) cannot be registered: %s", ep.name, ep.value, exc)


def load_plugins() -> None:
    """Run the function-form plugin entry points now (once); :func:`make` and :func:`list_envs` do it."""
    _load_plugins()


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _is_id_form(ep):
            if ep.name not in _RECORDS:  # installed after import
                _register_id_entry_points()
            continue
        before = set(_RECORDS)
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:  # a broken plugin must not break arpo-env
            log.warning("arpo_env: plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        dist = _dist_name(ep)
        for new in set(_RECORDS) - before:
            _RECORDS[new].source = f"plugin:{dist}"


def _register_builtins() -> None:
    for env_id, (entry, desc, extras) in BUILTIN_ENVS.items():
        if env_id not in _RECORDS:
            register(env_id, entry, description=desc, source="builtin", extras=extras)


def list_envs() -> list[EnvRecord]:
    """Every env registered with arpo-env (built-ins, plugins, user registrations), sorted by id."""
    _load_plugins()
    return [_RECORDS[k] for k in sorted(_RECORDS)]


def get_record(id: str) -> EnvRecord:
    """The record of ``id``; raises :class:`UnknownEnvError` with "did you mean" suggestions."""
    _load_plugins()
    if id not in _RECORDS:
        close = difflib.get_close_matches(id, list(_RECORDS), n=3, cutoff=0.5)
        close += [k for k in _RECORDS if k.lower() == id.lower() and k not in close]
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownEnvError(f"no arpo-env environment {id!r}.{hint} Registered: {', '.join(sorted(_RECORDS))}. "
                              "Register your own with arpo_env.register(id, entry_point='module:Class').")
    return _RECORDS[id]


def make(id: str, **kwargs: Any) -> Any:
    """Build a registered env (the raw env, no Gymnasium wrappers, so ``fork()`` is at hand).

    ``kwargs`` override the registered defaults (e.g. ``max_tool_calls=6``). For the wrapped version with
    Gymnasium's checkers use ``gymnasium.make(id, **kwargs)`` and ``env.unwrapped.fork()``.
    """
    get_record(id)
    return gym.make(id, disable_env_checker=True, **kwargs).unwrapped


_register_builtins()
_register_id_entry_points()
