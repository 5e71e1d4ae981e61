"""Pixel perturbations of the deletion and insertion tests (method.md §5).

A merged-patch map is laid on the original pixels with exact area upsampling
(:func:`saliency_r1.scoring.map_to_pixels`, ``mode="area"``) and the ``H·W`` pixels are ranked by
descending saliency. Ties (every interior pixel of one cell ties under area upsampling) are broken
deterministically by row-major pixel index, smallest first (a stable sort); non-finite values rank
last. For a fraction ``f`` the top ``k = round(f · H · W)`` pixels are

* deletion: replaced by the blank image's pixels (the rest of the image is kept);
* insertion: pasted onto the blank image (the rest is blank).

So ``f = 0`` gives the original (deletion) or the blank (insertion), ``f = 1`` the reverse.

Blanks (:data:`BLANKS`): ``black`` (all zeros), ``mean`` (the image's mean colour, per channel),
``blur`` (``PIL.ImageFilter.GaussianBlur`` of the image, radius ``blur_radius`` pixels, default
``max(W, H) / 16``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError
from ..scoring import map_to_pixels

BLANKS: tuple[str, ...] = ("black", "mean", "blur")
MODES: tuple[str, ...] = ("deletion", "insertion")


def make_blank(image: Image.Image, blank: str = "black", blur_radius: float | None = None) -> Image.Image:
    """The blank reference image of ``image`` (same size, RGB).

    >>> make_blank(Image.new("RGB", (4, 2), (10, 20, 30)), "mean").getpixel((0, 0))
    (10, 20, 30)
    """
    image = image.convert("RGB")
    if blank == "black":
        return Image.new("RGB", image.size, (0, 0, 0))
    if blank == "mean":
        mean = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(0)
        return Image.new("RGB", image.size, tuple(int(round(c)) for c in mean))
    if blank == "blur":
        radius = float(blur_radius) if blur_radius is not None else max(image.size) / 16.0
        return image.filter(ImageFilter.GaussianBlur(radius))
    raise InputError(f"unknown blank {blank!r}; use one of {', '.join(BLANKS)}")


def pixel_order(pixel_map: Any) -> np.ndarray:
    """Flat pixel indices by descending value; ties by ascending index; NaN/inf last.

    >>> pixel_order(np.array([[1.0, 3.0], [3.0, np.nan]])).tolist()
    [1, 2, 0, 3]
    """
    v = np.asarray(pixel_map, dtype=np.float64).ravel()
    key = np.where(np.isfinite(v), -v, np.inf)
    return np.argsort(key, kind="stable")


def rank_pixels(grid_map: Any, image_size: tuple[int, int], resized_size: tuple[int, int] | None = None
                ) -> np.ndarray:
    """Rank the original image's pixels by an ``(h, w)`` map (area upsampling); see :func:`pixel_order`.

    >>> rank_pixels([[0.0, 1.0]], (4, 1)).tolist()
    [2, 3, 0, 1]
    """
    grid = np.asarray(grid_map.detach().cpu().numpy() if hasattr(grid_map, "detach") else grid_map,
                      dtype=np.float64)
    return pixel_order(map_to_pixels(grid, image_size, resized_size, mode="area"))  # (H * W,)


def top_mask(order: np.ndarray, fraction: float, shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the ``round(fraction · H · W)`` first pixels of ``order``.

    >>> top_mask(np.array([3, 0, 1, 2]), 0.5, (2, 2)).tolist()
    [[True, False], [False, True]]
    """
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"perturbation fraction {fraction} is outside [0, 1]")
    n = shape[0] * shape[1]
    mask = np.zeros(n, dtype=bool)
    mask[order[:int(round(fraction * n))]] = True
    return mask.reshape(shape)


def perturb(image: Image.Image, blank: Image.Image, order: np.ndarray, fractions, mode: str) -> list[Image.Image]:
    """One perturbed image per fraction: ``deletion`` blanks the top pixels, ``insertion`` keeps only them.

    >>> img, blk = Image.new("RGB", (2, 1), "white"), Image.new("RGB", (2, 1))
    >>> [im.getpixel((0, 0)) for im in perturb(img, blk, np.array([0, 1]), [0.5], "deletion")]
    [(0, 0, 0)]
    """
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if image.size != blank.size:
        raise InputError("the blank must have the image's size")
    a = np.asarray(image.convert("RGB"))  # (H, W, 3)
    b = np.asarray(blank.convert("RGB"))  # (H, W, 3)
    out = []
    for f in fractions:
        m = top_mask(order, float(f), a.shape[:2])[..., None]  # (H, W, 1)
        out.append(Image.fromarray(np.where(m, b, a) if mode == "deletion" else np.where(m, a, b)))
    return out


__all__ = ["BLANKS", "MODES", "make_blank", "pixel_order", "rank_pixels", "top_mask", "perturb"]
