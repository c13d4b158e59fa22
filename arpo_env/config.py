"""Dataclass configs: split their fields out of keyword arguments, build them from dicts, YAML data and flags.

- :func:`split_fields` / :func:`build`: the one way an env, backend or runner takes its config's fields out of
  ``**kwargs`` (unknown names are a ``TypeError`` with close-match suggestions); both check the values'
  types with :func:`check_types` (a wrong type is a :class:`~arpo_env.errors.ConfigError` naming
  ``Class.field``, so ``max_tool_calls="abc"`` never reaches a comparison).
- :func:`from_mapping`: a (nested) dict, e.g. loaded from YAML, to a dataclass, type-checked and coerced by
  pydantic (``"1e-6"`` to a float, a list to a tuple); an unknown key or a wrong type is a ``ValueError``
  naming the dotted key (``rollout.alpah``), with a suggestion for unknown keys. Classes that should reject
  unknown keys set ``__pydantic_config__ = {"extra": "forbid"}`` (a ``ClassVar``, not a field).
- :func:`from_argv`: ``--field value`` flags over a default instance, parsed by tyro (nested dataclass fields
  are ``--rollout.alpha``; booleans are ``--name``/``--no-name``; tuples and lists take several values; dicts
  take one JSON value); :func:`help_text` is tyro's help, with each field's docstring. A bad flag is one
  :class:`~arpo_env.errors.ConfigError` line naming the flag (tyro's boxed message, flattened).

Every error here is a :class:`~arpo_env.errors.ConfigError` (a ``ValueError``) or
:class:`~arpo_env.errors.ConfigKeyError` (a ``TypeError``): the ``arpo`` command line prints it as one
line and exits 2.

pydantic and tyro are imported on first use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import io
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from arpo_env.errors import ConfigError, ConfigKeyError

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
    mine = check_types(cls, {k: v for k, v in kwargs.items() if k in names})
    return mine, {k: v for k, v in kwargs.items() if k not in names}


def build(cls: type[T], base: T | None = None, overrides: Mapping[str, Any] | None = None, *,
          owner: str | None = None) -> T:
    """``cls`` from the fields of ``base`` (an instance or ``None`` for the defaults) with ``overrides``.

    Raises ``TypeError`` (:class:`~arpo_env.errors.ConfigKeyError`) naming every unknown keyword (as options
    of ``owner``, default the class name), with a close match for the first one where there is one; a value
    of the wrong type is a :class:`~arpo_env.errors.ConfigError` (see :func:`check_types`)."""
    names = field_names(cls)
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in names]
    if unknown:
        hint = suggest(unknown[0], names)
        raise ConfigKeyError(f"{owner or cls.__name__} got unknown options {sorted(unknown)}{hint}; "
                             f"valid: {sorted(names)}")
    current = {n: getattr(base, n) for n in names} if base is not None else {}
    return cls(**{**current, **check_types(cls, overrides)})


# ----- value types -------------------------------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: nothing is checked
        return {}


def _conforms(value: Any, tp: Any) -> bool | None:
    """Whether ``value`` fits ``tp`` by a cheap check: ``True``, ``False`` or ``None`` (cannot tell)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        results = [_conforms(value, a) for a in typing.get_args(tp)]
        return True if True in results else None if None in results else False
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin in (tuple, list, dict, set, frozenset):
        return True if isinstance(value, origin) else False
    return None


def _type_text(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_PLAIN = (str, int, float, bool, list, tuple, dict, type(None))


def check_types(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (fields of dataclass ``cls``) with each value checked against the field's annotation.

    A value that fits (cheap ``isinstance``-style check) is kept as is; one that does not is converted by
    pydantic where that is lossless (``"3"`` to ``3``, a list to a tuple) or raises
    :class:`~arpo_env.errors.ConfigError` ``Class.field: expected int, got 'abc'``. Only plain-data values
    (str, numbers, bool, None, lists, tuples, dicts) are judged, and only against annotations the cheap
    check understands (builtins, unions, ``Literal``, containers by their outer type); a ``Path`` for a
    ``str`` field, a callable, an object are left to the class. pydantic is imported only for misfits."""
    hints, out = _hints(cls), dict(values)
    for name, value in values.items():
        tp = hints.get(name)
        if tp is None or not isinstance(value, _PLAIN) or _conforms(value, tp) is not False:
            continue  # only plain data (what JSON, YAML and flags give) is judged; a Path, an object: the class's
        import pydantic
        try:
            out[name] = pydantic.TypeAdapter(tp).validate_python(value)
        except pydantic.ValidationError:
            raise ConfigError(f"{cls.__name__}.{name}: expected {_type_text(tp)}, got {value!r}") from None
        except Exception:  # pydantic has no schema for the type: leave it to the class
            continue
    return out


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
        raise ConfigError("\n".join(lines)) from None


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

    A bad flag or value is a :class:`~arpo_env.errors.ConfigError` (a ``ValueError``) carrying tyro's
    message flattened to one line (it names the flag and a close match); ``--help`` raises
    ``SystemExit(0)`` after printing the help."""
    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=list(argv), default=default if default is not None else cls(), prog=prog,
                            registry=_registry())
    except SystemExit as exc:
        if exc.code == 0:  # --help (printed to stdout)
            raise
        message = flatten_tyro_error(err.getvalue()) or f"bad flags {list(argv)}"
        raise ConfigError(_name_the_flag(cls, message, argv)) from None


def _name_the_flag(cls: type, message: str, argv: Sequence[str]) -> str:
    """``TrainConfig.steps: must be >= 0`` (a ``__post_init__`` check) as ``--steps: must be >= 0, got -3``
    when the field is a flag of ``cls`` (``--rollout.alpha`` for a nested dataclass's field)."""
    m = re.match(r"(\w+)\.(\w+): (.*)", message, re.S)
    if not m:
        return message
    owner, name, rest = m.groups()
    prefix = "" if owner == cls.__name__ else next(
        (f"{f}." for f, tp in _hints(cls).items() if getattr(tp, "__name__", None) == owner), None)
    if prefix is None:
        return message
    flag = f"--{prefix}{name}"
    spellings = {flag, flag.replace("_", "-")}
    value = next((a.partition("=")[2] for a in argv if a.partition("=")[0] in spellings and "=" in a), None)
    if value is None:
        value = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in spellings), None)
    got = f", got {value}" if value is not None and "got " not in rest else ""
    return f"{flag.replace('_', '-')}: {rest}{got}"


_BOX = re.compile(r"[\u2500-\u257f]+")


def flatten_tyro_error(text: str) -> str:
    """tyro's boxed error as one line: the message, then ``did you mean --x?`` for its suggestion;
    the help excerpt and "For full helptext" are dropped. Nested parse prefixes are removed."""
    rows = [" ".join(_BOX.sub(" ", line).strip().strip("|").split()) for line in text.splitlines()]
    sections: list[list[str]] = [[]]
    for raw, row in zip(text.splitlines(), rows):
        if re.match(r"[\s|\u2502]*(\u2500{3}|-{3}|\u256d|\u2570|\+-)", raw):  # a rule, a box's top/bottom
            if sections[-1]:
                sections.append([])
        elif row:
            sections[-1].append(row)
    sections = [sec for sec in sections if sec]
    if len(sections) > 1 and len(sections[0]) == 1 and ":" not in sections[0][0]:
        sections = sections[1:]  # a plain-text box's title ("Value error") above its first rule
    if not sections:
        return ""
    message = " ".join(sections[0])
    message = re.sub(r"^(Value error|Unrecognized options|Parsing error|Required options)\s+", "", message)
    message = re.sub(r"^Error parsing [\w.-]+: (?=\w+\.\w+: )", "", message)  # 'TrainConfig.steps: ...' follows
    message = re.sub(r"^Error parsing (--[\w.-]+): invalid literal for (\w+)\(\) with base \d+: (.*)",
                     r"\1: expected an \2, got \3", message)
    message = re.sub(r"^Error parsing (--[\w.-]+): could not convert string to (\w+): (.*)",
                     r"\1: expected a \2, got \3", message)
    message = re.sub(r"^Error parsing (--[\w.-]+): ", r"\1: ", message)
    message = re.sub(r"^Unrecognized options: ", "unknown flags: ", message)
    message = re.sub(r"^Missing argument (?=Missing )", "", message)
    for section in sections[1:]:
        if section and section[0].startswith("Perhaps you meant"):
            flags = [r.split()[0] for r in section[1:] if r.startswith("--")]
            if flags:
                message += f"; did you mean {', '.join(flags[:3])}?"
    return message


def help_text(cls: type, prog: str | None = None) -> str:
    """tyro's help for ``cls``: every flag with its type, default and the field's docstring."""
    import tyro

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        tyro.cli(cls, args=["--help"], prog=prog, registry=_registry())
    return out.getvalue()
