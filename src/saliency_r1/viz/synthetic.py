"""A hand-built, model-free :class:`SaliencyResult` that looks like a real one, for docs and tests.

The scene is drawn with PIL (sky, grass, a red car, a tree); the maps are Gaussian blobs put on
the car for tokens about the car, on the tree for tokens about the tree, and weak noise elsewhere.
Nothing here is a saliency method: it only feeds the renderers plausible data.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..attribution.result import SaliencyResult

_RESPONSE = ("<think>\nThe question asks about the car. In the image, a red car is parked on the "
             "grass, left of a tall tree. Its body is red with dark windows, so the colour is red. "
             "The tree stands just to the right of the car.\n</think>\n<answer>The car is red, and "
             "it is parked next to the tree.</answer><|im_end|>")
_QUESTION = "What colour is the car, and is it parked next to the tree?"
_CAR = (0.10, 0.52, 0.52, 0.80)   # relative xyxy of the car in the scene
_TREE = (0.62, 0.14, 0.86, 0.78)
_CAR_WORDS = {"car", "red", "body", "windows", "colour", "parked", "left", "grass", "dark"}
_TREE_WORDS = {"tree", "tall", "right", "stands", "next"}


def _tokenize(text: str) -> list[str]:
    return re.findall(r"<\|im_end\|>|</?think>|</?answer>|\n| ?\w+| ?[^\w\s<]+|<", text)


def _scene(size: tuple[int, int], flip: bool):
    from PIL import Image, ImageDraw

    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    horizon = int(0.62 * height)
    for y in range(horizon):  # sky gradient
        t = y / max(horizon, 1)
        draw.line([(0, y), (width, y)], fill=(int(120 + 90 * t), int(170 + 60 * t), 235))
    draw.rectangle([0, horizon, width, height], fill=(96, 160, 72))
    draw.ellipse([0.80 * width, 0.05 * height, 0.92 * width, 0.21 * height], fill=(255, 214, 90))
    tx0, ty0, tx1, ty1 = (v * s for v, s in zip(_TREE, (width, height, width, height)))
    draw.rectangle([(tx0 + tx1) / 2 - 0.02 * width, ty0 + 0.45 * (ty1 - ty0),
                    (tx0 + tx1) / 2 + 0.02 * width, ty1], fill=(110, 72, 40))
    draw.ellipse([tx0, ty0, tx1, ty0 + 0.62 * (ty1 - ty0)], fill=(40, 120, 50))
    cx0, cy0, cx1, cy1 = (v * s for v, s in zip(_CAR, (width, height, width, height)))
    colour = (40, 90, 200) if flip else (205, 40, 40)
    draw.rounded_rectangle([cx0, cy0 + 0.35 * (cy1 - cy0), cx1, cy1 - 0.15 * (cy1 - cy0)],
                           radius=int(0.04 * height), fill=colour)
    draw.polygon([(cx0 + 0.2 * (cx1 - cx0), cy0 + 0.36 * (cy1 - cy0)), (cx0 + 0.3 * (cx1 - cx0), cy0),
                  (cx0 + 0.7 * (cx1 - cx0), cy0), (cx0 + 0.8 * (cx1 - cx0), cy0 + 0.36 * (cy1 - cy0))],
                 fill=colour)
    draw.rectangle([cx0 + 0.33 * (cx1 - cx0), cy0 + 0.08 * (cy1 - cy0), cx0 + 0.67 * (cx1 - cx0),
                    cy0 + 0.32 * (cy1 - cy0)], fill=(50, 60, 80))
    r = 0.09 * (cy1 - cy0) + 0.03 * height
    for wx in (cx0 + 0.25 * (cx1 - cx0), cx0 + 0.75 * (cx1 - cx0)):
        draw.ellipse([wx - r, cy1 - 1.6 * r, wx + r, cy1 + 0.4 * r], fill=(25, 25, 25))
    return img


def _blob(grid: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = grid
    ys, xs = np.mgrid[0:h, 0:w]
    cx, cy = (box[0] + box[2]) / 2 * w - 0.5, (box[1] + box[3]) / 2 * h - 0.5
    sx, sy = max((box[2] - box[0]) * w / 2.6, 0.6), max((box[3] - box[1]) * h / 2.6, 0.6)
    return np.exp(-(((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2) / 2)


def _token_maps(tokens: list[str], grid: tuple[int, int], rng: np.random.Generator,
                strength: float) -> np.ndarray:
    car, tree = _blob(grid, _CAR), _blob(grid, _TREE)
    maps = np.empty((len(tokens), *grid))
    for k, tok in enumerate(tokens):
        word = tok.strip().lower()
        noise = rng.normal(0.0, 0.08, grid)
        if word in _CAR_WORDS:
            m = rng.uniform(0.6, 1.0) * car + 0.15 * tree * rng.uniform()
        elif word in _TREE_WORDS:
            m = rng.uniform(0.5, 0.9) * tree + 0.1 * car * rng.uniform()
        else:
            m = rng.uniform(0.02, 0.2) * (0.5 * car + 0.3 * tree + 0.2)
        maps[k] = np.maximum(strength * (m + noise), 0.0)
    return maps


def synthetic_boxes(size: tuple[int, int] = (448, 336)) -> list[tuple[float, float, float, float]]:
    """Pixel ``xyxy`` evidence box (the car) of a :func:`synthetic_result` image of ``size``.

    >>> synthetic_boxes((100, 100))
    [(10.0, 52.0, 52.0, 80.0)]
    """
    width, height = size
    return [(round(_CAR[0] * width, 2), round(_CAR[1] * height, 2), round(_CAR[2] * width, 2),
             round(_CAR[3] * height, 2))]


def synthetic_result(n_images: int = 1, size: tuple[int, int] = (448, 336), patch_pixels: int = 28,
                     holistic: bool = True, seed: int = 0) -> SaliencyResult:
    """A model-free :class:`SaliencyResult` of a drawn scene, with think/answer spans.

    ``holistic=False`` leaves every image-level map None with a ``holistic_reason``.

    >>> r = synthetic_result(n_images=2, size=(112, 84))
    >>> r.n_images, tuple(r.token_maps[0].shape[1:]), r.tokens[0]
    (2, (3, 4), '<think>')
    """
    rng = np.random.default_rng(seed)
    tokens = _tokenize(_RESPONSE)
    n, prompt_len = len(tokens), 40
    grid = (max(1, round(size[1] / patch_pixels)), max(1, round(size[0] / patch_pixels)))
    resized = (grid[1] * patch_pixels, grid[0] * patch_pixels)
    maps = [_token_maps(tokens, grid, rng, 1.0 if i == 0 else 0.5) for i in range(n_images)]
    t_open, t_close = tokens.index("<think>"), tokens.index("</think>")
    think_span = (prompt_len + t_open + 1, prompt_len + t_close)
    answer_span = (prompt_len + t_close + 1, prompt_len + n - 1)

    def mean_of(lo: int, hi: int) -> list[torch.Tensor]:
        return [torch.tensor(m[lo - prompt_len:hi - prompt_len].mean(0), dtype=torch.float32)
                for m in maps]

    think, answer = mean_of(*think_span), mean_of(*answer_span)
    attn = [torch.tensor(0.6 * _blob(grid, _CAR) + 0.4 * _blob(grid, _TREE), dtype=torch.float32)
            for _ in maps]
    ids = torch.arange(prompt_len + n) % 1000
    n_visual = n_images * grid[0] * grid[1]
    return SaliencyResult(
        input_ids=ids, response_start=prompt_len, response_ids=ids[prompt_len:], tokens=tokens,
        think_span=think_span, answer_span=answer_span,
        contributions=torch.from_numpy(np.concatenate([m.reshape(n, -1) for m in maps], 1)).float()
        if n_visual else torch.zeros(n, 0),
        grids=[grid] * n_images, token_maps=[torch.tensor(m, dtype=torch.float32) for m in maps],
        holistic=[0.5 * (a + b) for a, b in zip(think, answer)] if holistic else None,
        think=think if holistic else None, answer=answer if holistic else None,
        attn=attn if holistic else None, image_sizes=[size] * n_images,
        resized_sizes=[resized] * n_images, patch_pixels=patch_pixels, question=_QUESTION,
        response_text=_RESPONSE,
        holistic_reason=None if holistic else "not computed for this example (holistic=False)",
        meta={"model": "synthetic (no model)", "attn_implementation": "eager",
              "seconds": {"generate": 1.84, "trace": 0.62}},
        images=[_scene(size, flip=i % 2 == 1) for i in range(n_images)],
    )


__all__ = ["synthetic_result", "synthetic_boxes"]
