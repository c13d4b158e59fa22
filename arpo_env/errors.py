"""Errors a user can act on, and the short text the ``arpo`` command line prints for each.

:class:`UserError` is the base of every error caused by input (a flag, a config key, a path, an id) rather
than by a bug: its message is one or two lines naming what was wrong, what was expected and the fix.
:class:`ConfigError` (also a ``ValueError``) is a bad config value or key. :func:`user_message` maps those
and the other known kinds (a missing extra, an unknown env id, a file that is not there, a value error from
validation, an unreachable server, a malformed YAML file) to that short text, or ``None`` for anything
else (a bug: the command line then shows the traceback). :func:`check_model_path` refuses a model path that
cannot load before Hugging Face turns it into a "Repo id must be in the form ..." error.

Not covered: errors raised inside worker processes arrive as their own types; a ``ValueError`` or
``FileNotFoundError`` from a bug is shown short too (``--debug`` or ``ARPO_DEBUG=1`` shows its traceback).
"""
from __future__ import annotations

import errno
import importlib
import os
import re
from pathlib import Path

DEBUG_HINT = "(--debug or ARPO_DEBUG=1 shows the traceback)"


class UserError(Exception):
    """Bad input, reported as its message alone (no traceback) and exit status 2 by ``arpo``."""


class ConfigError(UserError, ValueError):
    """A config value of the wrong type or out of range, or an unknown key; the message names the field."""


class ConfigKeyError(UserError, TypeError):
    """Unknown keyword options of a config (a ``TypeError``, as Python gives for unknown keywords)."""


#: gymnasium re-raises errors of an env's constructor with this tail, which only repeats the kwargs
_GYM_TAIL = re.compile(r" was raised from the environment creator for \S+ with kwargs \(.*\)$", re.S)


def _is_http_connect_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return type(exc).__module__.startswith("httpx") and bool(names & {"ConnectError", "ConnectTimeout"})


def user_message(exc: BaseException) -> str | None:
    """The one- or two-line text for a user error, or ``None`` when ``exc`` is not one (see module doc)."""
    from arpo_env.extras import MissingExtra  # light; arpo_env.registry.UnknownEnvError is a UserError

    if isinstance(exc, (UserError, MissingExtra)):
        return _GYM_TAIL.sub("", str(exc))
    if isinstance(exc, FileNotFoundError) and exc.errno == errno.ENOENT and exc.filename:
        return f"file not found: {exc.filename}"
    if isinstance(exc, (FileNotFoundError, ValueError)):
        return _GYM_TAIL.sub("", str(exc)) or type(exc).__name__
    if _is_http_connect_error(exc):
        request = getattr(exc, "_request", None)
        url = getattr(request, "url", None)
        where = f" {url}" if url is not None else ""
        return f"cannot reach the server{where}: {exc}; start it or pass the right --base-url"
    if type(exc).__name__ in ("YAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError"):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}"
    return None


def import_modules(names: list[str] | tuple[str, ...], flag: str = "--imports") -> None:
    """Import each module (one that calls ``arpo_env.register``, a policy...); a module that cannot be found
    is a :class:`UserError` naming ``flag`` and where Python looked first."""
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # the module exists but one of its own imports is missing
            raise UserError(f"{flag} {name}: no module {exc.name!r} (the current folder and PYTHONPATH are "
                            f"searched; run from the folder that holds {name.split('.')[0]}.py)") from None


_MODEL_FILES = (".gguf", ".safetensors", ".bin", ".pt", ".pth")


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model_path(model: str | None, flag: str = "--model", *, names: tuple[str, ...] = ()) -> None:
    """Raise :class:`UserError` for a ``model`` that cannot load: a path-looking value (``./x``, ``/x``,
    ``~/x``, ``a/b/c``, a model file name) that does not exist, or, with the hub offline
    (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``), a hub id that is neither a local folder nor cached.
    ``None`` and ``names`` (e.g. ``("tiny",)``) always pass; so does a plain hub id while online."""
    if model is None or model in names:
        return
    fix = "pass a local model folder, a hub id (org/name)" + (", 'tiny'" if "tiny" in names else "") + \
          f", or leave out {flag} for the embedded SmolLM2-135M-Instruct"
    if Path(model).expanduser().exists():
        return
    looks_like_path = (model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1
                       or model.endswith("/") or model.lower().endswith(_MODEL_FILES))
    if looks_like_path:
        raise UserError(f"{flag}: model path {model} does not exist; {fix}")
    if _offline() and not (_hub_cache() / f"models--{model.replace('/', '--')}").is_dir():
        raise UserError(f"{flag}: {model} is not a local folder and the hub is offline (HF_HUB_OFFLINE) with "
                        f"no cached copy; {fix}")
