"""Crash-safe file writes shared by every stage: write a temporary sibling, then rename onto the target."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
import json
from contextlib import contextmanager
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


__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "output_lock"]
