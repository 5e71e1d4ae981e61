"""Every saliency method behind one interface, in one registry.

    method(smodel, image, question, response, **options) -> list of (h, w) float32 maps

``image`` is one image or a list; ``response`` the response ids (or a string); the maps are on the
merged-patch grid of each image, finite and non-negative. A method raises :class:`MethodUnavailable`
when its map is undefined for that response (e.g. ``ours-think`` without a thinking span).

========================  ========================================================================
``ours``                  holistic map (method.md §2, thinking tokens as bottleneck); when the
                          response has no think/answer spans, the sum of every response token's
                          §1 map (flagged ``fallback`` by :func:`compute_maps`)
``ours-think``            sum of the thinking tokens' §1 maps
``ours-answer``           sum of the answer tokens' §1 maps
``ours-attn``             the bottleneck rollout of raw attention weights (§2 ``attn`` variant)
``attention``             raw attention (:mod:`.attention_maps`)
``rollout``               attention rollout (:mod:`.attention_maps`)
``cam``, ``gradcam``      :mod:`.gradient_maps`
``ixg``, ``ig``           captum InputXGradient / IntegratedGradients (:mod:`.gradient_maps`)
``tam``                   Token Activation Map (:mod:`.tam`)
``attnlrp``               AttnLRP relevance of the visual tokens (:mod:`.attnlrp`)
``random``                uniform noise (seeded by the response), the floor any method must beat
========================  ========================================================================

AttnLRP is a port of the authors' rules, not the ``lxt`` package: see docs/baselines.md.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Callable

import torch

from ..attribution.inputs import response_ids
from ..errors import InputError
from .attention_maps import raw_attention, rollout
from .attnlrp import attnlrp
from .common import prepare
from .gradient_maps import cam, gradcam, input_x_gradient, integrated_gradients
from .tam import tam


class MethodUnavailable(InputError):
    """The method's map is undefined for this response (the evaluation skips the method there)."""


def _ours(variant: str) -> Callable:
    key = {"full": "holistic"}.get(variant, variant)

    def method(smodel, image, question: str, response, **_: Any) -> list[torch.Tensor]:
        res = smodel.explain(image, question, response=response)
        maps = getattr(res, key)
        if maps is None and variant == "full":
            return [m.sum(0).float() for m in res.token_maps]  # (N, h, w) -> (h, w)
        if maps is None:
            raise MethodUnavailable(f"ours-{variant}: {res.holistic_reason or 'span missing'}")
        return [m.float().clamp_min(0) for m in maps]

    method.__name__ = f"ours_{variant}"
    method.__doc__ = f"Saliency-R1's ``{variant}`` map via ``SaliencyModel.explain``."
    return method


def random_map(smodel, image, question: str, response, **_: Any) -> list[torch.Tensor]:
    """Uniform [0, 1) noise on each grid, seeded by the response ids (deterministic).

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> a = random_map(sm, Image.new("RGB", (56, 56)), "Q?", [5, 6])[0]
    >>> bool((a == random_map(sm, Image.new("RGB", (56, 56)), "Q?", [5, 6])[0]).all())
    True
    """
    ex = prepare(smodel, image, question, response)
    seed = int.from_bytes(hashlib.sha256(repr((ex.ids, ex.grids)).encode()).digest()[:4], "little")
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(h, w, generator=g) for h, w in ex.grids]


METHODS: dict[str, Callable] = {
    "ours": _ours("full"),
    "ours-think": _ours("think"),
    "ours-answer": _ours("answer"),
    "ours-attn": _ours("attn"),
    "attention": raw_attention,
    "rollout": rollout,
    "cam": cam,
    "gradcam": gradcam,
    "ixg": input_x_gradient,
    "ig": integrated_gradients,
    "tam": tam,
    "attnlrp": attnlrp,
    "random": random_map,
}
"""Name -> method. ``ours*`` ignore ``target`` (their targets are fixed by method.md §2)."""

DEFAULT_METHODS: tuple[str, ...] = ("ours", "attention", "rollout", "cam", "gradcam", "ixg", "ig", "tam", "attnlrp",
                                     "random")


def parse_methods(spec: str | list[str] | None) -> list[str]:
    """``"ours,gradcam"`` (or a list; ``"all"``; None = :data:`DEFAULT_METHODS`) -> checked names.

    >>> parse_methods("ours, ig")
    ['ours', 'ig']
    """
    if spec is None:
        return list(DEFAULT_METHODS)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["all"]:
        return list(METHODS)
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise InputError(f"unknown method(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def compute_maps(smodel, name: str, image, question: str, response, **options: Any) -> dict[str, Any]:
    """Run method ``name``; returns ``{"maps": [...] or None, "seconds", "skipped": reason or None,
    "fallback": bool}``, with the maps checked finite and non-negative.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> compute_maps(sm, "ours-think", Image.new("RGB", (56, 56)), "Q?", "no tags")["skipped"][:10]
    'ours-think'
    """
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    opts = {} if name.startswith("ours") or name == "random" else options
    t0 = time.perf_counter()
    try:
        maps = METHODS[name](smodel, image, question, response, **opts)
    except MethodUnavailable as e:
        return {"maps": None, "seconds": time.perf_counter() - t0, "skipped": str(e), "fallback": False}
    seconds = time.perf_counter() - t0
    maps = [torch.nan_to_num(m.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0) for m in maps]
    spans = smodel.spans(_ids(smodel, response)) if name == "ours" else None
    fallback = spans is not None and (spans.think is None or spans.answer is None)
    return {"maps": maps, "seconds": seconds, "skipped": None, "fallback": fallback}


def _ids(smodel, response) -> list[int]:
    return response_ids(smodel.processor, response, smodel.processor.tokenizer.eos_token_id)


__all__ = ["METHODS", "DEFAULT_METHODS", "MethodUnavailable", "parse_methods", "compute_maps", "random_map"]
