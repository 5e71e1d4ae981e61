"""`saliency-r1 explain` inputs: one validated :class:`Example` from the command line or a batch row.

Everything here runs before a model is loaded. Images are opened by :func:`saliency_r1._images.read_image`
(decompression bombs and non-finite pixels refused; images over the pixel cap downscaled by an integer
factor). Boxes and polygons are given in the file's pixels and converted into the explained image's
pixels (the same unless it was downscaled); a mask image goes through the same cap, so it keeps the
image's size. In a batch, image and mask paths must resolve (symlinks followed) inside the batch
file's folder unless ``--allow-outside-paths`` is given: an untrusted JSONL cannot pull other local
images into its reports.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._images import original_size, pixel_cap, read_image
from ..errors import InputError
from ..scoring import BOX_FORMATS, as_mask, parse_box_string, polygons_to_mask, to_xyxy
from ._common import one_line


@dataclass
class Example:
    """One validated example, ready to explain (boxes pixel xyxy of the explained image)."""

    id: str
    image: Any
    image_path: str
    question: str
    response: str | None
    boxes: list[list[float]]
    mask: np.ndarray | None
    reference: str | None = None
    row: int | None = None


def load_image(path: str | Path):
    """Open and check an image file (converted to 8-bit RGB), or a one-line InputError."""
    from ..attribution.inputs import open_image

    return open_image(Path(path), min_side=1)  # the model re-checks its own minimum side


def check_text(value: Any, name: str, allow_none: bool = False) -> str | None:
    """A non-empty string (HTML in it is just text), or an InputError naming ``name``.

    >>> check_text("Q?", "question")
    'Q?'
    >>> check_text(b"Q\\xff?".decode("utf-8", "surrogateescape"), "question")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: the question is not valid UTF-8 (byte 0xff at character 1); pass UTF-8 text
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        shown = "empty" if isinstance(value, str) or value is None else f"a {type(value).__name__}"
        raise InputError(f"the {name} is {shown}; pass a non-empty text {name}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # undecodable argv bytes (surrogate escapes) or a lone JSON \\ud800
        bad = value[e.start]
        what = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"U+{ord(bad):04X}"
        raise InputError(f"the {name} is not valid UTF-8 ({what} at character {e.start}); pass UTF-8 text") from None
    return value


def resolve_inside(rel: str, base: Path, allow_outside: bool, what: str) -> Path:
    """``rel`` (relative to ``base``, or absolute) as a path; it must lie inside ``base`` unless allowed.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> resolve_inside("a.png", d, False, "image") == d / "a.png"
    True
    >>> resolve_inside("../a.png", d, False, "image")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: image '../a.png' lies outside the batch file's folder ...
    """
    path = Path(rel) if Path(rel).is_absolute() else base / rel
    if allow_outside:
        return path
    root, real = base.resolve(), path.resolve()
    if real != root and root not in real.parents:
        raise InputError(f"{what} {rel!r} lies outside the batch file's folder {root}; move the file there "
                         "or pass --allow-outside-paths")
    return path


def _scaled(value: Any, sx: float, sy: float) -> Any:
    """Nested coordinates scaled: in each innermost list of numbers, even places by ``sx``, odd by ``sy``
    (covers ``[x1, y1, x2, y2]``, COCO ``[x1, y1, ...]`` and ``[[x, y], ...]``)."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [v * (sx if i % 2 == 0 else sy) for i, v in enumerate(value)]
        return [_scaled(v, sx, sy) for v in value]
    return value


def _scale_of(image) -> tuple[float, float]:
    """(explained / file) size ratio per axis: (1, 1) unless the image was downscaled on opening."""
    (ow, oh), (w, h) = original_size(image), image.size
    return w / ow, h / oh


def convert_boxes(boxes: Any, box_format: str, image, where: str) -> list[list[float]]:
    """Boxes (strings, one box, or a list) in ``box_format`` of the file's pixels -> pixel xyxy of the
    explained image, validated and clipped."""
    if boxes is None or (isinstance(boxes, (list, tuple)) and len(boxes) == 0):
        return []
    if box_format not in BOX_FORMATS:
        raise InputError(f"{where}: unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")
    try:
        rows = parse_box_string(boxes) if isinstance(boxes, str) else boxes
        xyxy = to_xyxy(rows, box_format, original_size(image)).tolist()
    except InputError as e:
        msg = str(e).replace("image_size=(width, height)", "that the box is in this image's pixels")
        raise InputError(f"{where}: {msg}") from None
    sx, sy = _scale_of(image)
    return xyxy if (sx, sy) == (1.0, 1.0) else _scaled(xyxy, sx, sy)


def load_mask(spec: Any, image, base: Path, allow_outside: bool = True) -> np.ndarray:
    """One mask: polygons (JSON text, a list, or a .json file) or a mask image (non-zero = evidence)."""
    where = f"mask {one_line(spec, 60)!r}"
    sx, sy = _scale_of(image)
    try:
        if isinstance(spec, str) and spec.lstrip().startswith("["):
            return polygons_to_mask(_scaled(json.loads(spec), sx, sy), image.size)
        if isinstance(spec, (list, tuple)):
            return polygons_to_mask(_scaled(spec, sx, sy), image.size)
        if not isinstance(spec, str):
            raise InputError("give a mask image path, a .json path or JSON polygons [[x, y], ...]")
        path = resolve_inside(spec, base, allow_outside, "mask")
        if not path.is_file():
            raise InputError(f"{path} does not exist; check the path")
        if path.suffix.lower() == ".json":
            return polygons_to_mask(_scaled(json.loads(path.read_text(encoding="utf-8")), sx, sy), image.size)
        arr = np.asarray(read_image(path, max_pixels=pixel_cap()).convert("L")) > 0  # the image's cap: its size
        return as_mask(arr, image.size)
    except json.JSONDecodeError as e:
        raise InputError(f"{where} is not valid JSON ({e.msg}); write polygons as [[x, y], ...]") from None
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text; write polygons as [[x, y], ...] in a UTF-8 .json file") from None
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def masks_union(specs: list | None, image, base: Path, allow_outside: bool = True) -> np.ndarray | None:
    """The union of several masks, or None."""
    if not specs:
        return None
    out = np.zeros((image.size[1], image.size[0]), dtype=np.float64)
    for spec in specs:
        out = np.maximum(out, load_mask(spec, image, base, allow_outside))
    return out


def single_example(args: argparse.Namespace) -> Example:
    """The command line's example, fully validated before any model is loaded."""
    question = check_text(args.question, "question")
    response = check_text(args.response, "response", allow_none=True)
    image = load_image(args.image)
    boxes: list[list[float]] = []
    for box in args.box or []:
        boxes += convert_boxes(box, args.box_format, image, f"--box {box!r}")
    mask = masks_union(args.mask, image, Path.cwd())
    return Example(id=Path(args.image).stem, image=image, image_path=str(args.image), question=question,
                   response=response, boxes=boxes, mask=mask)


def row_example(row: dict, number: int, base: Path, args: argparse.Namespace) -> Example:
    """One JSONL row (own schema or ShapesWorld ``export``'s) -> Example; paths relative to ``base``."""
    rel = row.get("image")
    if not isinstance(rel, str) or not rel.strip():
        raise InputError("no image path (key 'image'); give the image file, relative to the JSONL's folder")
    outside = bool(getattr(args, "allow_outside_paths", False))
    path = resolve_inside(rel, base, outside, "image")
    question = check_text(row.get("question"), "question")
    response = check_text(row.get("response"), "response", allow_none=True)
    image = load_image(path)
    fmt_ = row.get("box_format") or args.box_format
    boxes = convert_boxes(row.get("boxes"), fmt_, image, "boxes")
    specs = row.get("mask", row.get("masks"))
    specs = None if specs is None else ([specs] if isinstance(specs, str) else [specs])
    answer = row.get("answer")
    return Example(id=row_id(row, number), image=image, image_path=str(path), question=question,
                   response=response, boxes=boxes, mask=masks_union(specs, image, base, outside),
                   reference=answer if isinstance(answer, str) else None, row=number)


def row_id(row: dict | None, number: int) -> str:
    """The row's ``id`` as a string, or ``row-<line number>``.

    >>> row_id({"id": 7}, 3), row_id({}, 3)
    ('7', 'row-3')
    """
    rid = row.get("id") if isinstance(row, dict) else None
    return str(rid) if isinstance(rid, (str, int)) and str(rid).strip() else f"row-{number}"


__all__ = ["Example", "load_image", "check_text", "resolve_inside", "convert_boxes", "load_mask", "masks_union",
           "single_example", "row_example", "row_id"]
