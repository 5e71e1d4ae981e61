"""Crash-safe file writes shared by every stage: write a temporary sibling, then rename onto the target;
and the one resumable JSONL record log (:class:`RecordLog`)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then ``os.replace`` it onto ``path``.

    A crash (or a full disk) while writing leaves ``path`` as it was and removes the temporary file.
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = atomic_write(p, lambda t: t.write_text("hi"))
    >>> p.read_text(), oct(p.stat().st_mode & 0o077) != "0o0"
    ('hi', True)
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any, **dump_kwargs: Any) -> Path:
    """:func:`atomic_write` of ``json.dumps(data)`` (``indent=2`` unless given)."""
    dump_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(data, **dump_kwargs) + "\n")


def json_safe(obj: Any) -> Any:
    """A strict-JSON copy: NaN/inf -> None, tuples -> lists, numpy/torch scalars -> Python numbers.

    >>> json_safe({"a": float("nan"), "b": (1, 2.5)})
    {'a': None, 'b': [1, 2.5]}
    """
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    """Atomically write ``data`` as indented UTF-8 strict JSON (:func:`json_safe`)."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=indent, ensure_ascii=False) + "\n")


class RecordLog:
    """A resumable append-only JSONL log of per-row records, flushed and fsynced line by line.

    A row counts as done once its record is in the log, so a crash loses at most the row in flight.
    A truncated last line (a crash mid-write) is skipped on reading and cut off (``ftruncate`` back
    to the last complete line; the complete lines are never rewritten) before the next append. Any
    other line that is not a JSON object with ``key`` is skipped and counted in ``bad_lines``.

    >>> import tempfile
    >>> log = RecordLog(tempfile.mkdtemp() + "/records.jsonl")
    >>> log.append({"id": "a", "status": "ok"})
    >>> with open(log.path, "a") as f:
    ...     _ = f.write('{"id": "b", "sta')
    >>> log.append({"id": "c"}); [r["id"] for r in log.read()], log.bad_lines
    (['a', 'c'], 0)
    """

    def __init__(self, path: str | Path, key: str = "id") -> None:
        """A log at ``path`` whose records are identified by ``record[key]``."""
        self.path = Path(path)
        self.key = key
        self.bad_lines = 0

    def read(self) -> list[dict]:
        """All well-formed records in file order (bad lines skipped; see the class docstring)."""
        self.bad_lines = 0
        if not self.path.is_file():
            return []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # a truncated last line: not a record (yet)
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if isinstance(rec, dict) and self.key in rec:
                records.append(rec)
            else:
                self.bad_lines += 1
        return records

    def latest(self) -> dict[str, dict]:
        """The last record of each key."""
        return {str(rec[self.key]): rec for rec in self.read()}

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line; flush and fsync before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(json_safe(dict(record)), ensure_ascii=False).encode("utf-8") + b"\n"
        with open(self.path, "a+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a crash left half a line: cut back to the last complete one
                    fh.seek(0)
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
            fh.write(line)  # append mode: always at the (new) end
            fh.flush()
            os.fsync(fh.fileno())


@contextmanager
def output_lock(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold an advisory lock (``fcntl.flock``) on ``folder/.saliency-r1.lock`` for one run.

    A second run on the same folder gets one :class:`~saliency_r1.errors.InputError` naming the
    holder's pid. The lock dies with its process (kill -9 included), so a stale file never blocks.
    Under ``accelerate`` only the main process should take it.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with output_lock(d):
    ...     with output_lock(d):
    ...         pass
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: ...
    """
    import fcntl

    from .errors import InputError

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".saliency-r1.lock"
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise InputError(f"{root} is in use by another {what} (pid {holder}); wait for it to finish "
                             "or pass another output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield root
    finally:
        fh.close()


__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "json_safe", "write_json", "RecordLog",
           "output_lock"]
