"""Deletion and insertion scores of saliency maps (method.md §5, paper Tables 1 and 4).

For one example (image, question, the model's own response ``y``) and one map:

    LL(x)      = mean_k log p(y_k | x, question, y_<k)                  (:mod:`.likelihood`)
    score(x)   = 100 · (LL(x) − LL(blank)) / (LL(original) − LL(blank))

so the blank scores 0 and the original 100 (values outside [0, 100] are legitimate: a perturbation
can make the response likelier than the original). ``deletion@k`` scores the image with its top
``k`` % pixels blanked (lower is better), ``insertion@k`` the blank with those pixels pasted back
(higher is better). The sweep ``0, 1/steps, …, 1`` gives a curve per mode and its area (trapezoid
rule over the fraction, so an AUC is in the score's units: 0–100 when the curve stays in range).
When ``|LL(original) − LL(blank)| < min_gap`` the example carries no signal: scores are NaN and the
example is counted as degenerate in the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..attribution.inputs import open_image
from ..errors import InputError
from .likelihood import response_loglik
from .perturb import BLANKS, make_blank, perturb, rank_pixels


@dataclass(frozen=True)
class FaithfulnessConfig:
    """Settings of the deletion/insertion test.

    >>> FaithfulnessConfig().fractions()[:3]
    [0.05, 0.15, 0.3]
    """

    levels: tuple[float, ...] = field(default=(5.0, 15.0, 30.0), metadata={"help": "reported levels, % of pixels"})
    steps: int = field(default=10, metadata={"help": "sweep 0..100 % in this many steps (0: no sweep)"})
    blank: str = field(default="black", metadata={"help": f"blank reference, one of {BLANKS}"})
    blur_radius: float | None = field(default=None, metadata={"help": "blur blank radius (px); None: max(W,H)/16"})
    batch_size: int = field(default=8, metadata={"help": "perturbed images per forward"})
    min_gap: float = field(default=1e-6, metadata={"help": "smallest |LL(orig) - LL(blank)| that is scored"})

    def __post_init__(self) -> None:
        if any(not 0 <= lv <= 100 for lv in self.levels):
            raise InputError(f"levels must lie in [0, 100] (percent of pixels), got {list(self.levels)}")
        if self.steps < 0:
            raise InputError(f"steps must be >= 0, got {self.steps}")
        if self.blank not in BLANKS:
            raise InputError(f"unknown blank {self.blank!r}; use one of {', '.join(BLANKS)}")

    def sweep(self) -> list[float]:
        """The sweep's fractions ``0, 1/steps, …, 1`` (empty when ``steps == 0``)."""
        return [i / self.steps for i in range(self.steps + 1)] if self.steps else []

    def fractions(self) -> list[float]:
        """Levels (as fractions) then the sweep, without duplicates, in that order."""
        out: list[float] = []
        for f in [lv / 100.0 for lv in self.levels] + self.sweep():
            if not any(abs(f - g) < 1e-12 for g in out):
                out.append(f)
        return out


def normalise(ll: Any, ll_original: float, ll_blank: float, min_gap: float = 1e-6) -> np.ndarray:
    """``100 (LL − LL_blank) / (LL_orig − LL_blank)``; NaN when the gap is below ``min_gap``.

    >>> normalise([-2.0, -1.0, -1.5], -1.0, -2.0).tolist()
    [0.0, 100.0, 50.0]
    """
    ll = np.asarray(ll, dtype=np.float64)
    gap = ll_original - ll_blank
    if not math.isfinite(gap) or abs(gap) < min_gap:
        return np.full_like(ll, np.nan)
    return 100.0 * (ll - ll_blank) / gap


def auc(fractions: list[float], scores: list[float]) -> float:
    """Trapezoid area under ``scores`` over ``fractions`` in [0, 1].

    >>> auc([0.0, 0.5, 1.0], [100.0, 50.0, 0.0])
    50.0
    """
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


@dataclass
class Reference:
    """The two anchors of one example: LL under the original image and under the blank."""

    image: Image.Image
    blank: Image.Image
    ll_original: float
    ll_blank: float


def reference(smodel, image, question: str, ids: list[int], config: FaithfulnessConfig) -> Reference:
    """Score the original image and its blank (one batched forward)."""
    image = open_image(image, min_side=smodel.patch_pixels)
    blank = make_blank(image, config.blank, config.blur_radius)
    ll = response_loglik(smodel, [image, blank], question, ids, batch_size=2)
    return Reference(image, blank, float(ll[0]), float(ll[1]))


def deletion_insertion(smodel, ref: Reference, question: str, ids: list[int], grid_map: Any,
                       resized_size: tuple[int, int] | None, config: FaithfulnessConfig) -> dict[str, Any]:
    """Deletion and insertion scores of one ``(h, w)`` map; see the module docstring.

    Returns ``{"deletion": {level: score}, "insertion": {...}, "deletion_auc", "insertion_auc",
    "curve_fractions", "deletion_curve", "insertion_curve", "ll": {mode: [raw LL per fraction]}}``.
    Levels are keyed by their percent as a string (``"5"``, ``"15"``...).
    """
    order = rank_pixels(grid_map, ref.image.size, resized_size)
    fracs = config.fractions()
    out: dict[str, Any] = {"ll": {}}
    for mode in ("deletion", "insertion"):
        known = {0.0: ref.ll_original if mode == "deletion" else ref.ll_blank,
                 1.0: ref.ll_blank if mode == "deletion" else ref.ll_original}
        todo = [f for f in fracs if f not in known]
        ll = response_loglik(smodel, perturb(ref.image, ref.blank, order, todo, mode), question, ids,
                             batch_size=config.batch_size) if todo else []
        by_frac = {**known, **dict(zip(todo, ll))}
        raw = [float(by_frac[f]) for f in fracs]
        norm = normalise(raw, ref.ll_original, ref.ll_blank, config.min_gap).tolist()
        at = (lambda f: norm[int(np.argmin([abs(f - g) for g in fracs]))])  # noqa: E731
        out["ll"][mode] = raw
        out[mode] = {_key(lv): at(lv / 100.0) for lv in config.levels}
        sweep = config.sweep()
        if sweep:
            out[f"{mode}_curve"] = [at(f) for f in sweep]
            out[f"{mode}_auc"] = auc(sweep, out[f"{mode}_curve"])
    out["curve_fractions"] = config.sweep()
    out["fractions"] = fracs
    return out


def _key(level: float) -> str:
    """``5.0 -> "5"``, ``2.5 -> "2.5"``: the level's key in records and tables."""
    return f"{level:g}"


__all__ = ["FaithfulnessConfig", "Reference", "reference", "normalise", "auc", "deletion_insertion"]
