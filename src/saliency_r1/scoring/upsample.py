"""Lay a merged-patch map on the original image's pixels (method.md §3).

Geometry: the processor resizes the original image ``(W, H)`` to ``(W_r, H_r)`` by a uniform scale per
axis, and the ``(h, w)`` grid tiles the resized image exactly. Mapped back, grid cell ``(i, j)`` is the
rectangle ``[j W/w, (j+1) W/w) x [i H/h, (i+1) H/h)`` of the original image, whatever ``W_r, H_r``
are (they only serve to validate the call).

Both modes are linear maps ``P = Ry @ M @ Rx.T`` with ``Ry`` ``(H, h)`` and ``Rx`` ``(W, w)``, no
per-pixel Python loop:

* ``area`` (default): ``Ry[r, i]`` = overlap length of pixel row ``[r, r+1)`` with cell row ``i``
  (same for ``Rx``), so each pixel gets the area-weighted mean of the cells it overlaps: exact
  piecewise-constant upsampling. Total mass is kept: ``Σ P = Σ M · (W/w)(H/h)``.
* ``bilinear``: ``align_corners=False`` interpolation, as ``cv2.resize(INTER_LINEAR)`` and
  ``torch.nn.functional.interpolate(mode="bilinear")``: source coordinate
  ``s = (r + 0.5) h / H - 0.5`` clamped to ``[0, h - 1]``, weights ``1 - frac(s)`` and ``frac(s)``
  on ``floor(s)`` and ``floor(s) + 1`` (the paper authors' interpolation, for parity).

Both are convex combinations of cell values, so a non-negative map stays non-negative and a
constant map stays constant. NaN/inf in the map propagate (the metrics then score 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ._common import as_grid_map, cell_edges, check_size, interval_overlaps, pixel_edges

UPSAMPLE_MODES: tuple[str, ...] = ("area", "bilinear")


def area_matrix(n_pixels: int, n_cells: int) -> np.ndarray:
    """``(n_pixels, n_cells)`` overlap lengths of unit pixels with ``n_cells`` equal cells on ``[0, n_pixels]``.

    Rows sum to 1 (every pixel is tiled by cells); column ``j`` sums to the cell size ``n_pixels / n_cells``.

    >>> area_matrix(3, 2).tolist()
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    """
    return interval_overlaps(pixel_edges(n_pixels), cell_edges(n_cells, n_pixels))


def bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` 1-D linear interpolation weights, ``align_corners=False``, border replicated.

    ``s = (k + 0.5) n_in / n_out - 0.5`` clamped to ``[0, n_in - 1]``; output ``k`` takes
    ``1 - frac(s)`` of input ``floor(s)`` and ``frac(s)`` of ``min(floor(s) + 1, n_in - 1)``. Rows sum to 1.

    >>> bilinear_matrix(4, 2).tolist()
    [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    rows = np.arange(n_out)
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def _check_resized(resized_size: Any, grid: tuple[int, int]) -> None:
    """The grid must fit in the resized image it tiles (one cell is at least one resized pixel)."""
    if resized_size is None:
        return
    w_r, h_r = check_size(resized_size, "resized_size")
    h, w = grid
    if w > w_r or h > h_r:
        raise InputError(f"a ({h}, {w}) grid cannot tile a resized image of (W, H) = ({w_r}, {h_r}); "
                         "pass resized_size=(width, height) after the processor's resize, and the map as (h, w)")


def map_to_pixels(grid_map: Any, image_size: tuple[int, int], resized_size: tuple[int, int] | None = None,
                  mode: str = "area") -> np.ndarray:
    """Upsample an ``(h, w)`` merged-patch map to float64 ``(H, W)`` over the original image.

    ``image_size = (W, H)`` original; ``resized_size = (W_r, H_r)`` after the processor (optional,
    validation only: cells map to ``W/w x H/h`` original pixels). ``mode``: ``"area"`` (exact
    piecewise constant, default) or ``"bilinear"`` (``align_corners=False``). See the module docstring.

    >>> map_to_pixels([[1.0, 3.0]], (3, 1), (56, 28)).tolist()
    [[1.0, 2.0, 3.0]]
    """
    grid = as_grid_map(grid_map)
    width, height = check_size(image_size)
    _check_resized(resized_size, grid.shape)
    h, w = grid.shape
    if mode == "area":
        ry, rx = area_matrix(height, h), area_matrix(width, w)
    elif mode == "bilinear":
        ry, rx = bilinear_matrix(height, h), bilinear_matrix(width, w)
    else:
        raise InputError(f"unknown upsample mode {mode!r}; use one of {', '.join(UPSAMPLE_MODES)}")
    return ry @ grid @ rx.T  # (H, h) @ (h, w) @ (w, W)


__all__ = ["UPSAMPLE_MODES", "map_to_pixels", "area_matrix", "bilinear_matrix"]
