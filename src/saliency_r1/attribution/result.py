"""`SaliencyResult`: the data of one explained response. Behaviour lives in modules.

Layout of the maps (method.md §1-§2): one merged-patch grid ``(h, w)`` per image, row-major, in the
order the images appear in the prompt. ``contributions`` keeps the raw (pre-ReLU) logit contributions
of every visual token in sequence order; ``token_maps`` are the same numbers after ReLU, cut per image
and laid on each grid. Scoring a result against boxes is :func:`saliency_r1.score`
(:func:`saliency_r1.scoring.score_result`): this module imports no later stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .._io import atomic_write as _atomic_write
from ..errors import InputError

_TENSOR_FIELDS = ("input_ids", "response_ids", "contributions")
_PER_IMAGE_FIELDS = ("token_maps", "holistic", "think", "answer", "attn")
_FORMAT_VERSION = 1


@dataclass
class SaliencyResult:
    """Saliency of one response over the image(s) of its prompt.

    Attributes:
        input_ids: ``(T,)`` the whole traced sequence (prompt + response), no padding.
        response_start: index in ``input_ids`` of the first response token.
        response_ids: ``(N,)`` the response ids, ``input_ids[response_start:]``.
        tokens: N decoded strings, one per response token.
        think_span: absolute ``[start, end)`` of the thinking tokens (strictly between ``<think>``
            and ``</think>``), or None.
        answer_span: absolute ``[start, end)`` of the answer tokens (after ``</think>``, before the
            end-of-turn token), or None.
        contributions: ``(N, V)`` raw c of method.md §1: the contribution to the logit of response
            token k made at the position before it, over all visual tokens in sequence order.
        grids: merged grid ``(h, w)`` per image.
        token_maps: per image, ``(N, h, w)`` after ReLU.
        holistic: per image, ``(h, w)`` (method.md §2), or None (see ``holistic_reason``).
        think, answer, attn: per image, ``(h, w)`` variant maps of method.md §2, or None.
        image_sizes: original ``(width, height)`` per image.
        resized_sizes: ``(width, height)`` per image after the processor's resize; the grid covers
            exactly this area, ``patch_pixels`` pixels per merged cell.
        patch_pixels: side of one merged cell in resized pixels (patch_size * merge_size).
        question: the question text; response_text: the decoded response.
        holistic_reason: why ``holistic`` is None, else None.
        meta: model name, attention implementation, timings (seconds) and the like.
        images: the original images (RGB PIL), kept for reports; saved as PNG.
    """

    input_ids: torch.Tensor
    response_start: int
    response_ids: torch.Tensor
    tokens: list[str]
    think_span: tuple[int, int] | None
    answer_span: tuple[int, int] | None
    contributions: torch.Tensor
    grids: list[tuple[int, int]]
    token_maps: list[torch.Tensor]
    holistic: list[torch.Tensor] | None
    think: list[torch.Tensor] | None
    answer: list[torch.Tensor] | None
    attn: list[torch.Tensor] | None
    image_sizes: list[tuple[int, int]]
    resized_sizes: list[tuple[int, int]]
    patch_pixels: int
    question: str = ""
    response_text: str = ""
    holistic_reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    images: list[Any] | None = None

    @property
    def n_images(self) -> int:
        return len(self.grids)

    def save(self, directory: str | Path) -> Path:
        """Write ``saliency.safetensors`` + ``saliency.json`` (+ ``image_{i}.png``) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).contiguous() for name in _TENSOR_FIELDS}
        for name in _PER_IMAGE_FIELDS:
            maps = getattr(self, name)
            for i, m in enumerate(maps or []):
                tensors[f"{name}.{i}"] = m.contiguous().float()
        meta = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _TENSOR_FIELDS + _PER_IMAGE_FIELDS + ("images",)}
        meta["present"] = {name: getattr(self, name) is not None for name in _PER_IMAGE_FIELDS}
        meta["format_version"] = _FORMAT_VERSION
        _atomic_write(out / "saliency.safetensors", lambda p: save_file(tensors, str(p)))
        _atomic_write(out / "saliency.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
        for i, img in enumerate(self.images or []):
            _atomic_write(out / f"image_{i}.png", lambda p, img=img: img.save(p, format="PNG"))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "SaliencyResult":
        """Read what :meth:`save` wrote (safetensors only: no pickle)."""
        src = Path(directory)
        if not (src / "saliency.json").is_file():
            raise InputError(f"{src} holds no saved SaliencyResult (saliency.json missing); "
                             "pass the directory given to SaliencyResult.save")
        meta = json.loads((src / "saliency.json").read_text())
        tensors = load_file(str(src / "saliency.safetensors"))
        present = meta.pop("present")
        meta.pop("format_version", None)
        n = len(meta["grids"])
        kwargs = dict(meta)
        kwargs["grids"] = [tuple(g) for g in meta["grids"]]
        kwargs["image_sizes"] = [tuple(s) for s in meta["image_sizes"]]
        kwargs["resized_sizes"] = [tuple(s) for s in meta["resized_sizes"]]
        for span in ("think_span", "answer_span"):
            kwargs[span] = tuple(meta[span]) if meta[span] is not None else None
        for name in _TENSOR_FIELDS:
            kwargs[name] = tensors[name]
        for name in _PER_IMAGE_FIELDS:
            kwargs[name] = [tensors[f"{name}.{i}"] for i in range(n)] if present[name] else None
        images = sorted(src.glob("image_*.png"), key=lambda p: int(p.stem.split("_")[1]))
        if images:
            from .._images import read_image

            kwargs["images"] = [read_image(p).convert("RGB") for p in images]
        return cls(**kwargs)


__all__ = ["SaliencyResult"]
