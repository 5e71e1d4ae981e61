"""The one teacher-forced batch: prompts + response ids in; padded inputs, absolute starts and spans out.

Every traced or scored forward starts here: ``explain`` (a batch of one), the saliency reward (a
batch of ``G`` completions), the faithfulness likelihoods (``B`` perturbed copies of one prompt) and the
baselines (:class:`saliency_r1.evaluation.common.Example`, a batch of one).

Layout (as TRL builds it): prompts left-padded to ``P``, responses right-padded to ``C``, so every
response starts at ``P``; ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` are ``(B, P + C)``.
``mm_token_type_ids`` is extended with zeros over the responses (without it M-RoPE is silently
skipped). A batch of one has no padding: its inputs are the prompt's followed by the response's.
Images travel as ``pixel_values`` (rows of all prompts' images, in order), or, with ``image_embeds``,
as precomputed image embeddings (``mm_encoder_outputs``: the decoder sees identical embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..grammar import Spans

_PADDED = frozenset({"input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "pixel_values"})


def to_device(inputs: dict, device) -> dict:
    """Tensors of a model-input dict moved to ``device``; other values (``mm_encoder_outputs``) as they are.

    >>> to_device({"a": torch.ones(1), "b": 3}, "cpu")["b"]
    3
    """
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def image_grids(image_grid_thw: torch.Tensor, merge: int) -> list[tuple[int, int]]:
    """Merged grid ``(h, w)`` of each image; row-major over (grid_h / merge, grid_w / merge).

    >>> image_grids(torch.tensor([[1, 10, 12]]), 2)
    [(5, 6)]
    """
    return [(int(h) // merge, int(w) // merge) for _, h, w in image_grid_thw.tolist()]


@dataclass
class TracedBatch:
    """A padded teacher-forced batch with everything the tracer needs, computed once.

    ``inputs``: model inputs (``(B, T)`` ids, mask, token types; pixels or image embeddings);
    ``starts``: absolute position of each example's first response token; ``spans``: absolute Θ / Α
    (:class:`saliency_r1.grammar.Spans`); ``grids``: merged grid ``(h, w)`` of each example's images.
    """

    inputs: dict
    starts: list[int]
    spans: list[Spans]
    grids: list[list[tuple[int, int]]]

    def __len__(self) -> int:
        return len(self.starts)

    def to(self, device) -> "TracedBatch":
        """The same batch with its tensors on ``device``."""
        return TracedBatch(to_device(self.inputs, device), self.starts, self.spans, self.grids)


def pad_inputs(prompts: list[dict], resps: list[list[int]], pad_id: int,
               image_embeds: list[tuple[torch.Tensor, ...]] | None = None) -> tuple[dict, int]:
    """The padded inputs (module docstring) and the response start ``P``.

    ``prompts``: processor outputs of one prompt each (``(1, P_b)`` tensors).

    >>> p = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
    ...      "mm_token_type_ids": torch.zeros(1, 2, dtype=torch.long), "pixel_values": torch.zeros(4, 3),
    ...      "image_grid_thw": torch.tensor([[1, 2, 2]])}
    >>> inputs, start = pad_inputs([p, p], [[7], [7, 8]], 0)
    >>> inputs["input_ids"].tolist(), start
    ([[5, 6, 7, 0], [5, 6, 7, 8]], 2)
    """
    if not prompts or len(prompts) != len(resps):
        raise InputError(f"got {len(prompts)} prompts for {len(resps)} responses; pass one prompt per response")
    if any(len(r) == 0 for r in resps):
        raise InputError("a response is empty; pass at least one response token per example")
    P = max(p["input_ids"].shape[1] for p in prompts)
    C = max(len(r) for r in resps)
    with_types = any("mm_token_type_ids" in p for p in prompts)
    ids, mask, mm = [], [], []
    for p, r in zip(prompts, resps):
        lp, lc = P - p["input_ids"].shape[1], C - len(r)
        resp = torch.tensor(r, dtype=torch.long)
        ids.append(torch.cat([torch.full((lp,), pad_id, dtype=torch.long), p["input_ids"][0].long(), resp,
                              torch.full((lc,), pad_id, dtype=torch.long)]))
        mask.append(torch.cat([torch.zeros(lp, dtype=torch.long), p["attention_mask"][0].long(),
                               torch.ones(len(r), dtype=torch.long), torch.zeros(lc, dtype=torch.long)]))
        if with_types:
            mm_p = p.get("mm_token_type_ids", torch.zeros_like(p["input_ids"]))[0].long()
            mm.append(torch.cat([torch.zeros(lp, dtype=torch.long), mm_p, torch.zeros(C, dtype=torch.long)]))
    inputs = {"input_ids": torch.stack(ids), "attention_mask": torch.stack(mask)}  # (B, P + C)
    if with_types:
        inputs["mm_token_type_ids"] = torch.stack(mm)  # (B, P + C)
    inputs["image_grid_thw"] = torch.cat([p["image_grid_thw"] for p in prompts])  # (n_images, 3)
    for k in prompts[0].keys() - _PADDED:  # other processor outputs (per image rows) travel concatenated
        vals = [p[k] for p in prompts]
        inputs[k] = torch.cat(vals) if isinstance(vals[0], torch.Tensor) else vals[0]
    if image_embeds is None:
        inputs["pixel_values"] = torch.cat([p["pixel_values"] for p in prompts])
    else:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        flat = tuple(e for row in image_embeds for e in row)
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=flat)}
    return inputs, P


def build_batch(prompts: list[dict], resps: list[list[int]], spans: list[Spans], pad_id: int, merge: int,
                image_embeds: list[tuple[torch.Tensor, ...]] | None = None) -> TracedBatch:
    """The :class:`TracedBatch` of prompts + response ids, with their relative ``spans`` made absolute.

    ``merge``: the vision merger's spatial merge size (merged grid = patch grid / merge).

    >>> p = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
    ...      "pixel_values": torch.zeros(4, 3), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    >>> b = build_batch([p], [[7, 8]], [Spans((0, 1), (1, 2))], 0, 2)
    >>> b.starts, b.spans[0].answer, b.grids
    ([2], (3, 4), [[(1, 1)]])
    """
    inputs, P = pad_inputs(prompts, resps, pad_id, image_embeds)
    grids = [image_grids(p["image_grid_thw"], merge) for p in prompts]
    return TracedBatch(inputs, [P] * len(prompts), [s.shifted(P) for s in spans], grids)


def teacher_forced(prompt: dict, resp: list[int]) -> dict:
    """One prompt's inputs + response ids -> one forward's inputs (a batch of one, :func:`pad_inputs`).

    >>> p = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
    ...      "pixel_values": torch.zeros(4, 3), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    >>> teacher_forced(p, [7])["input_ids"].tolist()
    [[5, 6, 7]]
    """
    return pad_inputs([prompt], [resp], 0)[0]


__all__ = ["TracedBatch", "build_batch", "pad_inputs", "teacher_forced", "to_device", "image_grids"]
