"""Dataclass configs: split their fields out of keyword arguments, build them from dicts, YAML data and flags.

- :func:`split_fields` / :func:`build`: the one way an env, backend or runner takes its config's fields out of
  ``**kwargs`` (unknown names are a ``TypeError`` with close-match suggestions).
- :func:`from_mapping`: a (nested) dict, e.g. loaded from YAML, to a dataclass, type-checked and coerced by
  pydantic (``"1e-6"`` to a float, a list to a tuple); an unknown key or a wrong type is a ``ValueError``
  naming the dotted key (``rollout.alpah``), with a suggestion for unknown keys. Classes that should reject
  unknown keys set ``__pydantic_config__ = {"extra": "forbid"}`` (a ``ClassVar``, not a field).
- :func:`from_argv`: ``--field value`` flags over a default instance, parsed by tyro (nested dataclass fields
  are ``--rollout.alpha``; booleans are ``--name``/``--no-name``; tuples and lists take several values; dicts
  take one JSON value); :func:`help_text` is tyro's help, with each field's docstring.

pydantic and tyro are imported on first use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def field_names(cls: type) -> list[str]:
    """The init fields of dataclass ``cls``, in order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def suggest(name: str, candidates: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def split_fields(cls: type, kwargs: Mapping[str, Any], exclude: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the items of kwargs that are fields of cls, the rest)``; ``kwargs`` itself is not changed.

    ``exclude`` names fields that stay in the rest (e.g. one the caller passes explicitly)."""
    names = set(field_names(cls)) - set(exclude)
    mine = {k: v for k, v in kwargs.items() if k in names}
    return mine, {k: v for k, v in kwargs.items() if k not in names}


def build(cls: type[T], base: T | None = None, overrides: Mapping[str, Any] | None = None, *,
          owner: str | None = None) -> T:
    """``cls`` from the fields of ``base`` (an instance or ``None`` for the defaults) with ``overrides``.

    Raises ``TypeError`` naming every unknown keyword (as options of ``owner``, default the class name),
    with a close match for the first one where there is one."""
    names = field_names(cls)
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in names]
    if unknown:
        hint = suggest(unknown[0], names)
        raise TypeError(f"{owner or cls.__name__} got unknown options {sorted(unknown)}{hint}; valid: {sorted(names)}")
    current = {n: getattr(base, n) for n in names} if base is not None else {}
    return cls(**{**current, **overrides})


# ----- dicts (YAML) ------------------------------------------------------------------------------------------
def _dataclass_at(cls: type, loc: Sequence[Any]) -> type | None:
    """The dataclass that holds the key at ``loc`` (a pydantic error location) or ``None``."""
    import typing
    current: Any = cls
    for part in loc[:-1]:
        hints = typing.get_type_hints(current) if dataclasses.is_dataclass(current) else {}
        current = hints.get(str(part))
    return current if isinstance(current, type) and dataclasses.is_dataclass(current) else None


def from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """Validate a (nested) dict into ``cls`` with pydantic; every problem is one ``ValueError`` line
    naming its dotted key. Keys may use ``-`` for ``_`` at the top level."""
    import pydantic

    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    try:
        return pydantic.TypeAdapter(cls).validate_python(data)
    except pydantic.ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            key = ".".join(loc)
            if err["type"] == "unexpected_keyword_argument":
                holder = _dataclass_at(cls, err["loc"])
                hint = suggest(loc[-1], field_names(holder)) if holder is not None else ""
                lines.append(f"{cls.__name__} has no field {key!r}{hint}")
            elif err["type"] == "value_error":  # raised by a __post_init__ (validate()), naming its field
                msg = str(err["msg"]).removeprefix("Value error, ")
                lines.append(f"{cls.__name__}.{key}: {msg}" if loc else msg)
            else:
                lines.append(f"{cls.__name__}.{key}: {err['msg']} (got {err.get('input')!r})")
        raise ValueError("\n".join(lines)) from None


def to_mapping(obj: Any) -> dict[str, Any]:
    """The fields of dataclass ``obj`` as plain YAML/JSON data (nested dicts; tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(obj))


# ----- flags -----------------------------------------------------------------------------------------------
def _registry() -> Any:
    """tyro rules: dict fields take one JSON value (``--env-kwargs '{"max_tool_calls": 3}'``)."""
    from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

    registry = ConstructorRegistry()

    @registry.primitive_rule
    def _json_dict(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
        if info.type_origin is not dict:
            return None
        return PrimitiveConstructorSpec(nargs=1, metavar="JSON", instance_from_str=lambda a: json.loads(a[0]),
                                        is_instance=lambda x: isinstance(x, dict),
                                        str_from_instance=lambda x: [json.dumps(x)])
    return registry


def from_argv(cls: type[T], argv: Sequence[str], default: T | None = None, prog: str | None = None) -> T:
    """Parse ``--field value`` flags over ``default`` (``cls()`` when ``None``) with tyro.

    A bad flag or value is a ``ValueError`` carrying tyro's message (which names the flag and suggests
    close matches); ``--help`` raises ``SystemExit(0)`` after printing the help."""
    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=list(argv), default=default if default is not None else cls(), prog=prog,
                            registry=_registry())
    except SystemExit as exc:
        if exc.code == 0:  # --help (printed to stdout)
            raise
        raise ValueError(err.getvalue().strip() or f"bad flags {list(argv)}") from None


def help_text(cls: type, prog: str | None = None) -> str:
    """tyro's help for ``cls``: every flag with its type, default and the field's docstring."""
    import tyro

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        tyro.cli(cls, args=["--help"], prog=prog, registry=_registry())
    return out.getvalue()
