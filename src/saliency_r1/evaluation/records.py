"""Resumable per-example records: one JSON object per line in ``records.jsonl`` of the output folder.

Each finished example is appended (and flushed to disk) as soon as it is scored; a restarted run
reads the file, skips the ids it holds and appends the rest. The log is the package's one
:class:`saliency_r1._io.RecordLog`: a truncated last line (a run killed mid-write) is skipped and cut
off before the next append. ``run.json`` keeps the settings of the run: a restart with other settings
is refused (their records would not mix) unless only ``n`` changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .._io import RecordLog, json_safe, write_json
from ..errors import InputError

RECORDS = "records.jsonl"
SETTINGS = "run.json"
_FREE = ("n",)  # settings a restart may change


def read_records(out_dir: str | Path) -> list[dict]:
    """The records already written (empty when there are none; :class:`saliency_r1._io.RecordLog`).

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); append_record(d, {"id": "a"}); read_records(d)
    [{'id': 'a'}]
    """
    return RecordLog(Path(out_dir) / RECORDS).read()


def append_record(out_dir: str | Path, record: dict) -> None:
    """Append one record as a JSON line and flush it to disk (:class:`saliency_r1._io.RecordLog`)."""
    RecordLog(Path(out_dir) / RECORDS).append(record)


def check_settings(out_dir: str | Path, settings: dict) -> None:
    """Write ``run.json``, or check that a previous run in ``out_dir`` used the same settings.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); check_settings(d, {"n": 1, "blank": "black"}); check_settings(d, {"n": 5, "blank": "black"})
    """
    path = Path(out_dir) / SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    new = json_safe(settings)
    if path.is_file() and (Path(out_dir) / RECORDS).is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(old) | set(new) if k not in _FREE and old.get(k) != new.get(k))
        if diff:
            raise InputError(f"{out_dir} holds a run with other settings ({', '.join(diff)}); re-run with the "
                             "same settings to resume, or pass another --out")
    write_json(path, new)


def pending(samples: list[dict], done: set[str], n: int | None) -> Iterator[dict]:
    """The first ``n`` samples (all when None) whose id is not in ``done``.

    >>> [s["id"] for s in pending([{"id": "a"}, {"id": "b"}, {"id": "c"}], {"a"}, 2)]
    ['b']
    """
    for s in samples[:n] if n is not None else samples:
        if str(s["id"]) not in done:
            yield s


__all__ = ["RECORDS", "SETTINGS", "read_records", "append_record", "check_settings", "pending", "write_json"]
