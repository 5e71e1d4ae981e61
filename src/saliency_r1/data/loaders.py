"""Load real datasets into the sample schema, reporting (never dying on) bad rows.

``load(path, format=..., image_root=None, split="train", data_files=None, columns=None, **opts)``
returns a :class:`LoadResult`. ``path`` may be (see :mod:`._reading`):

- a data file: JSON list (``.json``), JSONL (any other text file; one object per line), Parquet
  (``.parquet``) or a datasets Arrow file (``.arrow``);
- a folder of data files, split as ``datasets`` splits it (its README ``configs:``, else the hub's
  file-name patterns such as ``data/train-00000-of-00002.parquet``; ``split`` picks one);
- a ``datasets`` ``save_to_disk`` folder (a Dataset, or a DatasetDict: ``split`` picks one);
- a glob (``data/*.parquet``, ``**`` allowed);
- a hub id ``org/name``, read offline from the local HF cache (the hub snapshot written by
  ``hf download --repo-type dataset org/name``, else the Arrow cache of an online
  ``datasets.load_dataset``); not cached: one :class:`InputError` line naming the download.

``data_files`` (patterns relative to the folder or hub snapshot) picks files instead, e.g. one
JSON file of a hub dataset; ``columns`` renames columns before parsing (``{their: ours}``).

Each bad row is skipped and reported as ``(row_number, field, reason)``, logged as a warning
naming the file and its row (the first ``max_warnings``, then one summary line). Row numbers are
1-based: the line in JSONL, the element in a JSON list, the row in a Parquet/Arrow table or a
Dataset split. Several files are numbered on: file ``k`` starts after the last row of file
``k - 1`` (``LoadResult.parts`` lists each file and its offset; ``LoadResult.locate`` maps back).
Rules for every format:

- image paths are joined to ``image_root`` (default: the data file's folder, the data folder, the
  hub snapshot, the glob's fixed prefix) and may not climb out of it (``..``, absolute paths
  elsewhere); a missing or unreadable file skips the row. Only the header is read (for the size);
  samples keep the absolute path as ``image``. Embedded images (a ``datasets.Image`` column:
  ``{"bytes", "path"}``) are decoded into memory. Every image is opened by ``saliency_r1._images``.
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
``visual_cot_det``
    Visual-CoT ``viscot_benchmark/benchmark_det/{name}.jsonl``: ``{img_path, expression, bbox
    (pixels), height, width, question_id, split}``. ``expression`` is the question; the rows carry
    no answer, so it is taken from the matching ``viscot_benchmark/benchmark/{name}.json`` (same
    ``question_id``; the last gpt turn), found next to ``benchmark_det/`` or given with the
    ``answers`` option (that file, or the folder holding it). ``cot/visual7w/`` and ``cot/v7w/``
    image folders stand for each other (the published files use both). ``source`` is
    ``visual_cot/{name}``.
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
    ``image`` may be a path or a ``{"bytes", "path"}`` dict (a ``datasets.Image`` column, e.g. the
    hub's Parquet shards; embedded bytes are decoded into memory).
``llava``
    LLaVA / ShareGPT conversations ``{id, image | images, conversations | messages: [{from:
    human|gpt|user|assistant, value} or {role, content}, ...]}``: LLaVA-CoT, Mulberry, the two
    files of Saliency-R1-cold / Vision-R1-cold (``image`` a path or a one-path list). Multi-turn
    rows are split into single turns (ids ``{id}-{k}``); responses longer than ``max_response_words`` (default 200, None: keep all) are
    filtered and counted in ``LoadResult.filtered`` (not errors). A response's ``<think>`` block
    (or LLaVA-CoT's stages before ``<CONCLUSION>``) becomes ``reasoning``, the rest (``<answer>``
    content if tagged) the answer. No boxes. Text-only rows are skipped.
``shapes``
    The ``data.jsonl`` written by :func:`saliency_r1.data.export` (the schema itself); ``path`` may
    be the export folder.

Options: ``limit`` (read at most this many rows), ``check_size`` (default True), ``max_warnings``
(default 20), ``box_format`` (saliency_r1_8k), ``max_response_words`` (llava), ``answers``
(visual_cot_det). See ``docs/datasets.md`` for each published layout and its ``sources:`` entry.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Optional, Union

from ..errors import InputError
from ._context import Ctx, Skip
from ._parsers import BOX_FORMATS, PARSERS
from ._reading import resolve
from .schema import Sample

logger = logging.getLogger(__name__)

FORMATS = MappingProxyType({
    "visual_cot": "Visual-CoT LLaVA-style JSON/JSONL: image [path, 'path###[x1,y1,x2,y2]'] + 4 turns",
    "visual_cot_det": "Visual-CoT benchmark_det JSONL: img_path, expression, bbox (pixels), question_id",
    "visual_cot_meta": "Visual-CoT metadata JSONL: question, answer, bboxs (pixels), image, width, height",
    "saliency_r1_8k": "saliency-r1-8k: problem, solution, image, bbox (normalised string)",
    "llava": "LLaVA conversations (e.g. Vision-R1-cold), split into single turns, no boxes",
    "shapes": "ShapesWorld export: data.jsonl + images/",
})
_COMMON_OPTS = {"limit", "check_size", "max_warnings"}
_FORMAT_OPTS = {"saliency_r1_8k": {"box_format"}, "llava": {"max_response_words"}, "visual_cot_det": {"answers"}}


@dataclass
class LoadResult:
    """The loaded samples and what was left out.

    Attributes:
        samples: the good samples, in file order.
        skipped: ``(row_number, field, reason)`` per skipped row (or skipped turn of a llava row).
        format, path: what was read. rows: how many rows were read.
        clipped: boxes clipped to the image. filtered: llava responses over ``max_response_words``.
        parts: ``(file, row offset)`` per data file read, in order.

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
    parts: list[tuple[str, int]] = field(default_factory=list)

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

    def locate(self, row: int) -> tuple[str, int]:
        """``(file, row within it)`` of a reported row number (see ``parts``).

        >>> LoadResult([], parts=[("a.jsonl", 0), ("b.jsonl", 10)]).locate(12)
        ('b.jsonl', 2)
        """
        label, offset = next(((lab, off) for lab, off in reversed(self.parts) if off < row), (self.path, 0))
        return label, row - offset


def _check_opts(fmt: str, opts: dict[str, Any]) -> None:
    allowed = _COMMON_OPTS | _FORMAT_OPTS.get(fmt, set())
    if unknown := sorted(set(opts) - allowed):
        raise InputError(f"unknown option(s) {unknown} for format {fmt!r}; accepted: {sorted(allowed)}")
    if "box_format" in opts and str(opts["box_format"]).lower() not in BOX_FORMATS:
        raise InputError(f"box_format {opts['box_format']!r} unknown; use one of {sorted(set(BOX_FORMATS.values()))}")
    if opts.get("limit") is not None and int(opts["limit"]) < 0:
        raise InputError(f"limit must be >= 0, got {opts['limit']}")


def _report(result: LoadResult, entry: tuple[int, str, str], label: str, local: int, max_warnings: int) -> None:
    result.skipped.append(entry)
    if len(result.skipped) <= max_warnings:
        logger.warning("%s row %d skipped: %s: %s", label, local, entry[1], entry[2])


def _renamer(columns: Optional[dict]) -> Callable[[dict], dict]:
    if not columns:
        return lambda row: row
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        raise InputError(f"columns must map column names to names, e.g. {{question: problem}}; got {columns!r}")
    return lambda row: {columns.get(k, k): v for k, v in row.items()}


def load(path: Union[str, Path], format: str, image_root: Union[str, Path, None] = None, *, split: str = "train",
         data_files: Union[str, list, None] = None, columns: Optional[dict] = None, revision: Optional[str] = None,
         **opts: Any) -> LoadResult:
    """Read ``path`` in ``format`` (one of :data:`FORMATS`) into samples; see the module docstring.

    ``path``: a data file, a folder (data files, hub shards or ``save_to_disk``), a glob, or a hub
    id in the local HF cache. ``split`` picks the split of a folder, DatasetDict or hub dataset;
    ``data_files`` (patterns relative to the folder / hub snapshot) overrides the split's files;
    ``columns`` renames columns before parsing (``{their_name: our_name}``); ``revision`` picks a
    hub snapshot.

    >>> import tempfile, pathlib
    >>> from saliency_r1.data import export, generate
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = export(generate(None, 3), d)
    >>> load(d, format="shapes").summary().startswith("shapes: 3 samples")
    True
    """
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    _check_opts(format, opts)
    rename = _renamer(columns)
    src = resolve(path, split=split, data_files=data_files, revision=revision)
    if not src.parts:
        raise InputError(f"{src.where}: split {split!r} has no data files; check split: and data_files:")
    root = Path(image_root) if image_root is not None else src.root
    if not root.is_dir():
        raise InputError(f"image_root {root} is not a folder")
    ctx = Ctx(root=root, stem=src.parts[0].stem, opts=opts)
    result = LoadResult([], format=format, path=src.where if len(src.parts) != 1 else src.parts[0].label)
    limit, max_warn = opts.get("limit"), int(opts.get("max_warnings", 20))
    parser, offset = PARSERS[format], 0
    for part in src.parts:
        if limit is not None and result.rows >= int(limit):
            break
        ctx.stem, ctx.file, last = part.stem, part.file, 0
        result.parts.append((part.label, offset))
        for num, row, error in part.rows():
            if limit is not None and result.rows >= int(limit):
                break
            result.rows += 1
            last, ctx.id_row, ctx.row = num, num, offset + num
            if error is None and not isinstance(row, dict):
                error = f"expected a JSON object, got {type(row).__name__}"
            if error is not None:
                _report(result, (ctx.row, "json", error), part.label, num, max_warn)
                continue
            try:
                result.samples.extend(parser(rename(row), ctx))
            except Skip as e:
                _report(result, (ctx.row, e.field, e.reason), part.label, num, max_warn)
            for note in ctx.notes:
                _report(result, note, part.label, num, max_warn)
            ctx.notes.clear()
        offset += last
    result.clipped, result.filtered = ctx.clipped, ctx.filtered
    if len(result.skipped) > max_warn:
        logger.warning("%s: %d more rows skipped; see LoadResult.skipped", result.path, len(result.skipped) - max_warn)
    logger.info("%s", result.summary())
    return result


__all__ = ["load", "LoadResult", "FORMATS"]
