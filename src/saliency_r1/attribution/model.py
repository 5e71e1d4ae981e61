"""`SaliencyModel`: an HF VLM + its processor + its spec, with the verb `explain`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import InputError, NumericalError
from ..models.loading import load_hf
from ..models.spec import ModelSpec, get_spec, unwrap
from .batch import build_batch, to_device
from .inputs import open_image, prompt_inputs, response_ids
from .maps import to_grids, trace_batch
from .options import check_options
from .result import SaliencyResult
from ..grammar import Spans, cut_at_end, end_ids, end_of_turn_id, find_spans

logger = logging.getLogger(__name__)


@dataclass
class SaliencyModel:
    """A supported VLM ready to explain its answers. Build it with :func:`load_model`."""

    model: nn.Module
    processor: object
    spec: ModelSpec
    name: str = ""

    @property
    def hf(self) -> nn.Module:
        return unwrap(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_token_id(self) -> int:
        return int(self.spec.get(self.hf, self.spec.image_token_attr))

    @property
    def merge_size(self) -> int:
        return int(self.spec.get(self.hf, self.spec.merge_size_attr))

    @property
    def patch_pixels(self) -> int:
        return self.spec.patch_pixels(self.hf)

    @property
    def end_ids(self) -> frozenset[int]:
        """End-of-turn ids (:func:`saliency_r1.grammar.end_ids`)."""
        return end_ids(self.hf, self.processor.tokenizer)

    @property
    def max_positions(self) -> int | None:
        """The language model's positions (``max_position_embeddings``), None when the config has none."""
        cfg = self.hf.config
        n = getattr(getattr(cfg, "text_config", None), "max_position_embeddings", None)
        n = n if n is not None else getattr(cfg, "max_position_embeddings", None)
        return int(n) if n else None

    def fit_response(self, prompt_len: int, ids: list[int], truncate: bool = False) -> list[int]:
        """``ids`` if prompt + response fit the model's positions; else one-line :class:`InputError`, or, with
        ``truncate``, the response cut to fit (with a warning)."""
        limit = self.max_positions
        if limit is None or prompt_len + len(ids) <= limit:
            return ids
        room = limit - prompt_len
        if room < 1:
            raise InputError(f"the prompt alone has {prompt_len} tokens, more than the model's {limit} positions; "
                             "pass a smaller image or a shorter question")
        if not truncate:
            raise InputError(f"the response has {len(ids)} tokens but only {room} fit after the {prompt_len}-token "
                             f"prompt (the model has {limit} positions); shorten it or pass --truncate-response "
                             "(truncate_response=True) to explain its first tokens")
        logger.warning("response cut from %d to %d tokens to fit the model's %d positions", len(ids), room, limit)
        return ids[:room]

    def generate(self, prompt: dict, **generate_kwargs) -> list[int]:
        """Generate a response to one prepared prompt with HF ``generate``; returns its ids (eos kept).

        Image/video placeholder and vision start/end ids are suppressed (added to ``suppress_tokens``): a
        response holding them cannot be fed back with the prompt's images.
        """
        inputs = to_device(prompt, self.device)
        suppress = set(generate_kwargs.pop("suppress_tokens", None) or []) | self.spec.placeholder_ids(self.hf)
        generate_kwargs["suppress_tokens"] = sorted(suppress)
        with torch.no_grad():
            seq = self.model.generate(**inputs, **generate_kwargs)
        return cut_at_end(seq[0, prompt["input_ids"].shape[1]:].tolist(), self.end_ids)

    def explain(self, image_or_images, question: str, response=None, *, think_query_offset: int = 0,
                relu: str = "per_token", truncate_response: bool = False, **generate_kwargs) -> SaliencyResult:
        """Explain one answer: generate it (``response=None``) or teacher-force the given one, then trace.

        The trace is one teacher-forced forward over prompt + response with the model's own attention
        kernel (method.md §1-§2). ``generate_kwargs`` (``max_new_tokens``, ``do_sample``,
        ``temperature``...) go to HF ``generate`` (``max_new_tokens`` capped at the positions the prompt leaves).
        A given response longer than the model's positions after the prompt is refused with one line, or cut to
        fit with a warning when ``truncate_response`` (:meth:`fit_response`). The paper's definitions are the
        defaults; for parity with the authors' code: ``relu="after_sum"`` (one ReLU on the summed answer/thinking
        maps instead of one per token) and ``think_query_offset=-1`` (the first hop read at the position
        predicting each thinking token). Per-token maps (``token_maps``) are always ReLU per token.

        >>> import tempfile
        >>> from PIL import Image
        >>> from saliency_r1 import load_model
        >>> from saliency_r1.models.tiny import tiny_checkpoint
        >>> model = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/tiny"))
        >>> res = model.explain(Image.new("RGB", (84, 56)), "What colour?", response="<think>red</think>red")
        >>> res.grids, res.contributions.shape[1], res.holistic[0].shape
        ([(2, 3)], 6, torch.Size([2, 3]))
        """
        check_options(relu, think_query_offset)
        images = image_or_images if isinstance(image_or_images, (list, tuple)) else [image_or_images]
        images = [open_image(im, min_side=self.patch_pixels) for im in images]
        t0 = time.perf_counter()
        prompt = prompt_inputs(self.processor, images, question)
        end_id = end_of_turn_id(self.processor.tokenizer)  # closes a given response, as SFT writes it
        t_gen = 0.0
        if response is None:
            room = (self.max_positions or 0) - prompt["input_ids"].shape[1]
            if self.max_positions and generate_kwargs.get("max_new_tokens", 0) > room:
                generate_kwargs["max_new_tokens"] = max(room, 1)  # never past the model's positions
            ids = self.generate(prompt, **generate_kwargs)
            t_gen = time.perf_counter() - t0
            if not ids:
                raise InputError("the model generated an empty response; raise max_new_tokens")
        else:
            ids = response_ids(self.processor, response, end_id)
        ids = self.fit_response(prompt["input_ids"].shape[1], ids, truncate_response)
        bad = sorted(set(ids) & self.spec.placeholder_ids(self.hf))
        if bad:
            raise InputError(f"the response holds image placeholder tokens "
                             f"{self.processor.tokenizer.convert_ids_to_tokens(bad)}; remove them from the response")
        t1 = time.perf_counter()
        result = self.trace_one(prompt, ids, images, question, think_query_offset, relu)
        result.meta["timings"] = {"generate_s": t_gen, "trace_s": time.perf_counter() - t1}
        return result

    def trace_one(self, prompt: dict, ids: list[int], images, question: str, think_query_offset: int = 0,
                  relu: str = "per_token") -> SaliencyResult:
        """Trace one prepared prompt + response ids (a batch of one) and assemble the :class:`SaliencyResult`."""
        batch = build_batch([prompt], [ids], [self.spans(ids)], self.processor.tokenizer.pad_token_id or 0,
                            self.merge_size)
        ex = trace_batch(self.model, self.spec, batch, think_query_offset=think_query_offset, relu=relu)[0]
        if not ex.finite:
            raise NumericalError("the model's forward produced NaN/inf for this input (check the weights and "
                                 "dtype; try dtype='float32')")
        spans, rs, grids = batch.spans[0], batch.starts[0], ex.grids
        maps = {k: ex.on_grids(k) for k in ("holistic", "think", "answer", "attn")}
        return SaliencyResult(
            input_ids=batch.inputs["input_ids"][0], response_start=rs, response_ids=torch.tensor(ids),
            tokens=[self.processor.tokenizer.decode([t]) for t in ids], think_span=spans.think,
            answer_span=spans.answer, contributions=ex.contributions, grids=grids,
            token_maps=to_grids(ex.contributions.clamp_min(0), grids), **maps,
            image_sizes=[im.size for im in images], resized_sizes=[(w * self.patch_pixels, h * self.patch_pixels)
                                                                   for h, w in grids],
            patch_pixels=self.patch_pixels, question=question,
            response_text=self.processor.tokenizer.decode(ids, skip_special_tokens=True),
            holistic_reason=None if spans.complete else spans.reason,
            meta={"model": self.name, "family": self.spec.family, "attn_implementation": _attn_impl(self.hf),
                  "think_query_offset": think_query_offset, "relu": relu},
            images=list(images))

    def spans(self, ids: list[int]) -> Spans:
        """Θ / Α spans of a response (relative token indices)."""
        return find_spans(self.processor.tokenizer, ids, self.end_ids)


def _attn_impl(hf: nn.Module) -> str:
    cfg = getattr(hf.config, "text_config", hf.config)
    return str(cfg._attn_implementation)


def load_model(path_or_id: str | Path, dtype="auto", device_map=None, attn_implementation: str | None = None,
               device=None, trust_remote_code: bool = False, **from_pretrained_kwargs) -> SaliencyModel:
    """Load a supported VLM ready to explain: a checkpoint directory, a LoRA adapter directory, a training
    output directory, or a hub id (``"Qwen/Qwen2.5-VL-7B-Instruct"``) already in the local HF cache.

    ``dtype``, ``device_map`` and ``attn_implementation`` mean what they mean to ``from_pretrained``
    (``dtype="auto"``: the checkpoint's dtype); without ``device_map`` the model goes to ``device`` (None: cuda
    when available). See :func:`saliency_r1.models.loading.load_hf`.

    >>> import tempfile
    >>> from saliency_r1.models.tiny import tiny_checkpoint
    >>> load_model(tiny_checkpoint(tempfile.mkdtemp() + "/tiny")).spec.family
    'qwen2_5_vl'
    """
    model, processor = load_hf(path_or_id, device=device, dtype=dtype, attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code, device_map=device_map,
                               **from_pretrained_kwargs)
    return from_pretrained_objects(model, processor, name=str(path_or_id))


def from_pretrained_objects(model: nn.Module, processor, name: str = "") -> SaliencyModel:
    """Wrap an already-loaded HF model (peft-wrapped or not) and its processor.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> from_pretrained_objects(*build_tiny()).spec.family
    'qwen2_5_vl'
    """
    return SaliencyModel(model=model, processor=processor, spec=get_spec(model), name=name)


__all__ = ["SaliencyModel", "load_model", "from_pretrained_objects"]
