"""Type and range checks of config dataclasses (the engine behind :func:`saliency_r1.config_io.from_dict`).

Every value is checked against its field's annotation (``Optional``, ``Union``, ``list``/``tuple``, ``dict``,
``Literal``, nested dataclasses) and the checks in its metadata (:func:`meta`); a failure is one
:class:`~saliency_r1.errors.InputError` line naming the key path, the value and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from .errors import InputError

T = TypeVar("T")
CHECKS = frozenset({"min", "gt", "max", "lt", "choices", "exclude", "only", "defaults"})
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
MISSING = dataclasses.MISSING


def meta(text: str, **checks: Any) -> dict:
    """Field metadata: the help text and optional checks, e.g. ``field(default=1e-5, metadata=meta("lr", gt=0))``.

    Checks: ``min``/``max`` (inclusive), ``gt``/``lt`` (exclusive), ``choices``, ``exclude`` (values refused),
    ``only`` (the one stage that uses the field: "sft" or "grpo").

    >>> meta("rank", min=1)
    {'help': 'rank', 'min': 1}
    """
    unknown = set(checks) - CHECKS
    if unknown:
        raise TypeError(f"unknown field check(s) {sorted(unknown)}; use {sorted(CHECKS)}")
    return {"help": text, **checks}


def section(cls: type, text: str, **defaults: Any):
    """A nested-section field whose defaults differ per run config: ``section(LoraSection, "LoRA", r=16)``.

    The YAML's keys are merged over ``defaults``, so ``lora: {r: 8}`` keeps the run's other LoRA defaults.

    >>> from saliency_r1.training.grpo_config import GRPORunConfig  # lora = section(LoraSection, ..., r=16, ...)
    >>> GRPORunConfig().lora.r, from_dict(GRPORunConfig, {"lora": {"alpha": 8}}).lora.r
    (16, 16)
    """
    return dataclasses.field(default_factory=lambda: cls(**copy.deepcopy(defaults)),
                             metadata={"help": text, "defaults": defaults})


def one_line(e: Any) -> str:
    """The first line of an error message.

    >>> one_line(ValueError("bad value\\nmore detail"))
    'bad value'
    """
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def show_value(value: Any) -> str:
    """A value as it appears in an error line: its repr, cut at 60 characters.

    >>> show_value("no"), len(show_value("x" * 100))
    ("'no'", 60)
    """
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def join_path(path: str, name: str) -> str:
    """``path.name`` (``name`` alone at the top level).

    >>> join_path("", "lora"), join_path("lora", "r")
    ('lora', 'lora.r')
    """
    return f"{path}.{name}" if path else name


def is_union(typ: Any) -> bool:
    """Whether an annotation is a union (``Optional[X]``, ``X | None``, ``Union[X, Y]``).

    >>> is_union(typing.Optional[int]), is_union(int | str), is_union(list[int])
    (True, True, False)
    """
    return typing.get_origin(typ) in (Union, types.UnionType)


def type_name(typ: Any) -> str:
    """A short readable name of an annotation.

    >>> type_name(typing.Optional[list[str]])
    'list[str] | None'
    """
    if typ is type(None):
        return "None"
    if is_union(typ):
        args = typing.get_args(typ)
        return " | ".join(type_name(a) for a in sorted(args, key=lambda a: a is type(None)))
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(typ, "__name__", str(typ))


def _expected(typ: Any) -> tuple[str, str]:
    """(what was expected, how to fix it) for a type error."""
    if typ is bool:
        return "not true or false", "write true or false, unquoted"
    if typ is int:
        return "not an integer", "write a whole number, e.g. 8"
    if typ is float:
        return "not a finite number", "write a number, e.g. 1e-5 or 0.5"
    if typ is str:
        return "not a string", "write text (quote it if YAML reads it as a number or bool)"
    origin = typing.get_origin(typ) or typ
    if origin in (list, tuple):
        return f"not a {type_name(typ)}", "write a list, e.g. [a, b]"
    if origin is dict or dataclasses.is_dataclass(typ):
        return f"not a mapping ({type_name(typ)})", "write key: value pairs"
    return f"not {type_name(typ)}", f"give a {type_name(typ)}"


def _fail(label: str, path: str, value: Any, problem: str, fix: str) -> InputError:
    return InputError(f"{label}: {path} = {show_value(value)} is {problem}; {fix}")


def _convert(typ: Any, value: Any, path: str, label: str, md: Mapping) -> Any:
    """``value`` checked against ``typ`` (and converted: numeric strings to float, lists to tuples)."""
    if typ is Any or typ is object:
        return value
    if is_union(typ):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _convert(members[0], value, path, label, md)
        for m in members:
            try:
                return _convert(m, value, path, label, md)
            except InputError:
                continue
        raise _fail(label, path, value, f"not {type_name(typ)}", f"give a {type_name(typ)}")
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Literal:
        if value in args:
            return value
        raise _fail(label, path, value, "not a valid choice", f"use one of {', '.join(map(str, args))}")
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if isinstance(value, Mapping):
            return _build(typ, {**md.get("defaults", {}), **value}, label, path)
    elif typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    elif typ in (list, tuple) or origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            return _sequence(typ, value, path, label)
    elif typ is dict or origin is dict:
        if isinstance(value, Mapping):
            kt, vt = args or (Any, Any)
            return {_convert(kt, k, f"{path} key", label, {}): _convert(vt, v, join_path(path, str(k)), label, {})
                    for k, v in value.items()}
    elif isinstance(typ, type):
        if isinstance(value, typ):
            return value
    else:
        return value  # an annotation this checker does not know: passed through
    raise _fail(label, path, value, *_expected(typ))


def _sequence(typ: Any, value: list | tuple, path: str, label: str) -> list | tuple:
    origin, args = typing.get_origin(typ) or typ, typing.get_args(typ)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _fail(label, path, value, f"not {len(args)} values", f"write {len(args)} values: {type_name(typ)}")
        return tuple(_convert(a, v, f"{path}[{i}]", label, {}) for i, (a, v) in enumerate(zip(args, value)))
    elem = args[0] if args else Any
    items = [_convert(elem, v, f"{path}[{i}]", label, {}) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _check_range(value: Any, md: Mapping, path: str, label: str, given: Any) -> None:
    """Raise when ``value`` (converted) fails the metadata checks; the message shows the value as ``given``."""
    if value is None:
        return
    if "choices" in md and value not in md["choices"]:
        raise _fail(label, path, given, "not a valid choice", f"use one of {', '.join(map(str, md['choices']))}")
    if value in md.get("exclude", ()) and not isinstance(value, bool):
        raise _fail(label, path, given, "not allowed", _range_text(md))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    bad = (("min" in md and value < md["min"]) or ("gt" in md and value <= md["gt"])
           or ("max" in md and value > md["max"]) or ("lt" in md and value >= md["lt"]))
    if bad:
        raise _fail(label, path, given, "out of range", _range_text(md))


def range_words(md: Mapping) -> list[str]:
    """The range checks of field metadata as words.

    >>> range_words({"min": 0, "lt": 1, "help": "dropout"})
    ['>= 0', '< 1']
    """
    return [f"{op} {md[k]}" for k, op in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")) if k in md]


def _range_text(md: Mapping) -> str:
    parts = range_words(md)
    text = "use a value " + " and ".join(parts) if parts else "use another value"
    if md.get("exclude"):
        text += f" other than {', '.join(map(str, md['exclude']))}"
    return text


def check_value(typ: Any, value: Any, path: str, label: str = "config", metadata: Mapping | None = None) -> Any:
    """``value`` type-checked against ``typ`` and range-checked against field ``metadata`` (see :func:`meta`);
    returns the converted value (``"1e-3"`` -> ``0.001`` for a float) or raises one :class:`InputError` line.

    >>> check_value(float, "1e-3", "grpo.learning_rate", metadata={"gt": 0})
    0.001
    >>> check_value(bool, "no", "lora.enabled")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: config: lora.enabled = 'no' is not true or false; write true or false, unquoted
    """
    md = metadata or {}
    converted = _convert(typ, value, path, label, md)
    _check_range(converted, md, path, label, value)
    return converted


def _build(cls: type[T], data: Mapping, label: str, path: str) -> T:
    if not isinstance(data, Mapping):
        raise _fail(label, path or "the config", data, *_expected(cls))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"did you mean {join_path(path, close[0])}? " if close else ""
        raise InputError(f"{label}: unknown key {join_path(path, key)}; {hint}valid keys"
                         f"{' of ' + path if path else ''}: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = check_value(hints[name], data[name], join_path(path, name), label, f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise InputError(f"{label}: {join_path(path, name)} is missing; set it ({f.metadata.get('help', name)})")
    try:
        return cls(**kwargs)
    except InputError as e:
        raise InputError(f"{label}: {path or 'config'}: {e}") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{label}: {path or 'config'}: {one_line(e)}; fix these values") from None


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking key names, types and ranges (module docstring).
    Nested sections declared with :func:`section` merge the mapping over their own defaults.

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = dataclasses.field(default=1e-5, metadata=meta("learning rate", gt=0))
    >>> from_dict(C, {"lr": "1e-3"})
    C(lr=0.001)
    >>> from_dict(C, {"lr": -1})
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: config: lr = -1 is out of range; use a value > 0
    """
    return _build(cls, data, where, "")


def field_types(cls: type) -> dict[str, tuple[Any, Mapping]]:
    """``{name: (annotation, metadata)}`` of a dataclass's init fields.

    >>> from saliency_r1.data.sources import DataSource
    >>> field_types(DataSource)["limit"][0]
    typing.Optional[int]
    """
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(cls) if f.init}


def section_class(typ: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``Optional[X]``), or None.

    >>> from saliency_r1.rewards.judge import JudgeConfig
    >>> section_class(typing.Optional[JudgeConfig]).__name__, section_class(int)
    ('JudgeConfig', None)
    """
    if is_union(typ):
        members = [a for a in typing.get_args(typ) if a is not type(None)]
        typ = members[0] if len(members) == 1 else None
    return typ if dataclasses.is_dataclass(typ) else None


__all__ = ["meta", "section", "from_dict", "check_value", "type_name", "one_line", "section_class", "field_types",
           "is_union", "join_path", "show_value", "range_words", "MISSING", "CHECKS"]
