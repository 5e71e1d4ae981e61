"""Capture the decoder's attention inputs through transformers' attention-function interface.

How it works (documented extension points only, no patching):

1. ``AttentionInterface.register("saliency_r1_<impl>", wrapper)`` and the same name in
   ``AttentionMaskInterface`` mapped to ``<impl>``'s own mask function (so masks are built exactly as
   for ``<impl>``). ``<impl>`` is whatever the model was loaded with: sdpa, eager, flash_attention_2...
2. Inside :func:`capture_attention`, the *text* config's ``_attn_implementation`` is switched to the
   wrapper's name (the vision tower keeps its own); the wrapper hands the post-RoPE ``query``
   ``(B, H, T, E)`` and the pre-GQA-repeat ``key``/``value`` ``(B, K, T, E)`` of each traced layer to a
   callback, then calls ``<impl>`` unchanged, so the model's outputs are bit-identical.
3. ``finally`` restores the implementation name and removes every hook, also when the forward raises.
   A context that saw no attention call raises :class:`~saliency_r1.errors.CaptureError`.
"""

from __future__ import annotations

import contextvars
import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..errors import CaptureError
from ..models.spec import ModelSpec, unwrap

PREFIX = "saliency_r1_"

LayerCallback = Callable[[int, nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], None]
"""``callback(layer, module, query (B,H,T,E), key (B,K,T,E), value (B,K,T,E))``."""


@dataclass
class _Active:
    layers: dict[int, int]
    callback: LayerCallback
    base: Callable
    calls: int = 0


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("saliency_r1_active", default=None)
_BASES: dict[str, Callable] = {}


def _wrapper(module, query, key, value, attention_mask, **kwargs):
    name = module.config._attn_implementation
    state = _ACTIVE.get()
    base = state.base if state is not None else _BASES[name]
    if state is not None and id(module) in state.layers:
        state.callback(state.layers[id(module)], module, query, key, value)
        state.calls += 1
    return base(module, query, key, value, attention_mask, **kwargs)


def _register(impl: str, eager: Callable) -> tuple[str, Callable]:
    """Register the wrapper for ``impl`` once; return its name and ``impl``'s attention function."""
    if impl.startswith(PREFIX):
        raise CaptureError("attention capture is already active on this model (nested capture contexts)")
    base = eager if impl == "eager" else ALL_ATTENTION_FUNCTIONS[impl]
    name = PREFIX + impl
    if name not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(name, _wrapper)
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[impl])
    _BASES[name] = base
    return name, base


@contextmanager
def capture_attention(model: nn.Module, spec: ModelSpec, callback: LayerCallback) -> Iterator[None]:
    """Call ``callback`` with each decoder layer's attention inputs during forwards inside the block.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> from saliency_r1.models.spec import get_spec
    >>> model, proc = build_tiny()
    >>> seen = []
    >>> with capture_attention(model, get_spec(model), lambda l, m, q, k, v: seen.append((l, tuple(q.shape)))):
    ...     _ = model(input_ids=torch.tensor([[1, 2, 3]]))
    >>> seen[0]
    (0, (1, 4, 3, 32))
    """
    hf = unwrap(model)
    text_config = spec.get(hf, spec.text_config)
    impl = text_config._attn_implementation or "eager"
    eager = importlib.import_module(spec.eager_module).eager_attention_forward
    name, base = _register(impl, eager)
    layers = {id(m): i for i, m in enumerate(spec.attention_modules(hf))}
    state = _Active(layers=layers, callback=callback, base=base)
    token = _ACTIVE.set(state)
    text_config._attn_implementation = name
    try:
        yield
    finally:
        text_config._attn_implementation = impl
        _ACTIVE.reset(token)
    if state.calls == 0:
        raise CaptureError("no decoder attention call was captured: run the model's forward inside the "
                           "capture block (and check that the spec's attention paths match the model)")


@contextmanager
def capture_norm_input(model: nn.Module, spec: ModelSpec) -> Iterator[list[torch.Tensor]]:
    """Capture the input of the final RMSNorm (``h^L``, ``(B, T, D)``) through a forward pre-hook.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> from saliency_r1.models.spec import get_spec
    >>> model, _ = build_tiny()
    >>> with capture_norm_input(model, get_spec(model)) as got:
    ...     _ = model(input_ids=torch.tensor([[1, 2]]))
    >>> tuple(got[0].shape)
    (1, 2, 128)
    """
    norm = spec.get(unwrap(model), spec.final_norm)
    got: list[torch.Tensor] = []
    handle = norm.register_forward_pre_hook(lambda mod, args: got.append(args[0].detach()))
    try:
        yield got
    finally:
        handle.remove()
    if not got:
        raise CaptureError("the final norm never ran inside the capture block: run the model's forward there")


__all__ = ["capture_attention", "capture_norm_input", "LayerCallback"]
