"""Every saliency method behind one interface, in one registry.

    method(smodel, image, question, response, **options) -> list of (h, w) float32 maps

``image`` is one image or a list; ``response`` the response ids (or a string); the maps are on the
merged-patch grid of each image, finite and non-negative. A method raises :class:`MethodUnavailable`
when its map is undefined for that response (e.g. ``ours-think`` without a thinking span).

========================  ========================================================================
``ours``                  holistic map (method.md §2, thinking tokens as bottleneck); undefined
                          without think/answer spans, where :func:`compute_maps` uses
                          ``ours-tokens`` instead and flags the record ``fallback``
``ours-tokens``           sum of every response token's §1 map
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

from ..attribution.maps import variant_field
from ..errors import InputError
from .attention_maps import raw_attention, rollout
from .attnlrp import attnlrp
from .common import prepare
from .gradient_maps import cam, gradcam, input_x_gradient, integrated_gradients
from .tam import tam


class MethodUnavailable(InputError):
    """The method's map is undefined for this response (the evaluation skips the method there)."""


def _variant_maps(res, variant: str) -> list[torch.Tensor]:
    """``variant``'s maps of an explained response; MethodUnavailable where its spans are missing."""
    maps = getattr(res, variant_field(variant))
    if maps is None:
        raise MethodUnavailable(f"ours{'' if variant == 'full' else '-' + variant}: "
                                f"{res.holistic_reason or 'span missing'}")
    return [m.float().clamp_min(0) for m in maps]


def _token_sum(res) -> list[torch.Tensor]:
    return [m.sum(0).float() for m in res.token_maps]  # (N, h, w) -> (h, w)


def _ours(variant: str) -> Callable:
    variant_field(variant)

    def method(smodel, image, question: str, response, **_: Any) -> list[torch.Tensor]:
        return _variant_maps(smodel.explain(image, question, response=response), variant)

    method.__name__ = f"ours_{variant}"
    method.__doc__ = f"Saliency-R1's ``{variant}`` map via ``SaliencyModel.explain``."
    return method


def ours_tokens(smodel, image, question: str, response, **_: Any) -> list[torch.Tensor]:
    """The sum of every response token's §1 map (ReLU per token): defined for any response, with or without
    think/answer spans. ``compute_maps("ours", ...)`` falls back to it, flagged, where ``ours`` is undefined.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> [tuple(m.shape) for m in ours_tokens(sm, Image.new("RGB", (56, 56)), "Q?", "no tags")]
    [(2, 2)]
    """
    return _token_sum(smodel.explain(image, question, response=response))


def _ours_or_tokens(smodel, image, question: str, response) -> tuple[list[torch.Tensor], bool]:
    """``ours``' maps, or (one explain, explicitly flagged) ``ours-tokens``' where ``ours`` is undefined."""
    res = smodel.explain(image, question, response=response)
    try:
        return _variant_maps(res, "full"), False
    except MethodUnavailable:
        return _token_sum(res), True


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
    "ours-tokens": ours_tokens,
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

    The one fallback, explicit: where ``ours`` is undefined (no think/answer spans) its maps are
    ``ours-tokens``' and ``fallback`` is True (the tables count these records).

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
    fallback = False
    try:
        if name == "ours":
            maps, fallback = _ours_or_tokens(smodel, image, question, response)
        else:
            maps = METHODS[name](smodel, image, question, response, **opts)
    except MethodUnavailable as e:
        return {"maps": None, "seconds": time.perf_counter() - t0, "skipped": str(e), "fallback": False}
    seconds = time.perf_counter() - t0
    maps = [torch.nan_to_num(m.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0) for m in maps]
    return {"maps": maps, "seconds": seconds, "skipped": None, "fallback": fallback}


__all__ = ["METHODS", "DEFAULT_METHODS", "MethodUnavailable", "parse_methods", "compute_maps", "random_map", "ours_tokens"]
