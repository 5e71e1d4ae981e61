"""Score saliency maps against evidence boxes and masks (method.md §3). Pure numpy; tensors accepted.

Pipeline: boxes in any convention → pixel xyxy of the original image (:mod:`.boxes`) → a weight
mask (:mod:`.masks`); the ``(h, w)`` merged-patch map → original pixels (:mod:`.upsample`, exact
area by default); then energy-PG and PG (:mod:`.metrics`). :func:`score_grid` is the cheap exact
grid-level energy-PG for training rewards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .boxes import BOX_FORMATS, authors_box_bug, from_xyxy, parse_box_string, to_xyxy
from .masks import as_mask, boxes_to_mask, polygons_to_mask
from .metrics import PG_TIES, alignment, pointing_game, region_mask, score_grid, score_grids, score_map
from .upsample import UPSAMPLE_MODES, map_to_pixels

if TYPE_CHECKING:
    from ..attribution.result import SaliencyResult

MAP_KINDS: tuple[str, ...] = ("holistic", "think", "answer", "attn")


def _pick_map(result: "SaliencyResult", which: str | int, image: int) -> Any:
    """The ``(h, w)`` map of ``which`` for image ``image``, or an InputError saying why there is none."""
    if isinstance(which, bool) or not isinstance(which, (str, int)):
        raise InputError(f"which must be one of {', '.join(MAP_KINDS)} or a response token index; got {which!r}")
    if isinstance(which, int):
        maps = result.token_maps[image]  # (N, h, w)
        n = len(maps)
        if not -n <= which < n:
            raise InputError(f"token index {which} is out of range: the response has {n} tokens")
        return maps[which]
    if which not in MAP_KINDS:
        raise InputError(f"unknown map {which!r}; use one of {', '.join(MAP_KINDS)} or a response token index")
    maps = getattr(result, which)
    if maps is None:
        reason = getattr(result, "holistic_reason", None) if which == "holistic" else None
        why = reason or "it was not computed for this result"
        raise InputError(f"the {which!r} map is not available ({why}); score another map "
                         "(which='answer' or a token index) or recompute the result with it")
    return maps[image]


def score_result(result: "SaliencyResult", boxes: Any = None, masks: Any = None, box_format: str = "xyxy",
                 image: int = 0, which: str | int = "holistic", upsample: str = "area") -> dict[str, float]:
    """Energy-PG and PG of one map of a :class:`~saliency_r1.attribution.result.SaliencyResult`.

    ``which``: ``"holistic"``, ``"think"``, ``"answer"``, ``"attn"`` or an int ``k`` (response token
    ``k``'s map, negative counts from the end); ``image``: which image of the prompt. Uses
    ``result.image_sizes[image]`` and ``result.resized_sizes[image]``; see :func:`score_map`.
    Returns ``{"energy_pg": float, "pg": float}``. Also ``saliency_r1.score``.

    >>> from types import SimpleNamespace
    >>> r = SimpleNamespace(holistic=[[[1.0, 3.0]]], image_sizes=[(4, 2)], resized_sizes=[(56, 28)])
    >>> score_result(r, boxes=[2, 0, 4, 2])
    {'energy_pg': 0.75, 'pg': 1.0}
    """
    n_images = len(result.image_sizes)
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < n_images:
        raise InputError(f"image={image!r} is out of range: the result has {n_images} image(s), pass 0..{n_images - 1}")
    grid_map = _pick_map(result, which, image)
    return score_map(grid_map, result.image_sizes[image], result.resized_sizes[image],
                     boxes=boxes, masks=masks, box_format=box_format, upsample=upsample)


__all__ = [
    "BOX_FORMATS", "UPSAMPLE_MODES", "PG_TIES", "MAP_KINDS",
    "parse_box_string", "to_xyxy", "from_xyxy", "authors_box_bug",
    "boxes_to_mask", "polygons_to_mask", "as_mask", "region_mask",
    "map_to_pixels",
    "alignment", "pointing_game", "score_map", "score_grid", "score_grids", "score_result",
]
