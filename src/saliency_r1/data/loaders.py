"""Load real datasets into the sample schema, reporting (never dying on) bad rows.

``load(path, format=..., image_root=None, **opts)`` reads a JSON list (``.json``), JSONL (anything
else; one object per line) or Parquet (``.parquet``) file and returns a :class:`LoadResult`. Each
bad row is skipped and reported as ``(row_number, field, reason)`` (row numbers are 1-based: the line
in JSONL, the element in a JSON list or Parquet table), logged as a warning (the first
``max_warnings``, then one summary line). Rules for every format:

- image paths are joined to ``image_root`` (default: the data file's folder) and may not climb out
  of it (``..``, absolute paths elsewhere); a missing or unreadable file skips the row. Only the
  header is read (for the size); samples keep the absolute path as ``image``.
- boxes end as pixel ``[x1, y1, x2, y2]`` of the original image: partly outside the image is clipped
  (counted in ``LoadResult.clipped``); entirely outside, inverted, zero-area or non-numeric skips the
  row. An empty answer skips the row. Rows with ``width``/``height`` that disagree with the image
  file are skipped (their pixel boxes would be off; ``check_size=False`` turns this off).

Formats (see :data:`FORMATS`):

``visual_cot``
    The Visual-CoT train/benchmark files (Shao et al. 2024): ``{"image": [path,
    "path###[x1, y1, x2, y2]"], "conversations": [human "<image>\\n{q} Please provide the bounding
    box coordinate of the region that can help you answer the question better.", gpt "[0.1, 0.2,
    0.5, 0.6]", human "<image>", gpt answer], "dataset", "question_id"}``. Assumptions: the
    question is the first human turn without ``<image>`` and the instruction sentence (also its
    'Please think step by step and provide ...' variant); the answer is the last gpt turn that is
    not the box; the ``###`` box is in pixels of the original image (Visual-CoT writes the union of
    several boxes there); when absent, the first gpt turn's box is converted from the square-padded
    normalised convention (side ``max(W, H)``, shorter side offset by ``(max - min) // 2``) using
    the image header. Image paths look like ``cot/{dataset}/{file}``: point ``image_root`` at the
    folder holding ``cot/``. ``source`` is ``visual_cot/{dataset}``.
``visual_cot_meta``
    Visual-CoT metadata JSONL: ``{question, answer, bboxs: [[x1, y1, x2, y2], ...] (pixels), image,
    width, height, dataset}``. The image is looked up as ``image``, ``{dataset}/image`` then
    ``cot/{dataset}/image`` under ``image_root`` (``textcap`` images live with ``textvqa``). All
    boxes are kept.
``saliency_r1_8k``
    ``{problem, solution, image, bbox}``: ``bbox`` a string or list ``[x1, y1, x2, y2]`` (or several)
    normalised to [0, 1] by width and height, unless the row's ``box_format`` (or the
    ``box_format=`` option) says ``square_padded`` or ``pixels``. ``solution`` may hold
    ``<think>…</think>`` (kept as ``reasoning``) and ``<answer>…</answer>``, or be the plain answer.
    ``image`` may be a path or a ``{"bytes", "path"}`` dict (Parquet exports; kept in memory).
``llava``
    LLaVA conversations ``{id, image, conversations: [{from: human|gpt, value}, ...]}`` (also
    ``role``/``content``), e.g. Vision-R1-cold. Multi-turn rows are split into single turns (ids
    ``{id}-{k}``); responses longer than ``max_response_words`` (default 200, None: keep all) are
    filtered and counted in ``LoadResult.filtered`` (not errors). A response's ``<think>`` block
    (or LLaVA-CoT's stages before ``<CONCLUSION>``) becomes ``reasoning``, the rest (``<answer>``
    content if tagged) the answer. No boxes. Text-only rows are skipped.
``shapes``
    The ``data.jsonl`` written by :func:`saliency_r1.data.export` (the schema itself); ``path`` may
    be the export folder.

Options: ``limit`` (read at most this many rows), ``check_size`` (default True), ``max_warnings``
(default 20), ``box_format`` (saliency_r1_8k), ``max_response_words`` (llava).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Optional, Union

from ..errors import InputError
from ._context import Ctx, Skip
from ._parsers import BOX_FORMATS, PARSERS
from .schema import Sample

logger = logging.getLogger(__name__)

FORMATS = MappingProxyType({
    "visual_cot": "Visual-CoT LLaVA-style JSON/JSONL: image [path, 'path###[x1,y1,x2,y2]'] + 4 turns",
    "visual_cot_meta": "Visual-CoT metadata JSONL: question, answer, bboxs (pixels), image, width, height",
    "saliency_r1_8k": "saliency-r1-8k: problem, solution, image, bbox (normalised string)",
    "llava": "LLaVA conversations (e.g. Vision-R1-cold), split into single turns, no boxes",
    "shapes": "ShapesWorld export: data.jsonl + images/",
})
_COMMON_OPTS = {"limit", "check_size", "max_warnings"}
_FORMAT_OPTS = {"saliency_r1_8k": {"box_format"}, "llava": {"max_response_words"}}


@dataclass
class LoadResult:
    """The loaded samples and what was left out.

    Attributes:
        samples: the good samples, in file order.
        skipped: ``(row_number, field, reason)`` per skipped row (or skipped turn of a llava row).
        format, path: what was read. rows: how many rows were read.
        clipped: boxes clipped to the image. filtered: llava responses over ``max_response_words``.

    >>> LoadResult([], [(3, "image", "file not found: a.jpg")], "llava", "x.jsonl", 3).summary()
    'llava: 0 samples from x.jsonl (3 rows); 1 skipped (image: 1)'
    """

    samples: list[Sample]
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    format: str = ""
    path: str = ""
    rows: int = 0
    clipped: int = 0
    filtered: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> str:
        """One line: samples, rows, skips by field, clipped boxes, filtered responses."""
        text = f"{self.format}: {len(self.samples)} samples from {self.path} ({self.rows} rows)"
        if self.skipped:
            by_field = Counter(f for _, f, _ in self.skipped)
            text += f"; {len(self.skipped)} skipped (" + ", ".join(f"{k}: {v}" for k, v in by_field.most_common()) + ")"
        if self.clipped:
            text += f"; {self.clipped} boxes clipped to the image"
        if self.filtered:
            text += f"; {self.filtered} responses filtered as too long"
        return text


def _check_opts(fmt: str, opts: dict[str, Any]) -> None:
    allowed = _COMMON_OPTS | _FORMAT_OPTS.get(fmt, set())
    if unknown := sorted(set(opts) - allowed):
        raise InputError(f"unknown option(s) {unknown} for format {fmt!r}; accepted: {sorted(allowed)}")
    if "box_format" in opts and str(opts["box_format"]).lower() not in BOX_FORMATS:
        raise InputError(f"box_format {opts['box_format']!r} unknown; use one of {sorted(set(BOX_FORMATS.values()))}")
    if opts.get("limit") is not None and int(opts["limit"]) < 0:
        raise InputError(f"limit must be >= 0, got {opts['limit']}")


def _rows(path: Path) -> Iterator[tuple[int, Any, Optional[str]]]:
    """``(row_number, value, error)``: a JSON list, a Parquet table, or JSONL line by line."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for k, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield k, row, None
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); give a JSON or JSONL file") from None
    head = text.lstrip()[:1]
    data = _whole_json(text, path) if head in "[{" and head else None
    if data is not None:
        for k, row in enumerate(data, 1):
            yield k, row, None
        return
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield k, json.loads(line), None
        except json.JSONDecodeError as e:
            yield k, None, f"malformed JSON ({e.msg}, column {e.colno})"


def _whole_json(text: str, path: Path) -> Optional[list]:
    """The rows of a whole-file JSON list (or of a JSON object's single list / 'data' entry); None
    when the text is JSONL (several objects) instead."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):
            raise InputError(f"{path} starts like a JSON list but is not valid JSON ({e.msg}, line {e.lineno}); "
                             "fix it or write one object per line (JSONL)") from None
        return None  # JSONL: parsed line by line
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("data"), list):
            return data["data"]
        if len(data) == 1:
            (value,) = data.values()
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                return value  # {"anything": [rows]}
    return [data]  # a single JSON object: one row


def _data_file(path: Union[str, Path], fmt: str) -> Path:
    p = Path(path)
    if p.is_dir() and (p / "data.jsonl").is_file():
        p = p / "data.jsonl"
    if not p.is_file():
        hint = " (for 'shapes', the export folder or its data.jsonl)" if fmt == "shapes" else ""
        raise InputError(f"data file not found: {p}{hint}")
    return p


def _report(result: LoadResult, entry: tuple[int, str, str], max_warnings: int) -> None:
    result.skipped.append(entry)
    if len(result.skipped) <= max_warnings:
        logger.warning("%s row %d skipped: %s: %s", result.path, *entry)


def load(path: Union[str, Path], format: str, image_root: Union[str, Path, None] = None, **opts: Any) -> LoadResult:
    """Read ``path`` in ``format`` (one of :data:`FORMATS`) into samples; see the module docstring.

    >>> import tempfile, pathlib
    >>> from saliency_r1.data import export, generate
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = export(generate(None, 3), d)
    >>> load(d, format="shapes").summary().startswith("shapes: 3 samples")
    True
    """
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    _check_opts(format, opts)
    data = _data_file(path, format)
    root = Path(image_root) if image_root is not None else data.parent
    if not root.is_dir():
        raise InputError(f"image_root {root} is not a folder")
    ctx = Ctx(root=root, stem=data.stem, opts=opts)
    result = LoadResult([], format=format, path=str(data))
    limit, max_warn = opts.get("limit"), int(opts.get("max_warnings", 20))
    parser = PARSERS[format]
    for num, row, error in _rows(data):
        if limit is not None and result.rows >= int(limit):
            break
        result.rows += 1
        ctx.row = num
        if error is None and not isinstance(row, dict):
            error = f"expected a JSON object, got {type(row).__name__}"
        if error is not None:
            _report(result, (num, "json", error), max_warn)
            continue
        try:
            result.samples.extend(parser(row, ctx))
        except Skip as e:
            _report(result, (num, e.field, e.reason), max_warn)
        for note in ctx.notes:
            _report(result, note, max_warn)
        ctx.notes.clear()
    result.clipped, result.filtered = ctx.clipped, ctx.filtered
    if len(result.skipped) > max_warn:
        logger.warning("%s: %d more rows skipped; see LoadResult.skipped", data, len(result.skipped) - max_warn)
    logger.info("%s", result.summary())
    return result


__all__ = ["load", "LoadResult", "FORMATS"]
