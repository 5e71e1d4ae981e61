"""Small helpers shared by the scoring modules: array conversion, size checks, interval overlaps.

Coordinates everywhere in :mod:`saliency_r1.scoring` are continuous pixel coordinates of the original
image: pixel column ``c`` covers ``[c, c + 1)`` in x, pixel row ``r`` covers ``[r, r + 1)`` in y, so an
image of size ``(W, H)`` spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import InputError


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors (any device/dtype) become float64 on the CPU.

    Torch is never imported here: a tensor is recognised by its ``detach``/``cpu`` methods.

    >>> to_numpy([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().double().numpy()
    return np.asarray(x)


def as_grid_map(grid_map: Any) -> np.ndarray:
    """Validate a merged-patch map: a 2-D ``(h, w)`` numeric array, returned as float64.

    >>> as_grid_map([[0, 1], [2, 3]]).dtype
    dtype('float64')
    """
    try:
        arr = to_numpy(grid_map).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the saliency map is not numeric ({exc}); pass a 2-D (h, w) array or tensor") from None
    if arr.ndim != 2 or 0 in arr.shape:
        hint = " (token_maps are (N, h, w): pick one token's map)" if arr.ndim == 3 else ""
        raise InputError(f"the saliency map must be a non-empty 2-D (h, w) array; got shape {arr.shape}{hint}")
    return arr


def check_size(size: Any, name: str = "image_size") -> tuple[int, int]:
    """Validate ``(width, height)``: two positive whole numbers; return them as ints.

    >>> check_size((640.0, 480))
    (640, 480)
    """
    try:
        vals = list(size)
    except TypeError:
        vals = []
    ok = len(vals) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0 and float(v) == int(v)
        for v in vals)
    if not ok:
        raise InputError(f"{name} must be (width, height) in pixels, two positive whole numbers; got {size!r}")
    return int(vals[0]), int(vals[1])


def interval_overlaps(a_edges: np.ndarray, b_edges: np.ndarray) -> np.ndarray:
    """Overlap lengths between two partitions of the line.

    ``O[i, j] = max(0, min(a[i+1], b[j+1]) - max(a[i], b[j]))`` for the intervals ``[a[i], a[i+1]]``
    and ``[b[j], b[j+1]]``; shape ``(len(a) - 1, len(b) - 1)``. Edges must be non-decreasing.

    >>> interval_overlaps(np.array([0., 1., 2.]), np.array([0., 1.5, 2.])).tolist()
    [[1.0, 0.0], [0.5, 0.5]]
    """
    hi = np.minimum.outer(a_edges[1:], b_edges[1:])
    lo = np.maximum.outer(a_edges[:-1], b_edges[:-1])
    return np.maximum(hi - lo, 0.0)


def pixel_edges(n: int) -> np.ndarray:
    """Edges ``0, 1, ..., n`` of ``n`` unit pixels, float64.

    >>> pixel_edges(3).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    return np.arange(n + 1, dtype=np.float64)


def cell_edges(n_cells: int, extent: int) -> np.ndarray:
    """Edges of ``n_cells`` equal cells tiling ``[0, extent]`` (exact end points).

    >>> cell_edges(2, 5).tolist()
    [0.0, 2.5, 5.0]
    """
    return np.linspace(0.0, float(extent), n_cells + 1)


__all__: list[str] = []
