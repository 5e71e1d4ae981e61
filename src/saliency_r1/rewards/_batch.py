"""One traced batch for the saliency reward: TRL's padding layout, and each image encoded once.

Layout (as TRL builds it): prompts left-padded to ``P``, completions right-padded to ``C``; every
response starts at ``P``. ``mm_token_type_ids`` is extended with zeros over the completions (without
it M-RoPE is silently skipped).

Shared images: the ``G`` completions of a GRPO group share their prompt and image, so the vision
tower would encode the same pixels ``G`` times. Where the model's forward takes ``mm_encoder_outputs``
(Qwen2-VL and Qwen2.5-VL in transformers 5), each distinct prompt's images are encoded once and the
per-row image embeddings are handed to the forward instead of ``pixel_values``; the decoder sees the
identical embeddings, so the maps are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..grammar import Spans
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


def batch_inputs(prompts: list[dict], resps: list[list[int]], spans: list[Spans], pad_id: int,
                 image_embeds: list[tuple[torch.Tensor, ...]] | None = None) -> tuple[dict, list[int], list[Spans]]:
    """The padded batch, absolute response starts and absolute spans.

    With ``image_embeds`` (from :func:`encode_once`) the batch carries ``mm_encoder_outputs`` instead
    of ``pixel_values``.

    >>> p = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
    ...      "mm_token_type_ids": torch.zeros(1, 2, dtype=torch.long), "pixel_values": torch.zeros(4, 3),
    ...      "image_grid_thw": torch.tensor([[1, 2, 2]])}
    >>> inputs, starts, _ = batch_inputs([p, p], [[7], [7, 8]], [Spans(None, None)] * 2, 0)
    >>> inputs["input_ids"].tolist(), starts
    ([[5, 6, 7, 0], [5, 6, 7, 8]], [2, 2])
    """
    P = max(p["input_ids"].shape[1] for p in prompts)
    C = max(len(r) for r in resps)
    ids, mask, mm = [], [], []
    for p, r in zip(prompts, resps):
        lp, lc = P - p["input_ids"].shape[1], C - len(r)
        ids.append(torch.cat([torch.full((lp,), pad_id), p["input_ids"][0], torch.tensor(r, dtype=torch.long),
                              torch.full((lc,), pad_id)]))
        mask.append(torch.cat([torch.zeros(lp), p["attention_mask"][0], torch.ones(len(r)), torch.zeros(lc)]))
        mm_p = p.get("mm_token_type_ids", torch.zeros_like(p["input_ids"]))[0]
        mm.append(torch.cat([torch.zeros(lp), mm_p, torch.zeros(C)]))
    inputs = {"input_ids": torch.stack(ids).long(), "attention_mask": torch.stack(mask).long(),
              "mm_token_type_ids": torch.stack(mm).long(),
              "image_grid_thw": torch.cat([p["image_grid_thw"] for p in prompts])}
    if image_embeds is None:
        inputs["pixel_values"] = torch.cat([p["pixel_values"] for p in prompts])
    else:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        flat = tuple(e for row in image_embeds for e in row)
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=flat)}
    return inputs, [P] * len(prompts), [s.shifted(P) for s in spans]


def to_device(inputs: dict, device) -> dict:
    """Tensors moved to ``device``; other values (``mm_encoder_outputs``) as they are."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


__all__ = ["batch_inputs", "encode_once", "shares_vision", "to_device"]
