"""Static PNG figures of saliency maps (matplotlib, Agg backend, no pyplot global state).

Display upsampling: a map's ``(h, w)`` grid is stretched over the whole original image with
*nearest* resampling (each cell is a flat ``W/w x H/h`` pixel block), so what you see is exactly
the grid the method computes, with no smoothing that would invent detail between cells.
Colours: ``viridis`` (perceptually uniform); 0 is dark purple, the map's maximum is yellow.
Every file is written atomically (temporary sibling + ``os.replace``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._common import (CMAP, Box, atomic_write, base_image, check_box, check_image_index, to_numpy,
                      token_label, token_mass)

_CBAR_IN = 0.85   # colour bar + its tick labels, inches
_MARGIN_IN = 0.08
_TITLE_IN = 0.42
_BOX_COLOUR = "#ff3b30"
_CBAR_LABEL = "logit contribution (ReLU)"


def _layout(size: tuple[int, int], width_px: int, dpi: int, title: bool, colorbar: bool):
    """Figure size (inches) and axes rectangles (figure fractions) of :func:`overlay_png`."""
    width, height = size
    fig_w = (width_px + 0.25) / dpi
    img_w = fig_w - 2 * _MARGIN_IN - (_CBAR_IN if colorbar else 0.0)
    img_h = img_w * height / max(width, 1)
    top = _TITLE_IN if title else _MARGIN_IN
    # whole pixels (+1/4 so Agg's int() truncation cannot lose one): a predictable PNG size
    fig_h = (round((img_h + top + _MARGIN_IN) * dpi) + 0.25) / dpi
    ax_rect = (_MARGIN_IN / fig_w, _MARGIN_IN / fig_h, img_w / fig_w, img_h / fig_h)
    cax_rect = ((_MARGIN_IN + img_w + 0.1) / fig_w, _MARGIN_IN / fig_h, 0.16 / fig_w, img_h / fig_h)
    return (fig_w, fig_h), ax_rect, cax_rect


def _draw_boxes(ax, boxes: Sequence[Box], lw: float = 2.0) -> None:
    halo = [patheffects.withStroke(linewidth=lw + 2, foreground="white")]
    for box in boxes:
        x0, y0, x1, y1 = check_box(box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=_BOX_COLOUR,
                               linewidth=lw, path_effects=halo))


def _draw_overlay(ax, img, grid: np.ndarray | None, size: tuple[int, int], alpha: float,
                  vmin: float, vmax: float, cmap: str):
    """Image plus (optionally) its map on ``ax``; returns the map's artist or None."""
    width, height = size
    extent = (0, width, height, 0)
    ax.imshow(np.asarray(img), extent=extent, interpolation="antialiased")
    mappable = None
    if grid is not None:
        mappable = ax.imshow(grid, extent=extent, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
                             interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    return mappable


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing")
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=fig.dpi))


def _limits(grid: np.ndarray | None, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = vmin if vmin is not None else min(0.0, float(grid.min())) if grid is not None else 0.0
    hi = vmax if vmax is not None else float(grid.max()) if grid is not None else 1.0
    return lo, hi if hi > lo else lo + 1.0


def overlay_png(image: Any, grid_map: Any, path: str | Path, boxes: Sequence[Box] | None = None,
                title: str | None = None, colorbar: bool = True, *, width_px: int = 640,
                dpi: int = 100, alpha: float = 0.55, vmin: float | None = None,
                vmax: float | None = None, cmap: str = CMAP) -> Path:
    """Write ``grid_map`` (``(h, w)``; None: the image alone) over ``image`` (PIL) as a PNG.

    The map is stretched over the whole image (nearest: one flat block per grid cell); ``boxes``
    are pixel ``xyxy`` boxes of the original image, drawn as red outlines. The PNG is ``width_px``
    wide; its height follows the image's aspect ratio. Titles are plain text (no mathtext).

    >>> import tempfile, torch
    >>> from PIL import Image
    >>> out = tempfile.mkdtemp()
    >>> p = overlay_png(Image.new("RGB", (64, 48)), torch.rand(6, 8), f"{out}/m.png",
    ...                 boxes=[(8, 8, 40, 30)], title="price: $5")
    >>> Image.open(p).size[0]
    640
    """
    grid = None if grid_map is None else to_numpy(grid_map)
    if grid is not None and grid.ndim != 2:
        raise ValueError(f"grid_map must be 2-D (h, w); got shape {grid.shape}")
    size = image.size
    (fig_w, fig_h), ax_rect, cax_rect = _layout(size, width_px, dpi, title is not None, colorbar)
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    ax = fig.add_axes(ax_rect)
    lo, hi = _limits(grid, vmin, vmax)
    mappable = _draw_overlay(ax, image.convert("RGB"), grid, size, alpha, lo, hi, cmap)
    _draw_boxes(ax, boxes or [])
    if title is not None:
        fig.text(0.5, 1 - (_TITLE_IN / 2) / fig_h, title, ha="center", va="center", fontsize=11,
                 parse_math=False)
    if colorbar and mappable is not None:
        cbar = fig.colorbar(mappable, cax=fig.add_axes(cax_rect))
        cbar.solids.set_alpha(1.0)
        cbar.ax.tick_params(labelsize=7)
        cbar.set_label(_CBAR_LABEL, fontsize=7)
    return _save(fig, path)


def holistic_png(result: Any, path: str | Path, image: int = 0,
                 boxes: Sequence[Box] | None = None) -> Path:
    """PNG of the holistic map of image ``image`` over that image, with evidence ``boxes``
    (pixel ``xyxy`` of that image). When the result has no holistic map the image is drawn alone
    and the title gives ``holistic_reason``.

    >>> import tempfile
    >>> from saliency_r1.viz import synthetic_result
    >>> p = holistic_png(synthetic_result(), f"{tempfile.mkdtemp()}/h.png", boxes=[(10, 10, 90, 70)])
    >>> p.name
    'h.png'
    """
    check_image_index(result, image)
    img = base_image(result, image)
    if result.holistic is None:
        reason = result.holistic_reason or "not computed"
        return overlay_png(img, None, path, boxes=boxes, title=f"no holistic map: {reason}")
    suffix = f" (image {image})" if len(result.token_maps) > 1 else ""
    return overlay_png(img, result.holistic[image], path, boxes=boxes,
                       title=f"holistic map{suffix}")


def _pick_tokens(result: Any, max_tokens: int) -> list[int]:
    """Indices of the tokens to show: all, or the ``max_tokens`` with the most image mass, in order."""
    n = len(result.tokens)
    if n <= max_tokens:
        return list(range(n))
    mass = token_mass(result.token_maps)
    top = np.argsort(-mass, kind="stable")[:max_tokens]
    return sorted(int(k) for k in top)


def _thumbnail(img, cell_px: int):
    small = img.copy()
    small.thumbnail((max(cell_px * 2, 8), max(cell_px * 2, 8)))
    return small


def token_grid_png(result: Any, path: str | Path, image: int = 0, max_tokens: int = 48,
                   cols: int = 8, *, width_px: int = 1280, dpi: int = 100) -> Path:
    """PNG grid of per-token maps of image ``image``, each titled with its index and token text.

    All panels share one colour scale (one colour bar) so their strengths compare. With more than
    ``max_tokens`` tokens, the ``max_tokens`` drawing most on the image(s) are shown, in order.

    >>> import tempfile
    >>> from saliency_r1.viz import synthetic_result
    >>> p = token_grid_png(synthetic_result(), f"{tempfile.mkdtemp()}/t.png", max_tokens=8, cols=4)
    >>> p.suffix
    '.png'
    """
    check_image_index(result, image)
    if max_tokens < 1 or cols < 1:
        raise ValueError("max_tokens and cols must be at least 1")
    chosen = _pick_tokens(result, max_tokens)
    maps = to_numpy(result.token_maps[image])
    img = base_image(result, image)
    width, height = img.size
    cols = max(1, min(cols, len(chosen) or 1))
    rows = max(1, math.ceil(len(chosen) / cols))
    fig_w = (width_px + 0.25) / dpi
    cell_w = (fig_w - _CBAR_IN - 2 * _MARGIN_IN) / cols
    cell_h = cell_w * height / max(width, 1) + 0.3
    fig_h = (round((rows * cell_h + _TITLE_IN + _MARGIN_IN) * dpi) + 0.25) / dpi
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    thumb = _thumbnail(img, int(cell_w * dpi))
    vmax = float(maps[chosen].max()) if chosen else 1.0
    lo, hi = _limits(maps[chosen] if chosen else None, 0.0, vmax if vmax > 0 else None)
    mappable = None
    for slot, k in enumerate(chosen):
        r, c = divmod(slot, cols)
        rect = ((_MARGIN_IN + c * cell_w + 0.03) / fig_w,
                1 - (_TITLE_IN + (r + 1) * cell_h - 0.02) / fig_h,
                (cell_w - 0.06) / fig_w, (cell_h - 0.32) / fig_h)
        ax = fig.add_axes(rect)
        mappable = _draw_overlay(ax, thumb, maps[k], (width, height), 0.6, lo, hi, CMAP)
        ax.set_title(f"{k}: {token_label(result.tokens[k], 16)}", fontsize=7, parse_math=False,
                     pad=2)
    shown = f"{len(chosen)} of {len(result.tokens)} tokens"
    if len(chosen) < len(result.tokens):
        shown += " (those drawing most on the image)"
    fig.text(0.5, 1 - (_TITLE_IN / 2) / fig_h, f"per-token maps, image {image}: {shown}",
             ha="center", va="center", fontsize=11, parse_math=False)
    if mappable is not None:
        cax = fig.add_axes(((fig_w - _CBAR_IN + 0.1) / fig_w, _MARGIN_IN / fig_h, 0.14 / fig_w,
                            (fig_h - _TITLE_IN - _MARGIN_IN) / fig_h))
        cbar = fig.colorbar(mappable, cax=cax)
        cbar.solids.set_alpha(1.0)
        cbar.ax.tick_params(labelsize=7)
        cbar.set_label(_CBAR_LABEL, fontsize=7)
    return _save(fig, path)


__all__ = ["overlay_png", "holistic_png", "token_grid_png"]
