"""Helpers shared by CLI commands: quiet libraries, atomic files, JSONL input rows, a resumable
JSONL record log, and summary tables (markdown + JSON).

The record log (:class:`saliency_r1._io.RecordLog`, shared with the evaluation) is the source of truth
for resuming a batch: a row counts as done only once its record is in the log.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._io import RecordLog, atomic_write_text, json_safe, output_lock, write_error_line, write_json, writing
from ..errors import InputError, WriteError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def quiet_libraries(debug: bool = False) -> None:
    """Silence transformers / hub progress bars and warnings (kept with ``--debug``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if debug:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def safe_name(text: str, limit: int = 120) -> str:
    """A file-system-safe directory name for an example id (``a/b c`` -> ``a_b_c``).

    >>> safe_name("shapes/test 1")
    'shapes_test_1'
    """
    name = _SAFE.sub("_", str(text)).strip("._")[:limit]
    return name or "_"


def one_line(text: Any, limit: int = 160) -> str:
    """``text`` on one line (newlines shown as ``\\n``), cut to ``limit`` characters.

    >>> one_line("a\\nb", 10)
    'a\\\\nb'
    """
    flat = str(text).replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Yield ``(line number, row dict or None, problem or None)`` for each non-blank line.

    A line that is not a JSON object is yielded with its problem rather than raised: a batch skips
    it and goes on. A missing or unreadable file is an :class:`InputError`.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"batch file {p} does not exist; pass a JSONL file with one example per line")
    with open(p, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield number, None, f"malformed JSON ({e.msg} at column {e.colno}); fix or delete the line"
                continue
            if not isinstance(row, dict):
                yield number, None, f"a JSON {type(row).__name__}, not an object; write one {{...}} per line"
                continue
            yield number, row, None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clear_leftovers(final: Path) -> None:
    """Folders a killed swap left next to ``final``: an ``.old-`` one comes back if ``final`` is gone
    (the kill fell between the two renames); the rest of dead processes' are removed."""
    for p in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, pid = p.name[len(final.name) + 2:].rpartition("-")
        if kind not in ("new", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not final.exists():
            os.replace(p, final)
        else:
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh sibling folder to write into; on success swap it in for ``final``.

    The swap renames the old ``final`` aside, renames the new folder in, then removes the old one,
    so ``final`` is at every moment either the old complete output or the new complete one. On any
    exception the new folder is removed and ``final`` is untouched; write failures become one
    :class:`WriteError` line.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "out"
    >>> with staged_dir(d) as tmp:
    ...     _ = (tmp / "a.txt").write_text("new")
    >>> sorted(p.name for p in d.parent.iterdir()), (d / "a.txt").read_text()
    (['out'], 'new')
    """
    final = Path(final)
    with writing(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        _clear_leftovers(final)
        stage = final.parent / f".{final.name}.new-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    try:
        yield stage
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        with writing(final):
            if final.exists():
                os.replace(final, old)
            try:
                os.replace(stage, final)
            except BaseException:
                if old.exists():
                    os.replace(old, final)
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def locked_out(what: str) -> Callable:
    """Decorate a command's ``run(args)`` to hold :func:`saliency_r1._io.output_lock` on ``args.out``.

    >>> import argparse, tempfile
    >>> locked_out("demo")(lambda args: 0)(argparse.Namespace(out=tempfile.mkdtemp()))
    0
    """
    def wrap(run: Callable) -> Callable:
        @functools.wraps(run)
        def locked_run(args):
            with output_lock(Path(args.out), what):  # a second run on the folder: one line naming the pid
                return run(args)
        return locked_run
    return wrap


def check_run_options(path: str | Path, options: Mapping[str, Any]) -> None:
    """Record a batch run's options in ``path``; a resumed run must pass the same ones.

    Mixing rows computed with different options (another model, map or sampling) in one output
    folder would make its summary meaningless, so a mismatch is an :class:`InputError`.
    """
    p = Path(path)
    options = json.loads(json.dumps(json_safe(dict(options))))
    if p.is_file():
        try:
            before = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            before = None
        if isinstance(before, dict) and before != options:
            diff = ", ".join(f"{k}: {before.get(k)!r} -> {options.get(k)!r}"
                             for k in sorted(set(before) | set(options)) if before.get(k) != options.get(k))
            raise InputError(f"{p.parent} was made with other options ({diff}); pass the same options to "
                             "resume, or choose another --out")
    write_json(p, options)


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the non-None values, or None when there are none.

    >>> mean([1.0, None, 0.0])
    0.5
    """
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` places, None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table; ``|`` and newlines in cells are escaped.

    >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
    | a | b |
    |---|---|
    | 1 | 0.500 |
    """
    def cell(v: Any) -> str:
        """One escaped cell."""
        return one_line(fmt(v), 200).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summary(out_dir: str | Path, summary: Mapping[str, Any], markdown: str,
                  stream: Any = None) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir`` and print the markdown."""
    out = Path(out_dir)
    md = atomic_write_text(out / "summary.md", markdown.rstrip() + "\n")
    js = write_json(out / "summary.json", summary)
    print(markdown.rstrip(), file=stream or sys.stdout)
    return md, js


@dataclass
class BatchTally:
    """What happened to the rows of one batch run.

    ``records`` holds the ok records (this run's and resumed ones), each with ``scores`` (a dict of
    metrics, or None) and optionally ``score_note`` (why there are none); ``skipped`` holds the
    skipped rows' records, each with ``row``, ``id`` and ``reason``.
    """

    done: int = 0
    resumed: int = 0
    skipped: list = field(default_factory=list)
    records: list = field(default_factory=list)


def summarise_batch(out_dir: str | Path, title: str, header: str, n_rows: int, tally: BatchTally,
                    metrics: Mapping[str, str], elapsed: float, extra: Mapping[str, Any] | None = None) -> dict:
    """Write and print the summary of a batch: counts, metric means, skipped and unscored rows.

    ``metrics`` maps a key of the records' ``scores`` to its column label, e.g.
    ``{"energy_pg": "mean energy-PG"}``; means are over the records that have scores. Returns the
    summary dict written to ``summary.json`` (``summary.md`` holds the same as markdown tables).
    """
    scored = [r["scores"] for r in tally.records if r.get("scores")]
    unscored: dict[str, int] = {}
    for r in tally.records:
        if not r.get("scores"):
            why = r.get("score_note") or "no scores"
            unscored[why] = unscored.get(why, 0) + 1
    means = {f"mean_{k}": mean([s.get(k) for s in scored]) for k in metrics}
    summary = {**(extra or {}), "out": str(out_dir), "rows": n_rows, "done": tally.done,
               "resumed": tally.resumed, "skipped": len(tally.skipped), "scored": len(scored), **means,
               "skipped_rows": [{"row": r.get("row"), "id": r.get("id"), "reason": r.get("reason")}
                                for r in tally.skipped],
               "unscored": unscored, "elapsed_s": elapsed}
    md = [f"# {title}", "", header, "",
          markdown_table(["rows", "done (this run)", "already done", "skipped", "scored", *metrics.values()],
                         [[n_rows, tally.done, tally.resumed, len(tally.skipped), len(scored), *means.values()]])]
    if tally.skipped:
        md += ["", "Skipped rows:", "", markdown_table(["row", "id", "reason"], [
            [r["row"], r["id"], r["reason"]] for r in summary["skipped_rows"]])]
    if unscored:
        md += ["", "Done but not scored:", "", markdown_table(["rows", "why"], [[n, k] for k, n in unscored.items()])]
    md += ["", f"{fmt(elapsed, 1)} s; per-row records in {Path(out_dir) / 'records.jsonl'}"]
    write_summary(out_dir, summary, "\n".join(md))
    return summary


__all__ = ["quiet_libraries", "atomic_write_text", "write_json", "WriteError", "write_error_line", "writing",
           "staged_dir", "locked_out", "safe_name", "one_line", "iter_jsonl",
           "RecordLog", "check_run_options", "mean", "fmt", "markdown_table", "write_summary", "BatchTally", "summarise_batch"]
