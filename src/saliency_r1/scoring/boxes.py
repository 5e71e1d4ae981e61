"""Evidence boxes: parse them and convert every convention to pixel xyxy of the original image.

Conventions (``image_size = (W, H)``, continuous pixel coordinates, the image spans ``[0, W] x [0, H]``):

=============  ==============================================================================
``xyxy``       ``(x1, y1, x2, y2)`` in pixels (the target convention)
``xywh``       ``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner: ``x2 = x + w``
``norm_xyxy``  ``(x1, y1, x2, y2)`` divided by ``(W, H, W, H)``
``visual_cot`` Visual-CoT: normalised in the image padded to a square of side ``S = max(W, H)``,
               the shorter side centred with offset ``o = (S - min(W, H)) // 2``.
               Back to pixels: ``x = nx * S - o_x``, ``y = ny * S - o_y`` (``o`` on the padded axis)
=============  ==============================================================================

Validation (each raises :class:`~saliency_r1.errors.InputError` with a one-line fix): non-numeric
values, not exactly four numbers, NaN/inf, inverted (``x2 < x1`` or ``y2 < y1``; a negative width or
height for ``xywh``), zero area, normalised values far outside ``[0, 1]`` (outside ``[-0.5, 1.5]``:
almost surely pixels given with a normalised ``box_format``), and a box entirely outside the image.
A box partly outside the image is clipped to ``[0, W] x [0, H]`` silently: annotation tools and
rounding often overshoot the border by a pixel or so.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

import numpy as np

from ..errors import InputError
from ._common import check_size, to_numpy

BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "norm_xyxy", "visual_cot")
_NORM_RANGE = (-0.5, 1.5)
_GROUP = re.compile(r"\[([^\[\]]*)\]")


def parse_box_string(text: str) -> list[list[float]]:
    """Parse box(es) written as text into lists of floats (no length or range checks).

    Accepts ``"[x1, y1, x2, y2]"``, several boxes ``"[[...], [...]]"`` or ``"[...] [...]"``, round
    brackets, and a bare ``"x1, y1, x2, y2"``. Each innermost bracket group is one box; text outside
    the brackets is ignored. A non-numeric value raises :class:`InputError`.

    >>> parse_box_string("[0.1, 0.2, 0.5, 0.6]")
    [[0.1, 0.2, 0.5, 0.6]]
    """
    if not isinstance(text, str):
        raise InputError(f"parse_box_string takes a string such as '[0.1, 0.2, 0.5, 0.6]'; got {type(text).__name__}")
    norm = text.replace("(", "[").replace(")", "]")
    groups = _GROUP.findall(norm) or [norm]
    boxes = []
    for group in groups:
        tokens = [t for t in re.split(r"[,\s;]+", group.strip()) if t]
        if not tokens:
            raise InputError(f"empty box in {text!r}; write boxes as '[x1, y1, x2, y2]'")
        boxes.append([_to_float(t, text) for t in tokens])
    return boxes


def _to_float(value: Any, where: Any) -> float:
    """One coordinate as float, or an InputError naming the culprit."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str, np.generic)):
        raise InputError(f"non-numeric box value {value!r} in {where!r}; give four numbers, e.g. [x1, y1, x2, y2]")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"non-numeric box value {value!r} in {where!r}; "
                         "give four numbers, e.g. [x1, y1, x2, y2]") from None


def _is_box_like(item: Any) -> bool:
    """A nested box (list, tuple, array, tensor, or a string holding brackets or commas)."""
    if isinstance(item, str):
        return any(c in item for c in "[](),")
    return isinstance(item, (list, tuple, np.ndarray)) or hasattr(item, "detach")


def _box_rows(boxes: Any) -> list[list[float]]:
    """Normalise every accepted input shape to a list of rows of floats (lengths unchecked)."""
    if boxes is None:
        raise InputError("no boxes given; pass a box [x1, y1, x2, y2] or a list of boxes")
    if isinstance(boxes, str):
        return parse_box_string(boxes)
    if isinstance(boxes, np.ndarray) or hasattr(boxes, "detach"):
        arr = to_numpy(boxes)
        if arr.ndim not in (1, 2):
            raise InputError(f"boxes must have shape (4,) or (n, 4); got {arr.shape}")
        rows = [arr] if arr.ndim == 1 else list(arr)
        return [[_to_float(v, boxes) for v in row.tolist()] for row in rows]
    if not isinstance(boxes, (list, tuple)):
        raise InputError(f"boxes must be a box [x1, y1, x2, y2], a list of boxes or a string; got {boxes!r}")
    if len(boxes) == 0:
        raise InputError("empty list of boxes; pass at least one box [x1, y1, x2, y2]")
    nested = [_is_box_like(b) for b in boxes]
    if not any(nested):
        return [[_to_float(v, boxes) for v in boxes]]
    if not all(nested):
        raise InputError(f"boxes {boxes!r} mix numbers and boxes; pass one box or a list of boxes")
    rows: list[list[float]] = []
    for item in boxes:
        rows.extend(_box_rows(item))
    return rows


def _offsets(width: int, height: int) -> tuple[int, int, int]:
    """Visual-CoT square side and the (x, y) offsets of the image inside the padded square."""
    side = max(width, height)
    off = (side - min(width, height)) // 2
    return side, (off if width < height else 0), (off if height < width else 0)


def _convert(arr: np.ndarray, box_format: str, width: int, height: int) -> np.ndarray:
    """(n, 4) rows in ``box_format`` to unclipped pixel xyxy."""
    out = arr.copy()
    if box_format == "xywh":
        out[:, 2:] = arr[:, :2] + arr[:, 2:]
    elif box_format == "norm_xyxy":
        out *= np.array([width, height, width, height], dtype=np.float64)
    elif box_format == "visual_cot":
        side, ox, oy = _offsets(width, height)
        out = arr * side - np.array([ox, oy, ox, oy], dtype=np.float64)
    return out


def _validate_rows(rows: list[list[float]], box_format: str) -> np.ndarray:
    """Check count, finiteness, order and area of raw rows; return them as (n, 4) float64."""
    names = "x, y, w, h" if box_format == "xywh" else "x1, y1, x2, y2"
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise InputError(f"box {i} has {len(row)} values {row}; give exactly 4 numbers "
                             f"({names} for box_format={box_format!r})")
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    for i, row in enumerate(arr):
        shown = row.tolist()
        if not np.all(np.isfinite(row)):
            raise InputError(f"box {i} {shown} has a NaN or infinite value; give four finite numbers ({names})")
        size = row[2:] if box_format == "xywh" else row[2:] - row[:2]
        if np.any(size < 0):
            fix = ("width and height must be positive" if box_format == "xywh"
                   else "give corners in x1, y1, x2, y2 order (x1 <= x2, y1 <= y2)")
            raise InputError(f"box {i} {shown} is inverted; {fix}")
        if np.any(size == 0):
            raise InputError(f"box {i} {shown} has zero area; give a box with width and height > 0")
        lo, hi = _NORM_RANGE
        if box_format in ("norm_xyxy", "visual_cot") and (row.min() < lo or row.max() > hi):
            raise InputError(f"box {i} {shown} is not normalised (values must lie in [0, 1]); "
                             "for pixel coordinates use box_format='xyxy' or 'xywh'")
    return arr


def to_xyxy(boxes: Any, box_format: str = "xyxy", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Convert box(es) in ``box_format`` to pixel xyxy of the original image, clipped to the image.

    ``boxes``: one box (4 numbers), a list of boxes, an ``(n, 4)`` array/tensor, or a string
    (see :func:`parse_box_string`). ``image_size = (W, H)`` of the original image (required).
    Returns float64 ``(n, 4)``, always 2-D, even for one box. See the module docstring for the
    formulas and the checks.

    >>> to_xyxy("[0.25, 0.375, 0.75, 0.5]", "visual_cot", (100, 50)).tolist()  # square 100, y offset 25
    [[25.0, 12.5, 75.0, 25.0]]
    """
    if box_format not in BOX_FORMATS:
        raise InputError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")
    if image_size is None:
        raise InputError("to_xyxy needs image_size=(width, height) of the original image")
    width, height = check_size(image_size)
    arr = _convert(_validate_rows(_box_rows(boxes), box_format), box_format, width, height)
    for i, (x1, y1, x2, y2) in enumerate(arr):
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InputError(f"box {i} (pixel xyxy {[round(float(v), 3) for v in (x1, y1, x2, y2)]} after "
                             f"{box_format!r} conversion) lies entirely outside the {width}x{height} image; "
                             "check box_format and image_size=(width, height)")
    arr[:, 0::2] = np.clip(arr[:, 0::2], 0.0, width)
    arr[:, 1::2] = np.clip(arr[:, 1::2], 0.0, height)
    return arr


def from_xyxy(boxes_xyxy: Any, box_format: str, image_size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_xyxy`: pixel xyxy (validated and clipped first) to ``box_format``.

    ``xywh``: ``(x1, y1, x2 - x1, y2 - y1)``; ``norm_xyxy``: divide by ``(W, H, W, H)``;
    ``visual_cot``: ``(x + o_x) / S`` and ``(y + o_y) / S``.

    >>> from_xyxy([25, 12.5, 75, 25], "visual_cot", (100, 50)).tolist()
    [[0.25, 0.375, 0.75, 0.5]]
    """
    arr = to_xyxy(boxes_xyxy, "xyxy", image_size)
    width, height = check_size(image_size)
    if box_format == "xywh":
        arr[:, 2:] -= arr[:, :2]
    elif box_format == "norm_xyxy":
        arr /= np.array([width, height, width, height], dtype=np.float64)
    elif box_format == "visual_cot":
        side, ox, oy = _offsets(width, height)
        arr = (arr + np.array([ox, oy, ox, oy], dtype=np.float64)) / side
    elif box_format != "xyxy":
        raise InputError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")
    return arr


def authors_box_bug(boxes_xyxy: Any, image_size: tuple[int, int]) -> list[list[float]]:
    """Parity with a BUG in the authors' reward code (not a convention, off by default everywhere).

    Their ``think_saliency_reward`` reads a normalised box ``[x1, y1, x2, y2]`` as pixels
    ``(W·x1, H·y1, W·x2, W·y2)``: y2 is scaled by the image width. On pixel xyxy boxes that is
    ``y2 -> y2 · W / H``, clipped to the image; a box that becomes empty (``y2' <= y1``, possible when
    ``W < H``) is dropped, as their empty slice adds nothing.

    >>> authors_box_bug([[10, 10, 30, 20]], (100, 50))   # W = 2 H: the box's bottom edge doubles
    [[10.0, 10.0, 30.0, 40.0]]
    >>> authors_box_bug([[10, 30, 30, 40]], (50, 100))   # W = H / 2: 40 -> 20 < y1, the box vanishes
    []
    """
    width, height = check_size(image_size)
    out = []
    for x1, y1, x2, y2 in to_xyxy(boxes_xyxy, "xyxy", (width, height)).tolist():
        y2 = min(float(height), y2 * width / height)
        if y2 > y1:
            out.append([x1, y1, x2, y2])
    return out


__all__ = ["BOX_FORMATS", "parse_box_string", "to_xyxy", "from_xyxy", "authors_box_bug"]
