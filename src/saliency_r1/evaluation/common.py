"""Shared plumbing of the evaluation: one prepared example, target rows, forwards from visual embeddings.

An :class:`Example` is one prompt (image(s) + question) with one response, ready for a teacher-forced
forward: the processor outputs, the response ids, the absolute positions of the visual tokens and of
the response. Every baseline and the faithfulness scorer start from it.

Targets (which response tokens a map explains): ``"answer"`` = the tokens after ``</think>`` (up to
the end-of-turn token), falling back to every response token when the response has no answer span;
``"response"`` = every response token. Token ``k`` (absolute position ``t``) is predicted at row
``t - 1``, as in method.md §1.

Visual-embedding forwards: the merged visual tokens (the vision merger's output, scattered into
``inputs_embeds`` at the ``<|image_pad|>`` positions) are computed once with
``get_image_features`` and fed back through ``mm_encoder_outputs``, so gradient methods can treat them
as the input ``(B, V, D)`` while M-RoPE positions stay those of the real image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..attribution.batch import build_batch, to_device
from ..attribution.batch import to_device as on_device  # the one device move, under its evaluation name
from ..attribution.inputs import open_image, prompt_inputs, response_ids
from ..attribution.maps import to_grids
from ..grammar import Spans, end_of_turn_id
from ..errors import InputError

TARGETS = ("answer", "response")


@dataclass
class Example:
    """One prompt + response, prepared for teacher-forced forwards (batch of one)."""

    images: list                      # RGB PIL images
    question: str
    ids: list[int]                    # response ids (end-of-turn kept when generated)
    inputs: dict                      # teacher-forced model inputs, (1, T) tensors
    response_start: int               # absolute position of the first response token
    visual: torch.Tensor              # (V,) absolute positions of the visual tokens
    grids: list[tuple[int, int]]      # merged grid (h, w) per image
    spans: Spans                      # relative to the response

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    def rows(self, target: str = "answer") -> tuple[torch.Tensor, torch.Tensor]:
        """Predicting rows ``(R,)`` and target ids ``(R,)`` of ``target`` (see the module docstring).

        >>> ex = Example([], "", [5, 6, 7], {"input_ids": torch.tensor([[1, 2, 5, 6, 7]])}, 2,
        ...              torch.tensor([1]), [(1, 1)], Spans((0, 1), (1, 2)))
        >>> [t.tolist() for t in ex.rows("answer")], [t.tolist() for t in ex.rows("response")]
        ([[2], [6]], [[1, 2, 3], [5, 6, 7]])
        """
        if target not in TARGETS:
            raise InputError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
        lo, hi = 0, len(self.ids)
        if target == "answer" and self.spans.answer is not None:
            lo, hi = self.spans.answer
        pos = torch.arange(lo, hi) + self.response_start  # absolute positions of the target tokens
        return pos - 1, self.inputs["input_ids"][0, pos]

    def to_grids(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``(V,)`` over all visual tokens -> one ``(h, w)`` float32 CPU map per image."""
        return [m.detach().float().cpu() for m in to_grids(flat, self.grids)]


def prepare(smodel, image, question: str, response) -> Example:
    """Build the :class:`Example` of ``image`` (one image or a list), ``question`` and ``response``
    (a string, which gets the end-of-turn token appended, or ids taken as they are).

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> ex = prepare(sm, Image.new("RGB", (56, 56)), "Colour?", "<think>a</think>red")
    >>> ex.grids, len(ex.visual), ex.spans.answer is not None
    ([(2, 2)], 4, True)
    """
    images = image if isinstance(image, (list, tuple)) else [image]
    images = [open_image(im, min_side=smodel.patch_pixels) for im in images]
    prompt = prompt_inputs(smodel.processor, images, question)
    ids = response_ids(smodel.processor, response, end_of_turn_id(smodel.processor.tokenizer))
    spans = smodel.spans(ids)
    batch = build_batch([prompt], [ids], [spans], 0, smodel.merge_size)  # a batch of one: no padding
    visual = (batch.inputs["input_ids"][0] == smodel.image_token_id).nonzero().flatten()
    return Example(images=images, question=question, ids=ids, inputs=batch.inputs, response_start=batch.starts[0],
                   visual=visual, grids=batch.grids[0], spans=spans)


def visual_embeddings(smodel, ex: Example) -> torch.Tensor:
    """The merged visual tokens ``(V, D)`` that the vision tower scatters into ``inputs_embeds``.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> tuple(visual_embeddings(sm, prepare(sm, Image.new("RGB", (56, 56)), "Q?", "a")).shape)
    (4, 128)
    """
    inp = to_device(ex.inputs, smodel.device)
    with torch.no_grad():
        out = smodel.spec.encode_images(smodel.hf, inp["pixel_values"], inp["image_grid_thw"])
    return torch.cat(list(out), 0)  # (V, D)


def embeds_inputs(ex: Example, embeds: torch.Tensor, device) -> dict:
    """Model inputs for a batch of ``B`` copies of ``ex`` whose visual tokens are ``embeds (B, V, D)``."""
    B = embeds.shape[0]
    inp = to_device({k: v for k, v in ex.inputs.items() if k != "pixel_values"}, device)
    for k in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if k in inp:
            inp[k] = inp[k].expand(B, -1)  # (B, T)
    inp["image_grid_thw"] = inp["image_grid_thw"].repeat(B, 1)  # (B * n_images, 3)
    flat = embeds.reshape(-1, embeds.shape[-1])  # (B * V, D)
    inp["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=(flat,))}
    return inp


def target_logprobs(smodel, hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor,
                    chunk: int = 64) -> torch.Tensor:
    """``log p(target | row)`` ``(B, R)`` from final hidden states ``(B, T, D)`` (final norm applied).

    The only place full-vocabulary logits are formed: ``lm_head`` over at most ``chunk`` rows at a
    time, then log-softmax (float32) gathered at the targets.
    """
    lm_head = smodel.hf.lm_head
    out = []
    for s in range(0, len(rows), chunk):
        r, y = rows[s:s + chunk], targets[s:s + chunk]
        logits = lm_head(hidden[:, r.to(hidden.device)]).float()  # (B, c, vocab)
        lp = logits.log_softmax(-1)
        out.append(lp.gather(-1, y.to(lp.device)[None, :, None].expand(lp.shape[0], -1, 1))[..., 0])  # (B, c)
    return torch.cat(out, 1)


def loglik_from_embeds(smodel, ex: Example, embeds: torch.Tensor, target: str = "answer") -> torch.Tensor:
    """Mean log-likelihood ``(B,)`` of the ``target`` tokens given visual embeddings ``(B, V, D)``.

    Differentiable in ``embeds`` (this is the forward function handed to captum).
    """
    rows, targets = ex.rows(target)
    inp = embeds_inputs(ex, embeds, embeds.device)
    hidden = smodel.hf.model(**inp, use_cache=False).last_hidden_state  # (B, T, D), final norm applied
    return target_logprobs(smodel, hidden, rows, targets).mean(-1)


__all__ = ["TARGETS", "Example", "prepare", "on_device", "visual_embeddings", "embeds_inputs",
           "target_logprobs", "loglik_from_embeds"]
