"""The counterfactual test of the paper's Table 5: Gaussian noise on the foreground vs the background.

For each held-out sample the evidence region (the union of its boxes, in original pixels) is the
foreground and the rest of the image the background. Noise ``N(0, σ²)`` in 8-bit pixel units
(σ = 25, 50 as in the paper) is added to one region only, clipped to [0, 255], seeded per sample.
A model that relies on the evidence loses more accuracy under foreground noise than under
background noise; the paper reports Saliency-R1 dropping more on the foreground and less on the
background than its base model.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from .._images import read_image
from ..errors import InputError

REGIONS = ("foreground", "background")


def region_noise(image: Image.Image, boxes, region: str, sigma: float, seed: int = 0) -> Image.Image:
    """``image`` with N(0, σ²) noise added inside (``foreground``) or outside (``background``) the boxes.

    >>> im = Image.new("RGB", (40, 30), (128, 128, 128))
    >>> out = np.asarray(region_noise(im, [[0, 0, 20, 30]], "foreground", 25.0))
    >>> bool(out[:, :20].std() > 10), bool(out[:, 20:].std() == 0)
    (True, True)
    """
    if region not in REGIONS:
        raise InputError(f"region must be one of {REGIONS}, not {region!r}")
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    inside = np.zeros(a.shape[:2], dtype=bool)
    for x1, y1, x2, y2 in boxes:
        inside[int(np.floor(y1)):int(np.ceil(y2)), int(np.floor(x1)):int(np.ceil(x2))] = True
    where = inside if region == "foreground" else ~inside
    noise = np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    a[where] += noise[where]
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def counterfactual_accuracy(answer: Callable[[Image.Image, str], str], samples: Iterable[dict],
                            correct: Callable[[str, str], bool], sigmas: tuple[float, ...] = (25.0, 50.0),
                            ) -> dict[str, float]:
    """Accuracy on clean images and with noise on each region at each σ (the Table 5 row of one model).

    ``answer(image, question) -> final answer text``; ``correct(prediction, truth) -> bool``. Samples
    without boxes are skipped (no foreground to perturb).

    >>> im = Image.new("RGB", (40, 30))
    >>> rows = [{"image": im, "question": "q", "answer": "a", "boxes": [[0, 0, 10, 10]], "id": "0"}]
    >>> counterfactual_accuracy(lambda im, q: "a", rows, lambda p, t: p == t, sigmas=(25.0,))["clean"]
    1.0
    """
    hits: dict[str, list[float]] = {"clean": []}
    for s in samples:
        if not s.get("boxes"):
            continue
        image = s["image"] if isinstance(s["image"], Image.Image) else read_image(s["image"]).convert("RGB")
        hits["clean"].append(float(correct(answer(image, s["question"]), s["answer"])))
        seed = zlib.crc32(str(s.get("id", "")).encode())
        for region in REGIONS:
            for sigma in sigmas:
                noisy = region_noise(image, s["boxes"], region, sigma, seed=seed)
                key = f"{region}_sigma{int(sigma)}"
                hits.setdefault(key, []).append(float(correct(answer(noisy, s["question"]), s["answer"])))
    if not hits["clean"]:
        raise InputError("no sample with evidence boxes: the counterfactual test needs boxes")
    return {k: float(np.mean(v)) for k, v in hits.items()} | {"n": len(hits["clean"])}


__all__ = ["REGIONS", "region_noise", "counterfactual_accuracy"]
