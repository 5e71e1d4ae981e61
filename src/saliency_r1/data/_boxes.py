"""Private box conversions and checks for the loaders (``data/`` must not import ``scoring/``).

Target convention: ``[x1, y1, x2, y2]`` float pixels of the original image, continuous coordinates
(the image spans ``[0, W] x [0, H]``). Every check raises ``ValueError`` with a short reason; the
loaders turn that into a skipped row.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from typing import Any

_NORM_RANGE = (-0.5, 1.5)  # normalised values outside this are almost surely pixels
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_boxes(value: Any) -> list[list[float]]:
    """Boxes from a string ``"[x1, y1, x2, y2]"`` / ``"[[..], [..]]"``, a flat list or a nested list.

    >>> parse_boxes("[0.1, 0.2, 0.5, 0.6]")
    [[0.1, 0.2, 0.5, 0.6]]
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            groups = re.findall(r"\[([^\[\]]*)\]", text) or [text]
            value = [[_num(t) for t in re.split(r"[,\s]+", g.strip()) if t] for g in groups]
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(f"expected a box [x1, y1, x2, y2] or a list of boxes, got {value!r}")
    rows = [value] if not isinstance(value[0], (list, tuple)) else list(value)
    out = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ValueError(f"a box needs exactly 4 numbers, got {row!r}")
        out.append([_num(v) for v in row])
    return out


def _num(v: Any) -> float:
    """One finite coordinate as float, else ValueError."""
    if isinstance(v, bool):
        raise ValueError(f"non-numeric box value {v!r}")
    if isinstance(v, str):
        if not _NUMBER.fullmatch(v.strip()):
            raise ValueError(f"non-numeric box value {v!r}")
        v = float(v)
    if not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ValueError(f"non-numeric or non-finite box value {v!r}")
    return float(v)


def check_normalised(box: list[float]) -> None:
    """Raise when a normalised box has values far outside [0, 1] (pixels given as normalised).

    >>> check_normalised([0.1, 0.2, 0.5, 0.6])
    """
    if any(not _NORM_RANGE[0] <= v <= _NORM_RANGE[1] for v in box):
        raise ValueError(f"normalised box {box} has values far outside [0, 1]; are these pixels?")


def normalised_to_pixels(box: list[float], width: int, height: int) -> list[float]:
    """Plain normalisation: multiply by ``(W, H, W, H)``.

    >>> normalised_to_pixels([0.1, 0.2, 0.5, 0.6], 200, 100)
    [20.0, 20.0, 100.0, 60.0]
    """
    check_normalised(box)
    return [box[0] * width, box[1] * height, box[2] * width, box[3] * height]


def square_padded_to_pixels(box: list[float], width: int, height: int) -> list[float]:
    """Visual-CoT: normalised in the image padded to a square of side ``S = max(W, H)``, the
    shorter side centred with offset ``o = (S - min(W, H)) // 2``; back: ``v * S - o`` on that axis.

    >>> square_padded_to_pixels([0.125, 0.375, 0.5, 0.625], 200, 100)
    [25.0, 25.0, 100.0, 75.0]
    """
    check_normalised(box)
    side = max(width, height)
    off = (side - min(width, height)) // 2
    ox, oy = (0, off) if width >= height else (off, 0)
    x1, y1, x2, y2 = (v * side for v in box)
    return [x1 - ox, y1 - oy, x2 - ox, y2 - oy]


def pixels_to_square_padded(box: list[float], width: int, height: int) -> list[float]:
    """Inverse of :func:`square_padded_to_pixels` (what Visual-CoT wrote in its gpt turn).

    >>> pixels_to_square_padded([25, 25, 100, 75], 200, 100)
    [0.125, 0.375, 0.5, 0.625]
    """
    side = max(width, height)
    off = (side - min(width, height)) // 2
    ox, oy = (0, off) if width >= height else (off, 0)
    return [(box[0] + ox) / side, (box[1] + oy) / side, (box[2] + ox) / side, (box[3] + oy) / side]


def clean_box(box: list[float], width: int, height: int) -> tuple[list[float], bool]:
    """Validate a pixel box; clip it to the image when partly outside. Returns ``(box, clipped)``.

    Raises ``ValueError`` for an inverted or zero-area box, or one entirely outside the image.

    >>> clean_box([-5.0, 10.0, 50.0, 20.0], 40, 30)
    ([0.0, 10.0, 40.0, 20.0], True)
    """
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"inverted box {box} (need x1 <= x2 and y1 <= y2)")
    if x2 == x1 or y2 == y1:
        raise ValueError(f"zero-area box {box}")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ValueError(f"box {box} lies entirely outside the {width}x{height} image")
    out = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
    out = [float(v) for v in out]
    return out, out != [float(v) for v in box]


def union_box(boxes: list[list[float]]) -> list[float]:
    """The smallest box holding all ``boxes`` (Visual-CoT merges several boxes this way).

    >>> union_box([[0, 0, 2, 2], [1, 1, 5, 3]])
    [0, 0, 5, 3]
    """
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


__all__: list[str] = []
