"""Helpers shared by the PNG and HTML renderers: atomic writes, boxes, token text, colour maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .._io import atomic_write  # noqa: F401  (the one crash-safe write; viz modules import it from here)

CMAP = "viridis"  # perceptually uniform, colour-blind safe, prints in grey scale

Box = Sequence[float]


def to_numpy(grid: Any) -> np.ndarray:
    """A map (torch tensor, array, nested list) as a float64 array with NaN/inf replaced by 0."""
    if hasattr(grid, "detach"):
        grid = grid.detach().float().cpu().numpy()
    arr = np.asarray(grid, dtype=np.float64)
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def check_box(box: Box) -> tuple[float, float, float, float]:
    """One pixel ``xyxy`` box as four floats; raises InputError on a malformed one."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise InputError(f"a box must be 4 numbers x0, y0, x1, y1 in pixels; got {box!r}") from exc
    if not (x1 >= x0 and y1 >= y0):
        raise InputError(f"box {box!r} has x1 < x0 or y1 < y0; pass pixel xyxy boxes")
    return x0, y0, x1, y1


def boxes_for_image(boxes: Sequence[Box] | Mapping[int, Sequence[Box]] | None,
                    image: int) -> list[tuple[float, float, float, float]]:
    """The boxes of image ``image``: a mapping is ``{image index: boxes}``, a plain list means image 0."""
    if boxes is None:
        return []
    if isinstance(boxes, Mapping):
        chosen = boxes.get(image, [])
    else:
        chosen = boxes if image == 0 else []
    return [check_box(b) for b in chosen]


def token_label(token: str, limit: int | None = None) -> str:
    """A token made visible as plain text: newlines/tabs shown as ``\\n``/``\\t``, empty as ``∅``."""
    text = token.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if not text.strip():
        text = "␣" * len(text) if text else "∅"
    if limit is not None and len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    return text


def token_mass(token_maps: Sequence[Any]) -> np.ndarray:
    """``(N,)`` how much each response token draws on the image(s): the sum of its maps over all
    images, divided by the largest such sum (all zeros when every map is zero)."""
    total = None
    for maps in token_maps:
        arr = to_numpy(maps)
        s = arr.reshape(arr.shape[0], -1).sum(axis=1) if arr.size else np.zeros(arr.shape[0])
        total = s if total is None else total + s
    if total is None:
        return np.zeros(0)
    top = float(total.max()) if total.size else 0.0
    return total / top if top > 0 else np.zeros_like(total)


def span_kind(result: Any, k: int) -> str:
    """``"think"``, ``"answer"`` or ``"other"`` for response token ``k`` (absolute spans)."""
    pos = result.response_start + k
    for name, span in (("think", result.think_span), ("answer", result.answer_span)):
        if span is not None and span[0] <= pos < span[1]:
            return name
    return "other"


def colormap_lut(name: str = CMAP) -> np.ndarray:
    """``(256, 3)`` uint8 RGB table of a matplotlib colour map."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return (rgba[:, :3] * 255 + 0.5).astype(np.uint8)


def check_image_index(result: Any, image: int) -> None:
    """Raise InputError unless ``image`` indexes one of the result's images."""
    if not 0 <= image < len(result.token_maps):
        raise InputError(f"image={image} is out of range: this result has {len(result.token_maps)} "
                         "image(s), numbered from 0")


def base_image(result: Any, image: int):
    """The original image ``image`` of a result, or a light grey stand-in of its size when the
    result carries no images."""
    from PIL import Image

    if result.images is not None and image < len(result.images) and result.images[image] is not None:
        return result.images[image].convert("RGB")
    width, height = result.image_sizes[image]
    return Image.new("RGB", (int(width), int(height)), (200, 200, 200))
