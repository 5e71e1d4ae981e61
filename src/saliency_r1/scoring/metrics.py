"""Alignment (energy pointing game) and pointing game of a saliency map against evidence (method.md §3).

With ``S`` the pixel map after ``max(S, 0)`` (negative values are clipped to 0 first: saliency is a
ReLU'd quantity and a negative value must not cancel mass elsewhere) and ``R`` the region weights in
``[0, 1]`` (the union of all boxes and masks given):

    energy_pg = Σ_p S_p R_p / Σ_p S_p          (0 when Σ S = 0 or S is not finite; never NaN)
    pg        = 1 if R > 0 at the arg-max pixel of S, else 0      (0 for an all-zero map)

The map is divided by its maximum before summing, so huge finite values cannot overflow.

Ties for the arg-max (``ties=``): area upsampling makes every interior pixel of the maximal cell tie.
``"centroid"`` (default) takes the maximal pixel nearest to the centroid of all maximal pixels
(the centre of a single maximal cell), ``"first"`` the first in row-major order (``np.argmax``, the
usual numpy code), ``"any"`` counts a hit when any maximal pixel lies in the region. Pixels within a
relative ``1e-9`` of the maximum count as maximal.

:func:`score_grid` computes the same energy-PG without upsampling: it integrates the piecewise-constant
cell map over the exact union of boxes, ``Σ_cells M_c · area(c ∩ union) / Σ_cells M_c · area(c)``,
which equals ``score_map(..., upsample="area")`` whenever the boxes lie on pixel boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ._common import as_grid_map, cell_edges, check_size, interval_overlaps, to_numpy
from .boxes import to_xyxy
from .masks import as_mask, boxes_to_mask, union_cells
from .upsample import map_to_pixels

PG_TIES: tuple[str, ...] = ("centroid", "first", "any")
_TIE_RTOL = 1e-9


def _pair(pixel_map: Any, region: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays of the same 2-D shape; region weights checked to lie in [0, 1]."""
    s = np.asarray(to_numpy(pixel_map), dtype=np.float64)
    r = np.asarray(to_numpy(region), dtype=np.float64)
    if s.ndim != 2 or s.shape != r.shape:
        raise InputError(f"pixel map {s.shape} and region {r.shape} must be 2-D arrays of the same (H, W) shape; "
                         "upsample the map with map_to_pixels first")
    if not np.all(np.isfinite(r)) or (r.size and (r.min() < 0 or r.max() > 1)):
        raise InputError("region weights must be finite and lie in [0, 1]; build them with boxes_to_mask or as_mask")
    return s, r


def _normalised(s: np.ndarray) -> np.ndarray | None:
    """``max(s, 0) / max(s)``, or None when the map is all zero or not finite."""
    if s.size == 0 or not np.all(np.isfinite(s)):
        return None
    s = np.maximum(s, 0.0)
    top = s.max()
    return s / top if top > 0 else None


def alignment(pixel_map: Any, region: Any) -> float:
    """Energy pointing game ``Σ S·R / Σ S`` in ``[0, 1]`` (0 for an all-zero or non-finite map).

    ``pixel_map`` ``(H, W)``: negative values are clipped to 0. ``region`` ``(H, W)``: weights in ``[0, 1]``.

    >>> alignment([[1.0, 3.0]], [[0.0, 1.0]])
    0.75
    """
    s, r = _pair(pixel_map, region)
    s = _normalised(s)
    if s is None:
        return 0.0
    return float(np.clip((s * r).sum() / s.sum(), 0.0, 1.0))


def pointing_game(pixel_map: Any, region: Any, ties: str = "centroid") -> float:
    """1.0 when the arg-max pixel of the map has region weight > 0, else 0.0 (0.0 for an all-zero map).

    ``ties``: ``"centroid"`` | ``"first"`` | ``"any"`` (module docstring).

    >>> pointing_game([[0.0, 2.0, 2.0, 2.0]], [[0.0, 0.0, 1.0, 0.0]])
    1.0
    """
    if ties not in PG_TIES:
        raise InputError(f"unknown ties rule {ties!r}; use one of {', '.join(PG_TIES)}")
    s, r = _pair(pixel_map, region)
    s = _normalised(s)
    if s is None:
        return 0.0
    if ties == "first":
        return float(r.flat[int(np.argmax(s))] > 0)
    rows, cols = np.nonzero(s >= 1.0 - _TIE_RTOL)
    if ties == "any":
        return float(np.any(r[rows, cols] > 0))
    dist = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    k = int(np.argmin(dist))
    return float(r[rows[k], cols[k]] > 0)


def _as_mask_list(masks: Any) -> list[Any]:
    """One mask (array, tensor, PIL image, nested rows) or several (a list, or an ``(n, H, W)`` array)."""
    if isinstance(masks, (list, tuple)):
        if not masks:
            raise InputError("empty list of masks; pass masks=None or at least one (H, W) mask")
        first = masks[0]
        rows = isinstance(first, (list, tuple)) and not any(
            isinstance(v, (list, tuple, np.ndarray)) or hasattr(v, "detach") for v in first)
        return [masks] if rows else list(masks)
    if getattr(masks, "ndim", 2) == 3:
        return list(to_numpy(masks))
    return [masks]


def region_mask(image_size: tuple[int, int], boxes: Any = None, masks: Any = None,
                box_format: str = "xyxy") -> np.ndarray:
    """Union of boxes (exact fractional coverage) and masks as float64 ``(H, W)`` weights in ``[0, 1]``.

    Union of weights is the pointwise maximum (exact for 0/1 masks; the boxes' union is exact).
    At least one of ``boxes`` / ``masks`` is required; ``masks`` is one ``(H, W)`` mask or a list.

    >>> region_mask((2, 1), boxes=[0, 0, 1, 1], masks=[[0, 1]]).tolist()
    [[1.0, 1.0]]
    """
    if boxes is None and masks is None:
        raise InputError("no evidence given; pass boxes=[x1, y1, x2, y2] (or a list) and/or masks=(H, W) arrays")
    width, height = check_size(image_size)
    region = np.zeros((height, width), dtype=np.float64)
    if boxes is not None:
        region = boxes_to_mask(to_xyxy(boxes, box_format, (width, height)), (width, height))
    if masks is not None:
        for m in _as_mask_list(masks):
            region = np.maximum(region, as_mask(m, (width, height)))
    return region


def score_map(grid_map: Any, image_size: tuple[int, int], resized_size: tuple[int, int] | None = None,
              boxes: Any = None, masks: Any = None, box_format: str = "xyxy", upsample: str = "area",
              *, pg_ties: str = "centroid") -> dict[str, float]:
    """Upsample an ``(h, w)`` map to the original pixels and score it against the union of boxes/masks.

    Returns ``{"energy_pg": alignment, "pg": pointing game}``, both floats in ``[0, 1]``. ``upsample``:
    ``"area"`` or ``"bilinear"`` (:func:`~saliency_r1.scoring.upsample.map_to_pixels`). Negative cells
    are clipped to 0 before upsampling (so a negative cell cannot cancel a positive neighbour).
    ``pg_ties``: the arg-max tie rule of :func:`pointing_game`.

    >>> score_map([[1.0, 3.0]], (4, 2), (56, 28), boxes=[2, 0, 4, 2])
    {'energy_pg': 0.75, 'pg': 1.0}
    """
    width, height = check_size(image_size)
    region = region_mask((width, height), boxes=boxes, masks=masks, box_format=box_format)
    grid = np.maximum(as_grid_map(grid_map), 0.0)  # clip before upsampling, as score_grid does
    pixels = map_to_pixels(grid, (width, height), resized_size, mode=upsample)
    return {"energy_pg": alignment(pixels, region), "pg": pointing_game(pixels, region, ties=pg_ties)}


def score_grid(grid_map: Any, image_size: tuple[int, int], boxes_xyxy: Any, *, box_format: str = "xyxy") -> float:
    """Energy-PG computed on the grid, without upsampling (cheap path for training rewards).

    ``Σ_c M_c · area(c ∩ union of boxes) / Σ_c M_c · area(c)`` with cells of ``W/w x H/h`` original
    pixels, ``M = max(map, 0)``; 0 for an all-zero or non-finite map. The overlap areas use the
    elementary rectangles cut by the box edges, as in :func:`~saliency_r1.scoring.masks.boxes_to_mask`.

    >>> score_grid([[1.0, 3.0]], (4, 2), [2, 0, 4, 2])
    0.75
    """
    m = _normalised(as_grid_map(grid_map))
    width, height = check_size(image_size)
    boxes = to_xyxy(boxes_xyxy, box_format, (width, height))
    if m is None:
        return 0.0
    inside_area, cell_area = _inside_area(m.shape, (width, height), boxes)
    return float(np.clip((m * inside_area).sum() / (m.sum() * cell_area), 0.0, 1.0))


def _inside_area(grid: tuple[int, int], size: tuple[int, int], boxes: np.ndarray) -> tuple[np.ndarray, float]:
    """``(h, w)`` area of each grid cell inside the union of ``(n, 4)`` xyxy boxes, and one cell's area."""
    (h, w), (width, height) = grid, size
    xs, ys, covered = union_cells(boxes)  # covered: (ny, nx)
    oy = interval_overlaps(cell_edges(h, height), ys)  # (h, ny)
    ox = interval_overlaps(cell_edges(w, width), xs)  # (w, nx)
    return oy @ covered @ ox.T, (width / w) * (height / h)


def cell_coverage(grid: tuple[int, int], image_size: tuple[int, int], boxes_xyxy: Any, *,
                  box_format: str = "xyxy") -> np.ndarray:
    """``(h, w)`` share of each grid cell's area inside the union of the boxes: the weights
    :func:`score_grid` puts on the map (``score_grid(M) = Σ M·coverage / Σ M`` for ``M >= 0``); zeros without boxes.

    >>> cell_coverage((1, 2), (4, 2), [1, 0, 4, 2]).tolist()
    [[0.5, 1.0]]
    """
    width, height = check_size(image_size)
    if boxes_xyxy is None or len(boxes_xyxy) == 0:
        return np.zeros(tuple(grid))
    inside_area, cell_area = _inside_area(tuple(grid), (width, height), to_xyxy(boxes_xyxy, box_format, (width, height)))
    return inside_area / cell_area


def score_grids(grid_maps: Sequence[Any], image_sizes: Sequence[tuple[int, int]], boxes: Sequence[Any],
                *, box_format: str = "xyxy") -> np.ndarray:
    """:func:`score_grid` over a batch: ``out[b] = score_grid(grid_maps[b], image_sizes[b], boxes[b])``.

    ``boxes[b]`` is one box or a list of boxes for sample ``b``. Returns float64 ``(B,)``.

    >>> score_grids([[[1.0, 3.0]], [[2.0, 2.0]]], [(4, 2), (4, 2)], [[2, 0, 4, 2], [0, 0, 1, 2]]).tolist()
    [0.75, 0.25]
    """
    if not (len(grid_maps) == len(image_sizes) == len(boxes)):
        raise InputError(f"score_grids needs one image size and one box list per map; got {len(grid_maps)} maps, "
                         f"{len(image_sizes)} image sizes and {len(boxes)} box entries")
    return np.array([score_grid(m, size, b, box_format=box_format)
                     for m, size, b in zip(grid_maps, image_sizes, boxes)], dtype=np.float64)


__all__ = ["PG_TIES", "alignment", "pointing_game", "region_mask", "score_map", "score_grid", "score_grids",
           "cell_coverage"]
