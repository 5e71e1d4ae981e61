"""Configs are one dataclass per concern, with help text, readable from YAML (TRL-style ``--config``).

A YAML file maps section names to dataclass fields (``{"train": {...}, "model": {...}}``); ``extends: other.yaml``
deep-merges it over another file (relative to the including file). :func:`from_dict` checks every value
against its field's annotation (``Optional``, ``Union``, ``list``/``tuple``, ``dict``, ``Literal``, nested
dataclasses) and the checks in the field's metadata (:func:`meta`: ``min``, ``gt``, ``max``, ``lt``,
``choices``, ``exclude``); every failure is one :class:`~saliency_r1.errors.InputError` line naming the key path,
the value and the fix. Rules: bools are ``true``/``false`` only (never ``"no"`` or ``0``); floats accept
numbers and numeric strings such as ``"1e-3"`` (PyYAML reads ``1e-3`` without a dot as a string) and must be
finite; ints must be integers; unknown keys are an error that names the valid ones.

Command-line overrides (:func:`apply_overrides`, :func:`parse_override`) use dotted names
(``grpo.learning_rate``); a bare name is a top-level field or a field of the run's stage section
(``stage_section`` class attribute: ``train`` for SFT, ``grpo`` for GRPO).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ._config_types import (MISSING, check_value, field_types, from_dict, is_union, join_path, meta, one_line,
                            range_words, section, section_class, show_value, type_name)
from .errors import InputError

T = TypeVar("T")


# ---------------------------------------------------------------- reading files
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, malformed, empty or non-mapping file is one clear error.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"; _ = p.write_text("lr: 0.1\\n")
    >>> read_yaml(p)
    {'lr': 0.1}
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {p} does not exist; pass --config with a YAML file (see configs/)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"config file {p} is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise InputError(f"config file {p} is not valid YAML ({one_line(e)}); fix the syntax") from None
    if data is None:
        raise InputError(f"config file {p} is empty; write the run's sections in it (see the packaged examples)")
    if not isinstance(data, dict):
        raise InputError(f"config file {p} holds a {type(data).__name__}, not a mapping of keys to values; "
                         "write `key: value` lines")
    return data


def packaged_root() -> Path:
    """The folder of the configs shipped inside the package (``saliency_r1/configs``).

    >>> packaged_root().parts[-2:]
    ('saliency_r1', 'configs')
    """
    return Path(str(importlib.resources.files("saliency_r1") / "configs"))


def packaged_names() -> list[str]:
    """The names :func:`packaged_config` knows, e.g. ``['grpo_shapes.yaml', ..., 'variants/zero.yaml']``.

    >>> "variants/think.yaml" in packaged_names()
    True
    """
    root = packaged_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def packaged_config(name: str) -> Path:
    """The path of a config shipped with the package, e.g. ``packaged_config("sft_shapes.yaml")`` or
    ``packaged_config("variants/think.yaml")``; a missing name is one clear error.

    Found through ``importlib.resources``, so a non-editable install works; every caller (the demo
    included) finds configs through this one function.

    >>> packaged_config("sft_shapes.yaml").name
    'sft_shapes.yaml'
    """
    path = packaged_root().joinpath(*name.split("/"))
    if not path.is_file():
        raise InputError(f"no packaged config {name!r}; packaged: {', '.join(packaged_names())}")
    return path


def find_config(path: str | Path) -> Path:
    """``path`` when it is a file; else, for a relative path, the packaged config of that name (a leading
    ``configs/`` is dropped, so ``configs/sft_shapes.yaml`` works from any directory).

    >>> find_config("configs/variants/zero.yaml") == packaged_config("variants/zero.yaml")
    True
    """
    p = Path(path)
    if p.is_file():
        return p
    rel = p.as_posix()
    if not p.is_absolute():
        rel = rel[len("configs/"):] if rel.startswith("configs/") else rel
        if rel in packaged_names():
            return packaged_config(rel)
    raise InputError(f"config file {p} does not exist; pass --config with a YAML file or a packaged one "
                     f"({', '.join(packaged_names())})")


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_config(path: str | Path, _seen: tuple = ()) -> dict[str, Any]:
    """A run YAML as a dict, with ``extends:`` chains resolved (paths relative to the including file).

    >>> read_config("configs/variants/think.yaml")["rewards"]["variant"]
    'think'
    """
    p = find_config(path).resolve()
    if p in _seen:
        raise InputError(f"config {p} extends itself through {' -> '.join(map(str, _seen))}; break the cycle")
    data = read_yaml(p)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise InputError(f"{p}: extends = {show_value(parent)} is not a file name; write extends: other.yaml")
    return _merge(read_config(p.parent / parent, _seen + (p,)), data)


# ---------------------------------------------------------------- overrides
def leaf_fields(cls: type, prefix: str = "", sections: bool = False) -> list[tuple[str, Any, Mapping]]:
    """``(dotted name, type, metadata)`` of every field that is not a section, sections recursed (with
    ``sections``, each section's own entry too, before its fields).

    >>> from saliency_r1.training.grpo_config import GRPORunConfig
    >>> [name for name, _, _ in leaf_fields(GRPORunConfig)][:4]
    ['name', 'output_dir', 'resume', 'model.path']
    """
    out = []
    for name, (typ, md) in field_types(cls).items():
        sub = section_class(typ)
        if sub is not None:
            out.extend([(join_path(prefix, name), typ, md)] if sections else [])
            out.extend(leaf_fields(sub, join_path(prefix, name), sections))
        else:
            out.append((join_path(prefix, name), typ, md))
    return out


def resolve_key(cls: type, key: str) -> tuple[str, Any, Mapping]:
    """``(dotted path, type, metadata)`` of an override key; a bare name is a top-level field or one of the
    stage section's (``cls.stage_section``); a key under a ``dict`` field names one entry of it.

    >>> from saliency_r1.training.grpo_config import GRPORunConfig
    >>> resolve_key(GRPORunConfig, "learning_rate")[0], resolve_key(GRPORunConfig, "lora.r")[0]
    ('grpo.learning_rate', 'lora.r')
    """
    parts = str(key).split(".")
    stage = getattr(cls, "stage_section", None)
    if len(parts) == 1 and parts[0] not in field_types(cls) and stage is not None:
        parts = [stage, parts[0]]
    node, path = cls, []
    for i, part in enumerate(parts):
        fields = field_types(node)
        if part not in fields:
            names = [n for n, _, _ in leaf_fields(cls)]
            close = difflib.get_close_matches(".".join(parts), names, n=1) or difflib.get_close_matches(
                part, [n.rsplit(".", 1)[-1] for n in names], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise InputError(f"unknown override {key}; {hint}any config field can be set as --section.field "
                             "(see `saliency-r1 train <stage> --help`)")
        typ, md = fields[part]
        path.append(part)
        sub = section_class(typ)
        rest = parts[i + 1:]
        if not rest:
            return ".".join(path), typ, md
        if sub is not None:
            node = sub
            continue
        if typ is dict or typing.get_origin(typ) is dict:
            vt = (typing.get_args(typ) or (Any, Any))[1]
            return ".".join(path + rest), vt, {}
        raise InputError(f"unknown override {key}: {'.'.join(path)} is a {type_name(typ)}, not a section; "
                         f"set it as --{'.'.join(path)} VALUE")
    raise InputError(f"empty override name {key!r}; use --section.field VALUE")


def _accepts_str(typ: Any) -> bool:
    if is_union(typ):
        return any(_accepts_str(a) for a in typing.get_args(typ))
    return typ is str or typ is Any


def parse_override(cls: type, key: str, raw: str, label: str = "command line") -> tuple[str, Any]:
    """A command-line value read as a YAML scalar (``2e-5``, ``true``, ``null``, ``[q_proj, v_proj]``,
    ``{k: v}``), then type-checked; text fields keep the raw text when YAML reads something else.

    >>> from saliency_r1.training.grpo_config import GRPORunConfig
    >>> parse_override(GRPORunConfig, "lora.target_modules", "[q_proj, k_proj]")
    ('lora.target_modules', ['q_proj', 'k_proj'])
    >>> parse_override(GRPORunConfig, "output_dir", "2024")
    ('output_dir', '2024')
    """
    path, typ, md = resolve_key(cls, key)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        if not _accepts_str(typ):
            raise InputError(f"{label}: --{path} {show_value(raw)} is not valid YAML ({one_line(e)}); "
                             "quote the value or fix its syntax") from None
        value = raw
    if section_class(typ) is not None:
        return path, value  # a whole section: checked when the config is built
    try:
        return path, check_value(typ, value, path, label, md)
    except InputError:
        if not _accepts_str(typ) or value == raw:
            raise
        return path, check_value(typ, raw, path, label, md)


def apply_overrides(cls: type, data: Mapping[str, Any], overrides: Mapping[str, Any],
                    label: str = "override") -> dict[str, Any]:
    """``data`` (a config mapping) with ``{"grpo.learning_rate": 2e-5, "max_steps": 5, ...}`` applied; each
    value is checked against its field first, so an error names the override. A mapping given for a section
    is merged into it.

    >>> from saliency_r1.training.grpo_config import GRPORunConfig
    >>> apply_overrides(GRPORunConfig, {"grpo": {"beta": 0.1}}, {"max_steps": 2, "grpo.beta": 0.0})
    {'grpo': {'beta': 0.0, 'max_steps': 2}}
    """
    out = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        path, typ, md = resolve_key(cls, key)
        is_section = section_class(typ) is not None
        if not is_section:
            value = check_value(typ, value, path, label, md)
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        if is_section and isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            node[leaf] = _merge(node[leaf], value)
        else:
            node[leaf] = copy.deepcopy(value)
    return out


def load_run(cls: type[T], path: str | Path, overrides: Mapping[str, Any] | None = None) -> T:
    """A run config from a YAML file (``extends`` resolved) with ``overrides`` applied, fully checked.

    >>> from saliency_r1.training.grpo_config import GRPORunConfig
    >>> load_run(GRPORunConfig, "configs/variants/pure.yaml", {"beta": "1e-2"}).grpo.beta
    0.01
    """
    data = apply_overrides(cls, read_config(path), overrides or {})
    return from_dict(cls, data, where=str(path))


def to_dict(obj) -> dict[str, Any]:
    """A dataclass (nested) as a plain dict, e.g. to write next to a checkpoint.

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = 1e-5
    >>> to_dict(C())
    {'lr': 1e-05}
    """
    return dataclasses.asdict(obj)


# ---------------------------------------------------------------- help
def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _checks_text(md: Mapping) -> str:
    ranges = range_words(md)
    parts = [" and ".join(ranges)] if ranges else []
    if md.get("exclude"):
        parts.append("not " + ", ".join(map(str, md["exclude"])))
    if md.get("choices"):
        parts.append("one of " + ", ".join(map(str, md["choices"])))
    if md.get("only"):
        parts.append(f"{md['only'].upper()} only")
    return "; ".join(parts)


def help_text(cls: type, prefix: str = "", defaults: Mapping[str, Any] | None = None) -> str:
    """One line per field, sections recursed: dotted name, type, default, checks and the help text
    (a section's own defaults, from :func:`section`, shown where they replace the field's).

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = dataclasses.field(default=1e-5, metadata=meta("learning rate", gt=0))
    >>> print(help_text(C))
      lr (float, default 1e-05, > 0): learning rate
    """
    given = defaults or {}
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        name, typ = join_path(prefix, f.name), hints[f.name]
        default = given[f.name] if f.name in given else _default_of(f)
        sub = section_class(typ)
        args = typing.get_args(typ)
        elem = args[0] if typing.get_origin(typ) is list and args else None
        if sub is not None and default is not None:
            lines.append(f"  {name}: {f.metadata.get('help', '')}")
            lines.append(help_text(sub, name, f.metadata.get("defaults")))
            continue
        shown = "required" if default is MISSING else f"default {show_value(default)}"
        checks = _checks_text(f.metadata)
        lines.append(f"  {name} ({type_name(typ)}, {shown}{', ' + checks if checks else ''}): "
                     f"{f.metadata.get('help', '')}")
        if sub is not None:  # an optional section, off by default
            lines.append(help_text(sub, name))
        elif dataclasses.is_dataclass(elem):
            lines.append(help_text(elem, name + "[]"))
    return "\n".join(lines)


__all__ = ["read_yaml", "read_config", "find_config", "from_dict", "to_dict", "help_text", "packaged_config",
           "packaged_names", "packaged_root", "meta", "section", "check_value", "apply_overrides", "parse_override",
           "resolve_key", "leaf_fields", "section_class", "load_run", "type_name", "one_line"]
