"""Evidence regions as float weight masks ``(H, W)`` in ``[0, 1]`` over the original image's pixels.

Pixel ``(r, c)`` is the unit square ``[c, c + 1) x [r, r + 1)``. A weight is the fraction of that square
inside the region: exact for boxes (:func:`boxes_to_mask`), 0/1 for polygons (PIL rasterisation)
and for user masks (:func:`as_mask`).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import InputError
from ._common import check_size, interval_overlaps, pixel_edges, to_numpy
from .boxes import to_xyxy


def boxes_to_mask(boxes_xyxy: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Exact fractional coverage of each pixel by the union of pixel-xyxy boxes.

    ``mask[r, c] = area((union of boxes) ∩ pixel(r, c))``, a float in ``[0, 1]``: a box edge at
    ``x = 10.5`` covers half of pixel column 10. Overlapping boxes are not counted twice. Method: the
    box edges cut the plane into elementary rectangles, each wholly in or out of the union
    (``G``, ``(ny, nx)``); with ``Oy[r, k]``/``Ox[c, l]`` the overlap lengths of pixel rows/columns with
    the elementary intervals, ``mask = Oy @ G @ Ox.T``. Boxes are validated and clipped by
    :func:`~saliency_r1.scoring.boxes.to_xyxy`.

    >>> boxes_to_mask([0.5, 0, 2, 1], (3, 2)).tolist()
    [[0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    width, height = check_size(image_size)
    xs, ys, covered = union_cells(to_xyxy(boxes_xyxy, "xyxy", (width, height)))
    oy = interval_overlaps(pixel_edges(height), ys)  # (H, ny)
    ox = interval_overlaps(pixel_edges(width), xs)  # (W, nx)
    return np.clip(oy @ covered @ ox.T, 0.0, 1.0)


def union_cells(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the plane by the edges of ``(n, 4)`` xyxy boxes; say which elementary rectangles the union holds.

    Returns the sorted distinct x edges ``xs`` ``(nx + 1,)``, y edges ``ys`` ``(ny + 1,)`` and
    ``covered`` ``(ny, nx)``: 1.0 where rectangle ``[xs[l], xs[l+1]] x [ys[k], ys[k+1]]`` lies in some box.

    >>> union_cells(np.array([[0., 0., 2., 1.], [1., 0., 3., 1.]]))[2].tolist()
    [[1.0, 1.0, 1.0]]
    """
    xs, ys = np.unique(boxes[:, 0::2]), np.unique(boxes[:, 1::2])
    # box b holds elementary interval k when b's [lo, hi] contains it
    in_x = (boxes[:, [0]] <= xs[None, :-1]) & (xs[None, 1:] <= boxes[:, [2]])  # (n, nx)
    in_y = (boxes[:, [1]] <= ys[None, :-1]) & (ys[None, 1:] <= boxes[:, [3]])  # (n, ny)
    covered = (in_y.T.astype(np.float64) @ in_x.astype(np.float64)) > 0  # (ny, nx)
    return xs, ys, covered.astype(np.float64)


def _is_number(v: Any) -> bool:
    return isinstance(v, (numbers.Real, np.generic)) and not isinstance(v, bool)


def _polygon_list(polygons: Any) -> list[np.ndarray]:
    """One polygon or a list of them, each as an (n, 2) float array (flat or pair layout)."""
    if isinstance(polygons, np.ndarray) or hasattr(polygons, "detach"):
        polygons = to_numpy(polygons).tolist()
    if not isinstance(polygons, (list, tuple)) or len(polygons) == 0:
        raise InputError(f"polygons must be [x1, y1, x2, y2, ...], [[x, y], ...] or a list of those; got {polygons!r}")
    first = polygons[0]
    if _is_number(first):
        polys = [polygons]  # one flat polygon
    elif isinstance(first, (list, tuple, np.ndarray)) and len(first) == 2 and all(map(_is_number, first)):
        polys = [polygons]  # one polygon of (x, y) pairs
    else:
        polys = list(polygons)
    out = []
    for i, poly in enumerate(polys):
        try:
            arr = np.asarray(to_numpy(poly), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"polygon {i} has non-numeric or ragged coordinates; "
                             "give [x1, y1, x2, y2, ...] or [[x, y], ...] in pixels") from None
        if arr.ndim == 1 and arr.size % 2 == 0:
            arr = arr.reshape(-1, 2)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise InputError(f"polygon {i} has shape {arr.shape}; give an even number of coordinates "
                             "[x1, y1, x2, y2, ...] or [[x, y], ...]")
        if arr.shape[0] < 3:
            raise InputError(f"polygon {i} has {arr.shape[0]} points; a polygon needs at least 3")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"polygon {i} has a NaN or infinite coordinate; give finite pixel coordinates")
        out.append(arr)
    return out


def polygons_to_mask(polygons: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Rasterise the union of polygons (pixel coordinates) to a 0/1 float mask ``(H, W)``.

    Accepts one polygon ``[x1, y1, x2, y2, ...]`` (COCO layout) or ``[[x, y], ...]``, or a list of
    polygons. Uses ``PIL.ImageDraw.polygon``: PIL puts vertex ``(x, y)`` in pixel
    ``(floor(x), floor(y))`` and fills edges inclusively, so the mask can exceed the exact polygon by
    up to one pixel along its border (e.g. the square with corners 0 and 2 fills 3 x 3 pixels).
    For exact area weights use :func:`boxes_to_mask`. Parts outside the image are cut off.

    >>> float(polygons_to_mask([0, 0, 2, 0, 2, 2, 0, 2], (4, 4)).sum())
    9.0
    """
    from PIL import Image, ImageDraw

    width, height = check_size(image_size)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in _polygon_list(polygons):
        draw.polygon([(float(x), float(y)) for x, y in poly], fill=1)
    return np.asarray(canvas, dtype=np.float64)


def as_mask(mask: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Validate a user mask and return it as float64 ``(H, W)`` weights in ``[0, 1]``.

    Accepts a bool array, a 0/1 integer array, a float array with values in ``[0, 1]`` (soft
    weights), a torch tensor or a PIL image of those. Its shape must be ``(H, W)`` of the original
    image, where ``image_size = (W, H)``.

    >>> as_mask([[True, False, False], [False, False, True]], (3, 2)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    width, height = check_size(image_size)
    try:
        arr = np.asarray(to_numpy(mask))
        arr = arr.astype(np.float64) if arr.dtype != object else np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("the mask is not a numeric array; pass a bool or 0/1 array of shape (H, W)") from None
    if arr.shape != (height, width):
        raise InputError(f"mask shape {arr.shape} does not match the image: expected (H, W) = ({height}, {width}) "
                         f"for image_size (W, H) = ({width}, {height}); resize the mask to the original image")
    if not np.all(np.isfinite(arr)):
        raise InputError("the mask holds NaN or infinite values; pass a bool or 0/1 array")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        fix = " (a 0/255 image mask: divide it by 255)" if arr.max() == 255 else ""
        raise InputError(f"mask values must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]; "
                         f"pass a bool or 0/1 mask{fix}")
    return arr


__all__ = ["boxes_to_mask", "polygons_to_mask", "as_mask", "union_cells"]
