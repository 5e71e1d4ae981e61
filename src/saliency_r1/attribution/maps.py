"""From a traced batch to maps: build the plan, run the tracer, cut per example and per image.

:func:`trace_batch` is the one tracer entry: a :class:`~saliency_r1.attribution.batch.TracedBatch` in,
one :class:`ExampleMaps` per example out. ``SaliencyModel.explain`` calls it on a batch of one, the
saliency reward on a batch of completions (through :func:`holistic_maps`, the batched lower-level
entry for training code: padded inputs, starts and spans in, per-image maps out, without generating).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import InputError
from ..grammar import Spans
from ..models.spec import ModelSpec, unwrap
from .batch import TracedBatch, image_grids
from .decompose import TraceOutput, TracePlan, trace
from .options import RELU, VARIANTS, check_options, variant_field

logger = logging.getLogger(__name__)


@dataclass
class ExampleMaps:
    """Maps of one example, flat over its visual tokens ``(.., V)`` in sequence order."""

    contributions: torch.Tensor        # (N, V) raw, pre-ReLU
    holistic: torch.Tensor | None      # (V,)
    think: torch.Tensor | None         # (V,)
    answer: torch.Tensor | None        # (V,)
    attn: torch.Tensor | None          # (V,)
    target_logits: torch.Tensor        # (N,)
    grids: list[tuple[int, int]]       # merged grid (h, w) per image
    think_attn: torch.Tensor | None = None   # (J, V) thinking tokens' attention on the visual tokens, Σ_{l,h}
    value_logit: torch.Tensor | None = None  # (V,) the holistic map's value x logit factor alone (ReLU as holistic)
    holistic_layers: torch.Tensor | None = None  # (L, V) pre-ReLU holistic contributions per decoder layer, Σ_k

    def on_grids(self, field: str) -> list[torch.Tensor] | None:
        """``field``'s map laid on each image's grid (None when undefined)."""
        m = getattr(self, field)
        return to_grids(m, self.grids) if m is not None else None

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


def build_plan(input_ids: torch.Tensor, attention_mask: torch.Tensor, starts: list[int],
               spans: list[Spans], image_token_id: int, columns: str = "visual",
               think_query_offset: int = 0) -> TracePlan:
    """Index tensors for one padded batch. ``spans`` are absolute; ``starts`` the absolute position of the
    first traced token of each example (its response start, or the answer start: :func:`first_rows`).

    ``columns="all"`` keeps every valid position (the exactness check). ``think_query_offset=-1``
    reads the first hop at the position predicting each thinking token (the authors' code).
    """
    if columns not in ("visual", "all"):
        raise InputError(f"columns must be 'visual' or 'all', not {columns!r}")
    rows, targets, vis, tq, tk, arows = [], [], [], [], [], []
    for b, rs in enumerate(starts):
        valid = attention_mask[b].nonzero().flatten()
        end = int(valid.max()) + 1
        if not 0 < rs < end:
            raise InputError(f"example {b}: the response is empty (response start {rs}, sequence end {end})")
        pos = torch.arange(rs, end)
        rows.append(pos - 1)
        targets.append(input_ids[b, rs:end])
        vis.append(valid if columns == "all" else (input_ids[b] == image_token_id).nonzero().flatten())
        sp = spans[b]
        if sp.complete:
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


def first_rows(starts: list[int], spans: list[Spans], answer_only: bool) -> list[int]:
    """Absolute position of the first traced token per example: the response start, or with
    ``answer_only`` the first answer token where both spans exist (the rollout needs the answer rows only).

    >>> first_rows([5, 5], [Spans((5, 7), (8, 9)), Spans(None, None)], answer_only=True)
    [8, 5]
    """
    return [sp.answer[0] if answer_only and sp.complete else rs for rs, sp in zip(starts, spans)]


def _summed(c: torch.Tensor, relu: str) -> torch.Tensor:
    """``(n, V)`` -> ``(V,)``: Σ ReLU(c) (``per_token``) or ReLU(Σ c) (``after_sum``)."""
    return c.clamp_min(0).sum(0) if relu == "per_token" else c.sum(0).clamp_min(0)


def split_examples(out: TraceOutput, plan: TracePlan, spans: list[Spans], first: list[int],
                   grids: list[list[tuple[int, int]]], relu: str = "per_token") -> list[ExampleMaps]:
    """Cut the padded trace into per-example maps (ReLU where method.md says so; ``relu``: :data:`RELU`).

    ``first``: the first traced position per example (the ``first_rows`` the plan was built with).
    """
    check_options(relu, 0)
    res = []
    for b, sp in enumerate(spans):
        n, v = int(plan.row_mask[b].sum()), int(plan.visual_mask[b].sum())
        c = out.contributions[b, :n, :v].cpu()
        think = answer = hol = attn = think_attn = value_logit = layers = None
        rs = first[b]
        if sp.think is not None and sp.think[0] >= rs:  # (a plan of the answer rows only has no thinking rows)
            think = _summed(c[sp.think[0] - rs:sp.think[1] - rs], relu)
        if sp.answer is not None and sp.answer[0] >= rs:
            answer = _summed(c[sp.answer[0] - rs:sp.answer[1] - rs], relu)
        if out.holistic is not None and sp.complete:
            a = int(plan.answer_mask[b].sum())
            hol = _summed(out.holistic[b, :a, :v].cpu(), relu)
            attn = out.attn[b, :a, :v].cpu().sum(0)
            if out.think_attn is not None:
                think_attn = out.think_attn[b, :int(plan.think_mask[b].sum()), :v].cpu()
                value_logit = _summed(out.value_logit[b, :a, :v].cpu(), relu)
            if out.holistic_layers is not None:
                layers = out.holistic_layers[:, b, :a, :v].cpu().sum(1)  # (L, V)
        res.append(ExampleMaps(c, hol, think, answer, attn, out.target_logits[b, :n].cpu(), grids[b], think_attn,
                               value_logit, layers))
    return res


def trace_batch(model: nn.Module, spec: ModelSpec, batch: TracedBatch, *, answer_only: bool = False,
                rollout: bool = True, think_query_offset: int = 0, relu: str = "per_token") -> list[ExampleMaps]:
    """The one tracer entry: plan, one traced forward, per-example maps (method.md §1-§2).

    ``batch`` on any device (moved to the model's). ``answer_only`` traces only the rows predicting
    answer tokens where both spans exist: enough for the holistic map and its ``attn`` variant
    (training rewards), and cheaper; per-token maps then cover the answer only. ``rollout=False``
    skips the §2 rollout (``holistic`` / ``attn`` None). ``think_query_offset``: see :func:`build_plan`;
    ``relu``: :data:`RELU`.
    """
    check_options(relu, think_query_offset)
    hf = unwrap(model)
    image_token = int(spec.get(hf, spec.image_token_attr))
    device = next(model.parameters()).device
    first = first_rows(batch.starts, batch.spans, answer_only)
    ids, mask = batch.inputs["input_ids"].cpu(), batch.inputs["attention_mask"].cpu()
    plan = build_plan(ids, mask, first, batch.spans, image_token, think_query_offset=think_query_offset)
    out = trace(model, spec, batch.to(device).inputs, plan.to(device), rollout=rollout)
    return split_examples(out, plan, batch.spans, first, batch.grids, relu=relu)


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
                  spans: list[Spans], variant: str = "full", think_query_offset: int = 0,
                  relu: str = "per_token", grids: list[list[tuple[int, int]]] | None = None
                  ) -> list[list[torch.Tensor] | None]:
    """Per example, per image ``(h, w)`` map of ``variant``; None where the spans make it undefined.

    ``inputs`` are the padded batch inputs (prompt + completion) the model takes; completions may be
    right-padded (``attention_mask`` zeros) and prompts left-padded; ``response_starts`` and ``spans``
    absolute; ``grids`` each example's merged grids (counted from the image tokens when None). A thin
    door to :func:`trace_batch` (a :class:`TracedBatch` in its parts).
    """
    key = variant_field(variant)
    if grids is None:
        hf = unwrap(model)
        image_token = int(spec.get(hf, spec.image_token_attr))
        merge = int(spec.get(hf, spec.merge_size_attr))
        grids = grids_per_example(inputs["input_ids"].cpu(), image_token,
                                  image_grids(inputs["image_grid_thw"].cpu(), merge))
    rollout = variant in ("full", "attn")
    examples = trace_batch(model, spec, TracedBatch(inputs, list(response_starts), list(spans), grids),
                           answer_only=rollout, rollout=rollout, think_query_offset=think_query_offset, relu=relu)
    maps = []
    for b, ex in enumerate(examples):
        m = ex.on_grids(key) if ex.grids else None
        if m is not None and not ex.finite:
            logger.warning("example %d: the model's forward produced NaN/inf; its map is None", b)
            m = None
        maps.append(m)
    return maps


__all__ = ["VARIANTS", "RELU", "variant_field", "ExampleMaps", "build_plan", "first_rows", "split_examples",
           "trace_batch", "grids_per_example", "to_grids", "holistic_maps"]
