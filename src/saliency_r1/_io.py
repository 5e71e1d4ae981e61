"""Crash-safe file writes shared by every stage: write a temporary sibling, then rename onto the target; the one
resumable JSONL record log (:class:`RecordLog`); one lock per output folder; failed writes of any exception type
(``OSError``, torch's ``RuntimeError``, safetensors' ``SafetensorError``) as one line naming the file and the
errno's meaning."""

from __future__ import annotations

import errno as errno_mod
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import SaliencyR1Error, WriteError


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
    return atomic_write_json(path, json_safe(data), indent=indent, ensure_ascii=False)


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


# ---------------------------------------------------------------- failed writes as one line
_WRITE_FIX = {errno_mod.ENOSPC: "free disk space or choose another --out",
              errno_mod.EDQUOT: "free space within your disk quota or choose another --out",
              errno_mod.EROFS: "the file system is read-only; choose another --out",
              errno_mod.EACCES: "check the folder's permissions or choose another --out",
              errno_mod.EPERM: "check the folder's permissions or choose another --out",
              errno_mod.EEXIST: "something is in the way; move it or choose another --out",
              errno_mod.ENOTDIR: "a file is in the way of a folder; move it or choose another --out",
              errno_mod.EISDIR: "a folder is in the way of a file; move it or choose another --out",
              errno_mod.ENAMETOOLONG: "choose a shorter --out path",
              errno_mod.EIO: "the disk reported an I/O error; check it or choose another --out"}
_ERRNO_IN_TEXT = re.compile(r"(?:code|errno|os error)[:= ]+(\d+)", re.IGNORECASE)
LOW_SPACE = 1 << 20  # bytes: a file system with less free is taken as full when the error names no errno


def error_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, or the one a torch ``RuntimeError`` / ``SafetensorError`` message names.

    >>> error_errno(OSError(28, "No space left on device"))
    28
    >>> error_errno(RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "No space left" })'))
    28
    >>> error_errno(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    28
    """
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    text = str(exc)
    m = _ERRNO_IN_TEXT.search(text)
    if m:
        return int(m.group(1))
    for code, name in ((errno_mod.ENOSPC, "No space left"), (errno_mod.EDQUOT, "quota exceeded"),
                       (errno_mod.EROFS, "Read-only file system")):
        if name.lower() in text.lower():
            return code
    return None


def probe_errno(path: str | Path) -> int | None:
    """What the file system of ``path`` (or its nearest existing parent) says: EROFS when mounted read-only,
    ENOSPC when under :data:`LOW_SPACE` bytes are free, else None. For errors that name no errno (torch.save's
    ``RuntimeError: ... unexpected pos``).

    >>> probe_errno("/") in (None, 28, 30)
    True
    """
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return errno_mod.EROFS
    if st.f_bavail * st.f_frsize < LOW_SPACE:
        return errno_mod.ENOSPC
    return None


def write_error_line(path: str | Path, exc: BaseException) -> str:
    """One line naming the file, the errno's meaning and the fix (the errno from the error, else from the file
    system: :func:`probe_errno`).

    >>> write_error_line("out/report.html", OSError(30, "Read-only file system"))
    'could not write out/report.html: Read-only file system (EROFS); the file system is read-only; choose another --out'
    >>> write_error_line("out/x", OSError(17, "File exists")).split(": ", 1)[1]
    'File exists (EEXIST); something is in the way; move it or choose another --out'
    """
    code = error_errno(exc)
    if code is None:
        code = probe_errno(path)
    if code is None:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        return f"could not write {path}: {why}; check the disk and choose another --out"
    name = errno_mod.errorcode.get(code, str(code))
    fix = _WRITE_FIX.get(code, "check the disk and choose another --out")
    return f"could not write {path}: {os.strerror(code)} ({name}); {fix}"


def is_write_failure(exc: BaseException) -> bool:
    """OSError, torch's ``RuntimeError`` from a failed ``torch.save``, ``safetensors``' ``SafetensorError``.

    >>> is_write_failure(RuntimeError("x")), is_write_failure(ValueError("x"))
    (True, False)
    """
    if isinstance(exc, SaliencyR1Error):
        return False
    return isinstance(exc, (OSError, RuntimeError)) or "Safetensor" in type(exc).__name__


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write of ``path`` (of any of the types above) into one :class:`WriteError` line.

    >>> with writing("out/x.bin"):
    ...     raise OSError(28, "No space left on device")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.WriteError: could not write out/x.bin: No space left on device (ENOSPC); free disk space ...
    """
    try:
        yield
    except Exception as e:
        if not is_write_failure(e):
            raise
        raise WriteError(write_error_line(path, e)) from e


# the functions of torch, safetensors, transformers and TRL that write a checkpoint, and their path arguments
_SAVE_FUNCS = frozenset({"save", "save_file", "_save", "_save_checkpoint", "save_model", "save_pretrained",
                         "save_to_json", "_save_optimizer_and_scheduler", "_save_rng_state", "_save_scaler",
                         "save_state", "atomic_write"})
_PATH_ARGS = ("filename", "f", "json_path", "save_directory", "output_dir", "path", "file_path")


def failed_save_path(exc: BaseException) -> str | None:
    """The file (or folder) a checkpoint save was writing when ``exc`` was raised: the path argument of the
    innermost save function on the traceback; None when no save function is on it (not a write failure).

    >>> def save(f):
    ...     raise RuntimeError("unexpected pos 576 vs 534")
    >>> try:
    ...     save("run/checkpoint-3/optimizer.pt")
    ... except RuntimeError as e:
    ...     failed_save_path(e)
    'run/checkpoint-3/optimizer.pt'
    """
    found = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name in _SAVE_FUNCS:
            for name in _PATH_ARGS:
                value = frame.f_locals.get(name)
                if isinstance(value, (str, os.PathLike)) and str(value):
                    found = str(value)
                    break
        tb = tb.tb_next
    return found


@contextmanager
def checkpoint_writes(output_dir: str | Path) -> Iterator[None]:
    """Around a training loop: a failed checkpoint write of any type becomes one :class:`WriteError` line
    naming the file (what was half written stays incomplete, and a resume sets it aside). Other errors
    pass unchanged.

    >>> import torch, tempfile
    >>> with checkpoint_writes("run"):
    ...     torch.save({}, tempfile.mkdtemp() + "/no/such/folder/x.pt")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.WriteError: could not write ...x.pt: ...
    """
    try:
        yield
    except Exception as e:
        where = failed_save_path(e) if is_write_failure(e) else None
        if where is None:
            raise
        raise WriteError(write_error_line(where, e)) from e


__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "json_safe", "write_json", "RecordLog",
           "output_lock", "error_errno", "probe_errno", "write_error_line", "is_write_failure", "writing",
           "failed_save_path", "checkpoint_writes"]
