"""Resumable per-example records: one JSON object per line in ``records.jsonl`` of the output folder.

Each finished example is appended (and flushed to disk) as soon as it is scored; a restarted run
reads the file, skips the ids it holds and appends the rest. A truncated last line (a run killed
mid-write) is dropped. ``run.json`` keeps the settings of the run: a restart with other settings
is refused (their records would not mix) unless only ``n`` changed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

from .._io import atomic_write_text
from ..errors import InputError

RECORDS = "records.jsonl"
SETTINGS = "run.json"
_FREE = ("n",)  # settings a restart may change


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_records(out_dir: str | Path) -> list[dict]:
    """The records already written (empty when there are none); a broken last line is ignored.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); append_record(d, {"id": "a"}); read_records(d)
    [{'id': 'a'}]
    """
    path = Path(out_dir) / RECORDS
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if k != len(lines) - 1:
                raise InputError(f"{path} line {k + 1} is not JSON; delete that line or the file to resume") from None
    return out


def append_record(out_dir: str | Path, record: dict) -> None:
    """Append one record as a JSON line and flush it to disk."""
    path = Path(out_dir) / RECORDS
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text and not text.endswith("\n"):  # a truncated last line: drop it before appending
        atomic_write_text(path, text[:text.rfind("\n") + 1])  # never a half-rewritten records file
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def check_settings(out_dir: str | Path, settings: dict) -> None:
    """Write ``run.json``, or check that a previous run in ``out_dir`` used the same settings.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); check_settings(d, {"n": 1, "blank": "black"}); check_settings(d, {"n": 5, "blank": "black"})
    """
    path = Path(out_dir) / SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    new = _clean(settings)
    if path.is_file() and (Path(out_dir) / RECORDS).is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(old) | set(new) if k not in _FREE and old.get(k) != new.get(k))
        if diff:
            raise InputError(f"{out_dir} holds a run with other settings ({', '.join(diff)}); re-run with the "
                             "same settings to resume, or pass another --out")
    atomic_write_text(path, json.dumps(new, indent=2) + "\n")


def pending(samples: list[dict], done: set[str], n: int | None) -> Iterator[dict]:
    """The first ``n`` samples (all when None) whose id is not in ``done``.

    >>> [s["id"] for s in pending([{"id": "a"}, {"id": "b"}, {"id": "c"}], {"a"}, 2)]
    ['b']
    """
    for s in samples[:n] if n is not None else samples:
        if str(s["id"]) not in done:
            yield s


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN -> null) through a temporary file."""
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, ensure_ascii=False) + "\n")


__all__ = ["RECORDS", "SETTINGS", "read_records", "append_record", "check_settings", "pending", "write_json"]
