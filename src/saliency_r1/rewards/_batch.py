"""Each image of a group's shared prompt encoded once, for the saliency reward's traced batch.

The batch itself (TRL's padding layout) is :class:`saliency_r1.attribution.batch.TracedBatch`.

Shared images: the ``G`` completions of a GRPO group share their prompt and image, so the vision
tower would encode the same pixels ``G`` times. Where the model's forward takes ``mm_encoder_outputs``
(Qwen2-VL and Qwen2.5-VL in transformers 5), each distinct prompt's images are encoded once and the
per-row image embeddings are handed to the forward instead of ``pixel_values``; the decoder sees the
identical embeddings, so the maps are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.spec import get_spec


def shares_vision(hf: nn.Module) -> bool:
    """Whether the forward of ``hf`` accepts precomputed image embeddings (its spec's ``shares_vision``).

    >>> from saliency_r1.models.tiny import build_tiny
    >>> shares_vision(build_tiny()[0])
    True
    """
    return get_spec(hf).accepts_image_embeds(hf)


def encode_once(hf: nn.Module, prompts: list[dict], device) -> list[tuple[torch.Tensor, ...]]:
    """Image embeddings of each distinct prompt (by identity), one vision call for all of them.

    Returns, per entry of ``prompts``, the tuple of its images' ``(tokens, d)`` embeddings.
    """
    uniq: dict[int, dict] = {}
    for p in prompts:
        uniq.setdefault(id(p), p)
    items = list(uniq.values())
    pv = torch.cat([p["pixel_values"] for p in items]).to(device)
    grid = torch.cat([p["image_grid_thw"] for p in items]).to(device)
    per_image = get_spec(hf).encode_images(hf, pv, grid)
    out, k = {}, 0
    for p in items:
        n = p["image_grid_thw"].shape[0]
        out[id(p)] = tuple(per_image[k:k + n])
        k += n
    return [out[id(p)] for p in prompts]


__all__ = ["encode_once", "shares_vision"]
