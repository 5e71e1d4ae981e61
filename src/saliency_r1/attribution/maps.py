"""From a traced batch to maps: build the plan, run the tracer, cut per example and per image.

This is the batched lower-level entry for training code: prompt + completion ids with pixel inputs
and spans in, holistic (or variant) maps out, without generating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import InputError
from ..models.spec import ModelSpec, unwrap
from .decompose import TraceOutput, TracePlan, trace
from ..grammar import Spans

logger = logging.getLogger(__name__)

VARIANTS = ("full", "think", "answer", "attn")
"""Holistic-map variants (method.md §2): ``full`` is the thinking-bottleneck rollout."""


@dataclass
class ExampleMaps:
    """Maps of one example, flat over its visual tokens ``(.., V)`` in sequence order."""

    contributions: torch.Tensor        # (N, V) raw, pre-ReLU
    holistic: torch.Tensor | None      # (V,)
    think: torch.Tensor | None         # (V,)
    answer: torch.Tensor | None        # (V,)
    attn: torch.Tensor | None          # (V,)
    target_logits: torch.Tensor        # (N,)

    @property
    def finite(self) -> bool:
        """False when the model's forward produced NaN/inf for this example (maps are then unusable)."""
        parts = [self.contributions, self.target_logits] + [m for m in (self.holistic, self.attn) if m is not None]
        return all(bool(torch.isfinite(p).all()) for p in parts)


def _pad(seqs: list[torch.Tensor], fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    n = max([len(s) for s in seqs] + [1])
    out = torch.full((len(seqs), n), fill, dtype=torch.long)
    mask = torch.zeros(len(seqs), n)
    for b, s in enumerate(seqs):
        out[b, :len(s)] = s
        mask[b, :len(s)] = 1
    return out, mask


def build_plan(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_starts: list[int],
               spans: list[Spans], image_token_id: int, columns: str = "visual",
               think_query_offset: int = 0, rows: str = "response") -> TracePlan:
    """Index tensors for one padded batch. ``spans`` are absolute; ``response_starts`` absolute.

    ``columns="all"`` keeps every valid position (the exactness check). ``think_query_offset=-1``
    reads the first hop at the position predicting each thinking token (the authors' code).
    ``rows="answer"`` traces only the rows predicting answer tokens: enough for the holistic map and
    its ``attn`` variant (training rewards), and cheaper; per-token maps then cover the answer only.
    """
    if columns not in ("visual", "all"):
        raise InputError(f"columns must be 'visual' or 'all', not {columns!r}")
    if rows not in ("response", "answer"):
        raise InputError(f"rows must be 'response' or 'answer', not {rows!r}")
    if rows == "answer":
        starts = [sp.answer[0] if sp.think is not None and sp.answer is not None else rs
                  for rs, sp in zip(response_starts, spans)]
        return build_plan(input_ids, attention_mask, starts, spans, image_token_id, columns, think_query_offset)
    rows, targets, vis, tq, tk, arows = [], [], [], [], [], []
    for b, rs in enumerate(response_starts):
        valid = attention_mask[b].nonzero().flatten()
        end = int(valid.max()) + 1
        if not 0 < rs < end:
            raise InputError(f"example {b}: the response is empty (response start {rs}, sequence end {end})")
        pos = torch.arange(rs, end)
        rows.append(pos - 1)
        targets.append(input_ids[b, rs:end])
        vis.append(valid if columns == "all" else (input_ids[b] == image_token_id).nonzero().flatten())
        sp = spans[b]
        if sp.think is not None and sp.answer is not None:
            j = torch.arange(*sp.think)
            tq.append(j + think_query_offset)
            tk.append(j)
            arows.append(torch.arange(*sp.answer) - rs)
        else:
            tq.append(torch.zeros(0, dtype=torch.long)), tk.append(torch.zeros(0, dtype=torch.long))
            arows.append(torch.zeros(0, dtype=torch.long))
    rows_t, row_mask = _pad(rows)
    vis_t, vis_mask = _pad(vis)
    tq_t, think_mask = _pad(tq)
    ar_t, ans_mask = _pad(arows)
    return TracePlan(rows=rows_t, row_mask=row_mask, targets=_pad(targets)[0], visual=vis_t,
                     visual_mask=vis_mask, think_q=tq_t, think_k=_pad(tk)[0], think_mask=think_mask,
                     answer_rows=ar_t, answer_mask=ans_mask, key_mask=attention_mask.long())


def split_examples(out: TraceOutput, plan: TracePlan, spans: list[Spans],
                   response_starts: list[int]) -> list[ExampleMaps]:
    """Cut the padded trace into per-example maps (ReLU where method.md says so)."""
    res = []
    for b, sp in enumerate(spans):
        n, v = int(plan.row_mask[b].sum()), int(plan.visual_mask[b].sum())
        c = out.contributions[b, :n, :v].cpu()
        relu = c.clamp_min(0)
        think = answer = hol = attn = None
        rs = response_starts[b]
        if sp.think is not None and sp.think[0] >= rs:  # (a plan with rows="answer" has no thinking rows)
            think = relu[sp.think[0] - rs:sp.think[1] - rs].sum(0)
        if sp.answer is not None and sp.answer[0] >= rs:
            answer = relu[sp.answer[0] - rs:sp.answer[1] - rs].sum(0)
        if out.holistic is not None and sp.think is not None and sp.answer is not None:
            a = int(plan.answer_mask[b].sum())
            hol = out.holistic[b, :a, :v].cpu().clamp_min(0).sum(0)
            attn = out.attn[b, :a, :v].cpu().sum(0)
        res.append(ExampleMaps(c, hol, think, answer, attn, out.target_logits[b, :n].cpu()))
    return res


def image_grids(image_grid_thw: torch.Tensor, merge: int) -> list[tuple[int, int]]:
    """Merged grid ``(h, w)`` of each image; row-major over (grid_h / merge, grid_w / merge).

    >>> image_grids(torch.tensor([[1, 10, 12]]), 2)
    [(5, 6)]
    """
    return [(int(h) // merge, int(w) // merge) for _, h, w in image_grid_thw.tolist()]


def grids_per_example(input_ids: torch.Tensor, image_token_id: int,
                      grids: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Assign the batch's grids (in order) to examples by counting each example's image tokens."""
    out, k = [], 0
    for row in input_ids:
        need, mine = int((row == image_token_id).sum()), []
        while need > 0:
            if k >= len(grids):
                raise InputError("the image tokens in input_ids do not match image_grid_thw; pass the "
                                 "processor's outputs unchanged")
            mine.append(grids[k])
            need -= grids[k][0] * grids[k][1]
            k += 1
        if need != 0:
            raise InputError("an example's image tokens do not match its image grids")
        out.append(mine)
    return out


def to_grids(flat: torch.Tensor, grids: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Split ``(..., V)`` over images and lay each part on its ``(h, w)`` grid.

    >>> [tuple(m.shape) for m in to_grids(torch.arange(10.), [(2, 3), (2, 2)])]
    [(2, 3), (2, 2)]
    """
    parts = torch.split(flat, [h * w for h, w in grids], dim=-1)
    return [p.reshape(*p.shape[:-1], h, w) for p, (h, w) in zip(parts, grids)]


def holistic_maps(model: nn.Module, spec: ModelSpec, inputs: dict, response_starts: list[int],
                  spans: list[Spans], variant: str = "full", think_query_offset: int = 0
                  ) -> list[list[torch.Tensor] | None]:
    """Per example, per image ``(h, w)`` map of ``variant``; None where the spans make it undefined.

    ``inputs`` are the padded batch inputs (prompt + completion) the model takes; completions may be
    right-padded (``attention_mask`` zeros) and prompts left-padded.
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    hf = unwrap(model)
    image_token = int(spec.get(hf, spec.image_token_attr))
    merge = int(spec.get(hf, spec.merge_size_attr))
    device = inputs["input_ids"].device
    rollout = variant in ("full", "attn")
    rows = "answer" if rollout else "response"  # the rollout needs the answer rows only
    plan = build_plan(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), response_starts, spans,
                      image_token, think_query_offset=think_query_offset, rows=rows)
    if rollout:
        response_starts = [sp.answer[0] if sp.think is not None and sp.answer is not None else rs
                           for rs, sp in zip(response_starts, spans)]
    out = trace(model, spec, inputs, plan.to(device), rollout=rollout)
    grids = grids_per_example(inputs["input_ids"].cpu(), image_token,
                              image_grids(inputs["image_grid_thw"].cpu(), merge))
    key = {"full": "holistic"}.get(variant, variant)
    maps = []
    for b, (ex, g) in enumerate(zip(split_examples(out, plan, spans, response_starts), grids)):
        m = getattr(ex, key)
        if m is not None and not ex.finite:
            logger.warning("example %d: the model's forward produced NaN/inf; its map is None", b)
            m = None
        maps.append(to_grids(m, g) if m is not None and g else None)
    return maps


__all__ = ["VARIANTS", "ExampleMaps", "build_plan", "split_examples", "image_grids", "grids_per_example",
           "to_grids", "holistic_maps"]
