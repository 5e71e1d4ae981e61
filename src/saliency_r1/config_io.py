"""Configs are one dataclass per concern, with help text, readable from YAML (TRL-style ``--config``).

A YAML file maps section names to dataclass fields (``{"sft": {...}, "model": {...}}``) or holds one
flat mapping. Unknown keys are an error naming the key and the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import InputError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is one clear error.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"; _ = p.write_text("lr: 0.1\\n")
    >>> read_yaml(p)
    {'lr': 0.1}
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {p} does not exist; pass --config with a YAML file (see configs/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {p} must hold a mapping of keys to values")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking key names (nested dataclasses allowed).

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = 1e-5
    >>> from_dict(C, {"lr": 0.5})
    C(lr=0.5)
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        typ = hints.get(key)
        if dataclasses.is_dataclass(typ) and isinstance(value, dict):
            value = from_dict(typ, value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def to_dict(obj) -> dict[str, Any]:
    """A dataclass (nested) as a plain dict, e.g. to write next to a checkpoint.

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = 1e-5
    >>> to_dict(C())
    {'lr': 1e-05}
    """
    return dataclasses.asdict(obj)


def packaged_config(name: str) -> Path:
    """The path of a config shipped with the project, e.g. ``packaged_config("sft_shapes.yaml")`` or
    ``packaged_config("variants/think.yaml")``; a missing name is one clear error.

    Every caller finds configs through this one function (the demo included), so where they live can
    change in one place.

    >>> packaged_config("sft_shapes.yaml").name
    'sft_shapes.yaml'
    """
    root = Path(__file__).resolve().parents[2] / "configs"
    path = root / name
    if not path.is_file():
        raise InputError(f"no packaged config {name!r} under {root}; reinstall saliency-r1")
    return path


def help_text(cls) -> str:
    """One line per field: name, default and the ``metadata["help"]`` text."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        lines.append(f"  {f.name} = {default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


__all__ = ["read_yaml", "from_dict", "to_dict", "help_text", "packaged_config"]
