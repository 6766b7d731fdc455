"""Strict conversion of plain dicts (from YAML or `--set`) into frozen, validated dataclasses.

Why our own and not a library: every config in memlaw must (1) refuse unknown keys with a
suggestion, (2) name the dotted field and the allowed range in each error, (3) report *all*
errors of a file at once, and (4) stay a plain frozen dataclass that pickles cheaply into Ray
workers. Field ranges and one-line docs live in the field metadata, so help text and error text
come from the same place as the code.

Usage::

    @dataclass(frozen=True)
    class Budget(Config):
        steps: int = spec(300, "optimizer steps", lo=1)

    Budget.from_dict({"steps": 0})   # ConfigError: steps: must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

_MISSING = dataclasses.MISSING
# YAML 1.2 floats in exponent form without a dot (1e-3): PyYAML (YAML 1.1) reads them as strings.
_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")

# Bounds on what an error message quotes (YAML input's own limits: trainables/yaml_input.py).
#: Longest value quoted in an error message; the rest is cut and its length said.
MAX_VALUE_CHARS = 200
#: Longest single problem as printed (a last bound over everything a message may quote).
MAX_PROBLEM_CHARS = 2000
_REPR = reprlib.Repr()  # bounded at every level, so quoting a huge value costs little
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_VALUE_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 20
_REPR.maxlevel = 4


def clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text`, cut to `limit` characters with its full length said, for error messages."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def short_repr(value: Any) -> str:
    """repr(value) for an error message: bounded whatever the value's size, with the size said."""
    if isinstance(value, (str, bytes)) and len(value) > MAX_VALUE_CHARS:
        return f"{value[:MAX_VALUE_CHARS]!r}... ({len(value)} chars)"
    text = clip(_REPR.repr(value))
    if isinstance(value, (list, tuple, dict, set)) and len(value) > _REPR.maxlist:
        text += f" ({len(value)} items)"
    return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the dotted field path and what is allowed."""

    field: str
    message: str

    def __str__(self) -> str:
        text = f"{clip(self.field)}: {self.message}" if self.field else self.message
        return clip(text, MAX_PROBLEM_CHARS)


class ConfigError(ValueError):
    """Raised with every problem found in a config, each naming its field."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def prefixed(self, prefix: str) -> ConfigError:
        return ConfigError([Problem(_join(prefix, p.field), p.message) for p in self.problems])


def spec(
    default: Any = _MISSING,
    doc: str = "",
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    factory: Any = _MISSING,
) -> Any:
    """A dataclass field with a one-line doc and an optional numeric range [lo, hi]."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}
    if factory is not _MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else (prefix or name)


class Config:
    """Mixin for frozen config dataclasses: type and range checks at construction."""

    def __post_init__(self) -> None:
        problems = _check_fields(self)
        try:  # cross-field rules too, so that one run reports every problem of a file
            problems += [p for p in self.cross_checks() if p.field not in {q.field for q in problems}]
        except (TypeError, ValueError, ArithmeticError):
            pass  # a rule that cannot judge out-of-range values; the range problems speak for them
        if problems:
            raise ConfigError(problems)

    def cross_checks(self) -> list[Problem]:
        """Rules that involve several fields; override in subclasses."""
        return []

    @classmethod
    def from_dict(cls, data: Any, prefix: str = ""):
        """Build from a mapping, refusing unknown keys and collecting every problem."""
        return _build(cls, data, prefix)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def field_meta(cls, dotted: str) -> Mapping[str, Any] | None:
        """The metadata (doc, range) of a dotted leaf field such as "method.threshold_margin", or None."""
        node: Any = cls
        *parents, leaf = dotted.split(".")
        for part in parents:
            hints = get_type_hints(node)
            node = _dataclass_in(hints[part]) if part in hints else None
            if node is None:
                return None
        fields = {f.name: f for f in dataclasses.fields(node)}
        return fields[leaf].metadata if leaf in fields and _dataclass_in(get_type_hints(node)[leaf]) is None else None

    @classmethod
    def field_docs(cls, prefix: str = "") -> list[tuple[str, str, Any]]:
        """(dotted name, doc, default) for every leaf field: the source of help text."""
        rows = []
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            name = _join(prefix, f.name)
            sub = _dataclass_in(hints[f.name])
            if sub is not None:
                rows.extend(sub.field_docs(name))
            else:
                default = f.default if f.default is not _MISSING else None
                rows.append((name, f.metadata.get("doc", ""), default))
        return rows


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside `tp` (itself, or X in Optional[X]), else None."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp):
        for arg in get_args(tp):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _build(cls: type, data: Any, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(prefix, f"must be a mapping of keys, got {_describe(data)}")])
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[Problem] = []
    for key in data:
        if key not in fields:
            problems.append(Problem(_join(prefix, str(key)), _unknown_key_message(str(key), fields)))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        path = _join(prefix, name)
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append(Problem(path, "is required"))
            continue
        try:
            kwargs[name] = _coerce(hints[name], data[name], path)
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        # also report the range problems of the fields that did convert: all errors at once
        for name, value in kwargs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                message = range_problem(value, fields[name].metadata)
                if message:
                    problems.append(Problem(_join(prefix, name), message))
        raise ConfigError(problems)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise err.prefixed(prefix) from None


def _unknown_key_message(key: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1) if len(key) <= MAX_VALUE_CHARS else []
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(fields)})"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {short_repr(value)}"


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check `value` against annotation `tp`; returns the value converted (lists to tuples)."""
    sub = _dataclass_in(tp)
    if _is_union(tp):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(non_none[0], value, path)
        for arg in non_none:
            try:
                return _coerce(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError([Problem(path, f"must be one of types {_type_names(non_none)}, got {_describe(value)}")])
    if sub is not None:
        if isinstance(value, sub):
            return value
        return _build(sub, value, path)
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            return _fail(path, f"must be one of {', '.join(map(repr, choices))}, got {short_repr(value)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return _fail(path, f"must be a list, got {_describe(value)}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        return tuple(_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    return _coerce_scalar(tp, value, path)


def _coerce_scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if tp is dict:
        if not isinstance(value, Mapping):
            return _fail(path, f"must be a mapping, got {_describe(value)}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            return _fail(path, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return _fail(path, f"must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _fail(path, f"must be a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            return _fail(path, f"must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"schema: unsupported annotation {tp!r} at {path}")


def _type_names(types_: list[Any]) -> str:
    return " or ".join(getattr(t, "__name__", str(t)) for t in types_)


def _fail(path: str, message: str) -> Any:
    raise ConfigError([Problem(path, message)])


def _check_fields(obj: Any) -> list[Problem]:
    """Range checks from field metadata; runs on every construction, also outside from_dict."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        message = range_problem(value, f.metadata)
        if message:
            problems.append(Problem(f.name, message))
    return problems


def range_problem(value: float, meta: Mapping[str, Any]) -> str | None:
    """The error text if `value` lies outside the field's declared range, else None."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number in {_range_text(meta)}, got {value}"
    too_low = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
    too_high = hi is not None and (value >= hi if meta.get("hi_open") else value > hi)
    if too_low or too_high:
        shown = f"{value:.4g}" if isinstance(value, int) and abs(value) >= 10**16 else str(value)  # 1e308 read as int
        return f"must be in {_range_text(meta)}, got {shown}"
    return None


def _range_text(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    left = "(" if meta.get("lo_open") or lo is None else "["
    right = ")" if meta.get("hi_open") or hi is None else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def set_dotted(tree: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `tree` with dotted fields set ({"adapter.rank": 4}); only the mappings on each
    field's path are copied, so the input is never changed. The one dotted-path setter: `--set`,
    sweep points and exported rows all go through it. Fields joined by "+" take one value together
    ({"seed+data.seed": 1}: a grid axis of replicates that draw a fresh init and fresh targets at once)."""
    out = dict(tree)
    for joined, value in values.items():
        for dotted in joined.split("+") if isinstance(joined, str) else [joined]:
            out = _set_one(out, dotted, value)
    return out


def _set_one(out: dict[str, Any], dotted: Any, value: Any) -> dict[str, Any]:
    """`out` with one dotted field set, copying only the mappings on its path."""
    keys = dotted.split(".") if isinstance(dotted, str) else [dotted]
    node = out
    for k in keys[:-1]:
        child = node.get(k)
        node[k] = dict(child) if isinstance(child, Mapping) else {}
        node = node[k]
    node[keys[-1]] = value
    return out


def canonical_hash(obj: Any) -> str:
    """A stable short hash of a plain (JSON) value: the config hash of records and checkpoints."""
    import hashlib
    import json

    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
