"""R_saliency (method.md §3-§4): alignment of each completion's holistic map with its evidence.

For completion o with prompt x (image I, evidence boxes B in pixel xyxy of I):

    R_saliency(o) = energy-PG(S, B) = Σ_{pixels in ∪B} S / Σ_pixels S      (0 when Σ S = 0)

with S the holistic map (method.md §2, or the ``think`` / ``answer`` / ``attn`` variant) of o,
computed exactly on the merged-patch grid (:func:`saliency_r1.scoring.score_grid`). A completion
whose format is broken (:func:`saliency_r1.grammar.parse_response`) or whose spans cannot be
found scores 0 without tracing (so does one holding image placeholder tokens such as a generated
``<|image_pad|>``); a row without boxes (and without masks when ``region="masks"``)
or without an image scores None (TRL ignores it for this reward) and is counted.

Options (method.md §2-§3; the paper's definition is the default): ``relu="after_sum"`` puts one ReLU on
the sum of the answer tokens' maps (the authors' code) instead of one per token; ``think_query_offset=-1``
reads the first hop at the position predicting each thinking token (the authors' off-by-one);
``authors_box_bug=True`` reproduces a bug of the authors' reward code, y2 scaled by the image width
(:func:`saliency_r1.scoring.authors_box_bug`): for parity runs only.

How it gets the model: :meth:`SaliencyReward.bind` (``reward.bind(trainer)``) keeps the trainer; each
call unwraps the current policy with TRL's ``unwrap_model_for_generation`` (which gathers ZeRO-3
shards) and runs ONE extra no-grad traced forward per chunk of ``batch_size`` completions via
:func:`saliency_r1.holistic_maps`. The prompt is rebuilt with the processor from the prompt messages
and the dataset's ``image``/``images`` column (or the images inside the prompt messages), once per
distinct prompt, and ``completion_ids`` are appended, so it works the same when the rollouts come
from vLLM. The images of a group's shared prompt go through the vision tower once
(:mod:`saliency_r1.rewards._batch`). Without a trainer, pass ``model`` (a module, or a callable
returning the current module) and ``processor``.

Metrics, pushed through TRL's ``log_metric`` (logged next to ``rewards/saliency/mean``):
``saliency/alignment`` (mean energy-PG over the traced completions), ``saliency/pg`` (pointing game
over the same), ``saliency/none_rows`` and ``saliency/format_broken_rows`` (counts per batch) and
``saliency/trace_seconds``. Running totals are in ``reward.stats``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..attribution.batch import build_batch
from ..attribution.maps import holistic_maps
from ..attribution.options import VARIANTS, check_options
from ..errors import InputError
from ..models.spec import ModelSpec, get_spec, unwrap
from ..scoring import alignment, authors_box_bug, map_to_pixels, pointing_game, region_mask, score_grid
from ..scoring.masks import polygons_to_mask
from ._batch import encode_once, shares_vision
from ..grammar import cut_at_end, end_ids, end_of_turn_id, find_spans, well_formed
from ._text import completion_text

logger = logging.getLogger(__name__)

REGIONS = ("boxes", "masks")


def row_images(i: int, prompts: Any, image: Any = None, images: Any = None) -> list:
    """Images of row ``i``: the ``images`` column, else the ``image`` column, else the prompt's image blocks.

    >>> row_images(0, [[{"role": "user", "content": [{"type": "image", "image": "I"}, {"type": "text", "text": "q"}]}]])
    ['I']
    """
    if images is not None and images[i] is not None:
        return list(images[i])
    if image is not None and image[i] is not None:
        return [image[i]]
    found = []
    for message in (prompts[i] if prompts is not None else None) or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found += [b["image"] for b in content if isinstance(b, dict) and b.get("type") == "image" and "image" in b]
    return found


@dataclass
class _Policy:
    """What one reward call reads of the current policy, once: the model, its spec and ids, and the
    per-call caches (processed prompts by content; pixel regions by evidence)."""

    model: nn.Module
    spec: ModelSpec
    ends: frozenset[int]
    placeholders: frozenset[int]
    share: bool                       # encode each distinct prompt's images once (mm_encoder_outputs)
    device: torch.device
    merge: int
    patch: int
    prompts: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, tokenizer, share_vision: bool) -> "_Policy":
        hf, spec = unwrap(model), get_spec(model)
        return cls(model, spec, end_ids(hf, tokenizer), frozenset(spec.placeholder_ids(hf)),
                   share_vision and shares_vision(hf), next(model.parameters()).device,
                   int(spec.get(hf, spec.merge_size_attr)), spec.patch_pixels(hf))


def _has_region(boxes: Any) -> bool:
    return boxes is not None and len(boxes) > 0


class SaliencyReward:
    """The saliency reward as a TRL reward callable (see the module docstring).

    >>> from saliency_r1.models.tiny import build_tiny
    >>> from PIL import Image
    >>> model, proc = build_tiny()
    >>> reward = SaliencyReward("full", model=model, processor=proc)
    >>> prompt = [{"role": "user", "content": "What colour?"}]
    >>> ids = proc.tokenizer("<think>it is red</think>red<|im_end|>")["input_ids"]
    >>> r = reward([prompt, prompt], ["<think>it is red</think>red", "red"], [ids, ids[-2:]],
    ...            image=[Image.new("RGB", (56, 56))] * 2, boxes=[[[0, 0, 28, 56]], [[0, 0, 28, 56]]])
    >>> 0.0 <= r[0] <= 1.0, r[1]
    (True, 0.0)
    """

    def __init__(self, variant: str = "full", model: nn.Module | Callable[[], nn.Module] | None = None,
                 processor: Any = None, *, region: str = "boxes", batch_size: int = 4, think_query_offset: int = 0,
                 log_pg: bool = True, share_vision: bool = True, relu: str = "per_token",
                 authors_box_bug: bool = False, name: str = "saliency"):
        if variant not in VARIANTS:
            raise InputError(f"unknown saliency variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if region not in REGIONS:
            raise InputError(f"unknown region {region!r}; use one of {', '.join(REGIONS)}")
        check_options(relu, think_query_offset)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.variant, self.region, self.batch_size = variant, region, batch_size
        self.think_query_offset, self.log_pg, self.share_vision = think_query_offset, log_pg, share_vision
        self.relu, self.authors_box_bug = relu, authors_box_bug
        self._model, self.processor = model, processor
        self.trainer = None
        self.chat_template_kwargs: dict = {}
        self.stats: Counter = Counter()
        self.__name__ = name

    def bind(self, trainer) -> "SaliencyReward":
        """Read the policy, processor and chat-template kwargs from a TRL ``GRPOTrainer`` from now on."""
        self.trainer = trainer
        self.processor = trainer.processing_class
        self.chat_template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        return self

    @contextlib.contextmanager
    def policy(self) -> Iterator[nn.Module]:
        """The current policy, unwrapped (ZeRO-3 shards gathered), in eval mode and no-grad for the block."""
        if self.trainer is not None:
            from trl.models.utils import unwrap_model_for_generation

            t = self.trainer
            ctx = unwrap_model_for_generation(t.model_wrapped, t.accelerator,
                                              gather_deepspeed3_params=t.args.ds3_gather_for_generation)
        elif self._model is not None:
            model = self._model if isinstance(self._model, nn.Module) else self._model()
            ctx = contextlib.nullcontext(model)
        else:
            raise InputError("SaliencyReward has no model: call reward.bind(trainer) or pass model= and processor=")
        with ctx as model, torch.no_grad():
            was_training = model.training
            model.eval()
            try:
                yield model
            finally:
                model.train(was_training)

    def __call__(self, prompts: Any = None, completions: Any = None, completion_ids: Any = None, *,
                 image: Any = None, images: Any = None, boxes: Any = None, masks: Any = None, width: Any = None,
                 height: Any = None, log_metric: Callable | None = None, **kwargs: Any) -> list[float | None]:
        """One reward per completion: energy-PG in [0, 1], 0.0 (broken format) or None (no evidence/image).

        ``completion_ids[i]`` are the generated ids (cut after the first end-of-turn id); ``boxes[i]``
        pixel xyxy of image ``i`` (size from ``width``/``height``, else the image); ``masks[i]`` polygons.
        """
        if self.processor is None:
            raise InputError("SaliencyReward has no processor: call reward.bind(trainer) or pass processor=")
        completions = list(completions or [])
        n = len(completions)
        if boxes is None and masks is None:
            raise InputError("the saliency reward needs a 'boxes' column (pixel xyxy); add it to the dataset")
        out: list[float | None] = [None] * n
        todo, counts = [], Counter(rows=n)
        for i, c in enumerate(completions):
            region_ok = _has_region(boxes[i] if boxes is not None else None) or (
                self.region == "masks" and masks is not None and _has_region(masks[i]))
            imgs = row_images(i, prompts, image, images)
            if not region_ok or not imgs:
                counts["none_no_boxes" if not region_ok else "none_no_image"] += 1
            elif not well_formed(completion_text(c)):
                out[i] = 0.0
                counts["format_broken"] += 1
            else:
                todo.append((i, imgs))
        t0 = time.perf_counter()
        measured = self._score_rows(todo, prompts, completions, completion_ids, boxes, masks, width, height,
                                    counts)
        for i, (energy, _, _) in measured.items():
            out[i] = energy
        self._log(counts, measured, time.perf_counter() - t0, log_metric)
        return out

    def _score_rows(self, todo, prompts, completions, completion_ids, boxes, masks, width, height, counts):
        """Trace the well-formed rows in chunks; returns ``{row: (energy-PG, PG, traced)}``.

        Rows whose spans are missing get ``(0.0, None, False)``; unusable evidence ``(None, None, True)``.
        """
        measured: dict[int, tuple[float | None, float | None, bool]] = {}
        if not todo and self.trainer is None:
            return measured
        with self.policy() as model:  # entered even with nothing to trace: ZeRO-3 gathers are collective
            pol = _Policy.of(model, self.processor.tokenizer, self.share_vision)
            for lo in range(0, len(todo), self.batch_size):
                chunk = todo[lo:lo + self.batch_size]
                grids = self._trace_chunk(pol, chunk, prompts, completions, completion_ids, counts)
                for (i, imgs), grid in zip(chunk, grids):
                    if grid is None:
                        measured[i] = (0.0, None, False)
                        continue
                    size = self._size(i, width, height, imgs)
                    measured[i] = (*self._score_one(grid, size, pol.patch, boxes, masks, i, counts, pol.regions),
                                   True)
        return measured

    @staticmethod
    def _size(i: int, width: Any, height: Any, imgs: list) -> tuple[int, int]:
        """``(W, H)`` of the original image: the width/height columns, else the first image's size."""
        if width is not None and height is not None and width[i] is not None and height[i] is not None:
            return int(width[i]), int(height[i])
        return imgs[0].size

    def _trace_chunk(self, pol: _Policy, chunk, prompts, completions, completion_ids, counts):
        """One traced forward over a chunk; returns each row's first-image grid (None: spans missing)."""
        tok = self.processor.tokenizer
        rows, resps, spans, live = [], [], [], []
        for k, (i, imgs) in enumerate(chunk):
            ids = self._ids(i, completions, completion_ids, pol.ends)
            sp = find_spans(tok, ids, pol.ends)
            if not sp.complete:
                counts["no_spans"] += 1
            elif not pol.placeholders.isdisjoint(ids):  # a generated <|image_pad|>: cannot be traced
                counts["placeholder_tokens"] += 1
            else:
                live.append(k), rows.append(self._prompt_inputs(prompts[i], imgs, pol.prompts))
                resps.append(ids), spans.append(sp)
        grids: list[torch.Tensor | None] = [None] * len(chunk)
        if not live:
            return grids
        embeds = encode_once(unwrap(pol.model), rows, pol.device) if pol.share else None
        batch = build_batch(rows, resps, spans, tok.pad_token_id, pol.merge, image_embeds=embeds)
        maps = holistic_maps(pol.model, pol.spec, batch.inputs, batch.starts, batch.spans, variant=self.variant,
                             think_query_offset=self.think_query_offset, relu=self.relu, grids=batch.grids)
        counts["traced"] += len(live)
        for k, m in zip(live, maps):
            grids[k] = m[0].float().cpu() if m else None
        return grids

    def _ids(self, i: int, completions, completion_ids, ends) -> list[int]:
        """Row ``i``'s completion ids, cut after the first end-of-turn id."""
        if completion_ids is not None and completion_ids[i] is not None:
            ids = completion_ids[i]
            ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(t) for t in ids]
        else:  # no ids (a caller outside TRL): tokenise the text and close the turn
            ids = self.processor.tokenizer(completion_text(completions[i]), add_special_tokens=False)["input_ids"]
            ids = ids + [end_of_turn_id(self.processor.tokenizer)]
        return cut_at_end(ids, ends)

    def _prompt_inputs(self, prompt: Any, imgs: list, cache: dict) -> dict:
        """Processor outputs of one prompt with its images, computed once per distinct (messages, images)."""
        from trl.data_utils import prepare_multimodal_messages

        if isinstance(prompt, str):
            raise InputError("the saliency reward needs conversational prompts ([{'role': 'user', ...}]), "
                             "not pre-templated strings; let the trainer apply the chat template")
        key = hashlib.blake2b(_messages_key(prompt).encode() + b"".join(_image_digest(im) for im in imgs)).hexdigest()
        if key not in cache:
            has_blocks = any(isinstance(m.get("content"), list) and any(b.get("type") == "image" for b in m["content"])
                             for m in prompt)
            messages = prompt if has_blocks else prepare_multimodal_messages(prompt, images=imgs)
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      **self.chat_template_kwargs)
            cache[key] = dict(self.processor(text=[text], images=imgs, return_tensors="pt"))
        return cache[key]

    def _score_one(self, grid, size, patch, boxes, masks, i, counts, regions: dict
                   ) -> tuple[float | None, float | None]:
        """Energy-PG on the grid (and PG on pixels) of one row; a bad box or mask gives None, counted.

        ``regions`` caches the pixel region of each distinct evidence (the rows of a group share it).
        """
        h, w = grid.shape
        g = np.maximum(grid.numpy().astype(np.float64), 0.0)
        use_masks = self.region == "masks" and masks is not None and _has_region(masks[i])
        evidence = masks[i] if use_masks else boxes[i]
        try:
            if self.authors_box_bug and not use_masks:  # parity with the authors' bug (scoring.authors_box_bug)
                evidence = authors_box_bug(evidence, size)
                if not evidence:
                    return 0.0, (0.0 if self.log_pg else None)
            key = (use_masks, tuple(size), repr(evidence))
            if key not in regions:
                regions[key] = (region_mask(size, masks=[polygons_to_mask(p, size) for p in evidence])
                                if use_masks else region_mask(size, boxes=evidence) if self.log_pg else None)
            if use_masks:
                pixels = map_to_pixels(g, size, (w * patch, h * patch))
                return alignment(pixels, regions[key]), pointing_game(pixels, regions[key])
            energy = score_grid(g, size, evidence)
            if not self.log_pg:
                return energy, None
            return energy, pointing_game(map_to_pixels(g, size, (w * patch, h * patch)), regions[key])
        except InputError as e:
            counts["none_bad_region"] += 1
            logger.warning("saliency reward: row %d has unusable evidence (%s); reward None", i, e)
            return None, None

    def _log(self, counts: Counter, measured: dict, seconds: float, log_metric) -> None:
        """Update ``stats`` and push the batch metrics through TRL's ``log_metric`` (when given)."""
        counts["none"] = counts["none_no_boxes"] + counts["none_no_image"] + counts["none_bad_region"]
        self.stats.update(counts)
        if log_metric is None:
            return
        energies = [e for e, _, traced in measured.values() if traced and e is not None]
        pgs = [pg for _, pg, traced in measured.values() if traced and pg is not None]
        log_metric("saliency/none_rows", float(counts["none"]))
        log_metric("saliency/format_broken_rows",
                   float(counts["format_broken"] + counts["no_spans"] + counts["placeholder_tokens"]))
        log_metric("saliency/trace_seconds", seconds)
        if energies:
            log_metric("saliency/alignment", sum(energies) / len(energies))
        if pgs:
            log_metric("saliency/pg", sum(pgs) / len(pgs))


def _messages_key(prompt: list) -> str:
    """The messages' roles and texts, with image blocks as placeholders (the images are keyed apart)."""
    parts = []
    for m in prompt:
        content = m.get("content")
        blocks = [content] if isinstance(content, str) else [
            "<image>" if b.get("type") == "image" else str(b.get("text", "")) for b in content or []]
        parts.append(f"{m.get('role')}\x00" + "\x01".join(blocks))
    return "\x02".join(parts)


def _image_digest(im: Any) -> bytes:
    try:
        return hashlib.blake2b(im.tobytes(), digest_size=16).digest() + repr(im.size).encode()
    except AttributeError:
        return repr(id(im)).encode()


__all__ = ["SaliencyReward", "REGIONS", "row_images"]
