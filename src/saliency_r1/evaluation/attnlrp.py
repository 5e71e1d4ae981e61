"""AttnLRP (Achtibat et al., ICML 2024) on the stock HF decoder, as gradient × input with modified backward passes.

AttnLRP propagates a relevance ``R`` from the explained logit to the input embeddings, conserving it
layer by layer. Its rules can all be written as "relevance of a tensor = the tensor × its modified
gradient" (``R_x = x ⊙ ĝ_x``), which is how the authors' ``lxt.efficient`` implements them; this module
ports those rules (``lxt/efficient/rules.py`` and ``patches.py`` of rachtibat/LRP-eXplains-Transformers,
commit f04344177551bfcc3665e88afe96501f43fe560b), not the package (which cannot be imported with
transformers 5, docs/baselines.md). Inside :func:`attnlrp_rules`:

* **Linear layers** (ε-LRP with ε → 0): plain gradient. ``R_x = x ⊙ Wᵀĝ_z`` sums to ``Σ (z − b) ⊙ ĝ_z``:
  the bias ``b`` absorbs ``Σ b ⊙ ĝ_z`` (Qwen2.5's ``q/k/v_proj`` are the only biased decoder linears).
* **RMSNorm** (identity rule on the normalisation, paper eq. 9): the factor ``1/rms(x)`` is detached
  (``lxt``'s ``rms_norm_forward``), so the norm is the linear map ``x ↦ w ⊙ x / rms(x)``: conservative.
  (Float64 models keep the norm in float64, where the stock norm rounds to float32, so that
  conservation can be checked to ~1e-10; the stock rounding alone leaves a ~1e-6 relative residual.)
* **SiLU of the gate** (identity rule, eq. 9): ``ĝ_x = (act(x) / (x + 1e-10)) ⊙ ĝ_y``
  (``identity_rule_implicit``), so ``R_x = R_y``.
* **Gated product** ``act(gate) ⊙ up`` (uniform rule, eq. 7): the gradient into ``down_proj`` is
  halved (``divide_gradient(·, 2)``): each factor gets half of ``R``, the two halves sum to ``R``.
* **Attention** ``softmax(q kᵀ/√d + mask) v``: the product ``A v`` halves the gradient to ``A`` and to
  ``v`` (uniform rule), ``q kᵀ`` halves it again to ``q`` and ``k``: ``q`` and ``k`` get ``ĝ / 4``, ``v``
  ``ĝ / 2`` (``wrap_attention_forward``). Here the scaling sits on the ``q/k/v_proj`` outputs, which is
  the same since RoPE and the head reshape are linear.
* **Softmax** (paper Prop. 3.1, Taylor decomposition at ``x`` with bias): ``R_x = x ⊙ (R_s − s Σ R_s)``,
  which is exactly ``x ⊙ ∂`` through the softmax, so it needs no change. It is not conservative: the
  bias term ``b = s ⊙ (1 − x + Σ s x)`` absorbs ``½ Σ ĝ_s ⊙ b`` per attention call (the ½ is the uniform
  rule's share of ``A``). Masked entries have ``s = 0`` and absorb nothing.
* Residual additions, RoPE, the head reshape, GQA's repeat: linear, plain gradient, conservative.

So ``Σ_t R_t = F − (bias terms) − (softmax terms)`` exactly (up to the ``1e-10`` of the identity rule
and rounding), with ``R_t = Σ_d e_{t,d} ĝ_{t,d}`` at the decoder's input embeddings (text and merged
visual tokens alike) and ``F`` the mean target logit. :func:`attnlrp_relevance` returns all three;
the softmax terms are measured only with ``audit=True``, which runs an explicit eager attention (with
the softmax in at least float32) so that the softmax output can be hooked.

The ``attnlrp`` map is ``ReLU(R_v)`` over the merged visual tokens (net positive relevance per token,
as for ``ixg``). Every hook is removed in ``finally``; the forward values are those of the stock model.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
from torch.autograd import Function
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..errors import InputError
from ..models.spec import unwrap
from .common import Example, embeds_inputs, prepare, visual_embeddings

QKV_FACTORS = {"q_proj": 4.0, "k_proj": 4.0, "v_proj": 2.0}
"""Gradient divisors on the attention inputs (uniform rule through ``A v`` and ``q kᵀ``)."""

AUDIT_ATTENTION = "attnlrp_audit_eager"


class _DivideGradient(Function):
    """Identity forward; backward ``ĝ / factor`` (``lxt``'s ``divide_gradient_fn``, the uniform rule)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.factor, None


class _IdentityRule(Function):
    """``y = fn(x)``; backward ``ĝ_x = y / (x + eps) ⊙ ĝ_y`` (``lxt``'s ``identity_rule_implicit_fn``)."""

    @staticmethod
    def forward(ctx, fn, x, eps=1e-10):
        y = fn(x)
        ctx.save_for_backward(torch.nan_to_num(y / (x + eps), nan=0.0, posinf=0.0, neginf=0.0))  # fp16: eps -> 0
        return y

    @staticmethod
    def backward(ctx, g):
        return None, ctx.saved_tensors[0] * g, None


@dataclass
class Ledger:
    """Relevance absorbed outside the inputs during one backward (filled by the rules' hooks)."""

    bias: float = 0.0                 # Σ b ⊙ ĝ_z over biased linears
    softmax: float | None = None      # Σ ½ ĝ_s ⊙ s ⊙ (1 − x + Σ s x); None unless audited
    per_module: dict = field(default_factory=dict)

    def add(self, key: str, value: torch.Tensor) -> None:
        v = float(value.detach().double())
        self.per_module[key] = self.per_module.get(key, 0.0) + v
        if key.startswith("softmax"):
            self.softmax = (self.softmax or 0.0) + v
        else:
            self.bias += v


_LEDGER: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar("attnlrp_ledger", default=None)


def _rms_hook(mod, args, out):
    """Recompute the RMSNorm output with ``1/rms`` detached: the stock ops (float32 inside) for float32 and
    bfloat16 models, bit-identical; float64 models stay in float64 (the stock norm rounds to float32)."""
    x = args[0]
    h = x.to(torch.promote_types(x.dtype, torch.float32))
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon).detach()
    return mod.weight * h.to(x.dtype)


def _act_hook(mod, args, out):
    return _IdentityRule.apply(mod.forward, args[0])


def _halve_pre_hook(mod, args):
    return (_DivideGradient.apply(args[0], 2.0),) + tuple(args[1:])


def _linear_hook(key: str, factor: float, ledger: Ledger):
    def hook(mod, args, out):
        if mod.bias is not None and out.requires_grad:
            out.register_hook(lambda g: ledger.add(key, (g * mod.bias).sum()))
        return _DivideGradient.apply(out, factor) if factor != 1.0 else None
    return hook


def _audit_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Eager attention (as HF's ``eager_attention_forward``) that records the softmax's bias terms."""
    rep = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(rep, dim=1)  # (B, H, K, E): GQA repeat, as repeat_kv
    v = value.repeat_interleave(rep, dim=1)  # (B, H, K, E)
    dt = torch.promote_types(query.dtype, torch.float32)
    x = (torch.matmul(query, k.transpose(2, 3)) * scaling).to(dt)  # (B, H, Q, K)
    if attention_mask is not None:
        m = attention_mask[..., :k.shape[-2]]
        x = x.masked_fill(~m, torch.finfo(dt).min) if m.dtype == torch.bool else x + m.to(dt)
    s = x.softmax(-1)  # (B, H, Q, K)
    ledger = _LEDGER.get()
    if ledger is not None and s.requires_grad:
        xd, sd = x.detach(), s.detach()
        mean = (sd * torch.where(sd > 0, xd, 0)).sum(-1, keepdim=True)  # (B, H, Q, 1): Σ s x
        bias = torch.where(sd > 0, sd * (1 - xd + mean), 0)  # (B, H, Q, K): s - J x
        layer = getattr(module, "layer_idx", "?")
        s.register_hook(lambda g: ledger.add(f"softmax.{layer}", 0.5 * (g * bias).sum()))
    out = torch.matmul(s.to(query.dtype), v)  # (B, H, Q, E)
    return out.transpose(1, 2).contiguous(), s


def _decoder_modules(hf: nn.Module, spec) -> list[nn.Module]:
    """The modules the rules apply to: the decoder layers, the final norm, the LM head."""
    return [spec.get(hf, spec.layers), spec.get(hf, spec.final_norm), spec.get(hf, spec.lm_head)]


def _install(hf: nn.Module, spec, ledger: Ledger, handles: list) -> None:
    """Register the rules' hooks on the decoder (appending their handles to ``handles``)."""
    n_mlp = 0
    for root in _decoder_modules(hf, spec):
        for name, mod in root.named_modules():
            if type(mod).__name__.endswith("RMSNorm") and hasattr(mod, "variance_epsilon"):
                handles.append(mod.register_forward_hook(_rms_hook))
            elif all(hasattr(mod, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
                handles.append(mod.act_fn.register_forward_hook(_act_hook))
                handles.append(mod.down_proj.register_forward_pre_hook(_halve_pre_hook))
                n_mlp += 1
            elif isinstance(mod, nn.Linear):
                factor = QKV_FACTORS.get(name.rsplit(".", 1)[-1], 1.0)
                if factor != 1.0 or mod.bias is not None:
                    handles.append(mod.register_forward_hook(_linear_hook(name, factor, ledger)))
    if n_mlp != spec.n_layers(hf):
        raise InputError(f"AttnLRP found {n_mlp} gated MLPs for {spec.n_layers(hf)} decoder layers; "
                         "it supports decoders whose MLP is down_proj(act_fn(gate_proj(x)) * up_proj(x))")


@contextmanager
def attnlrp_rules(model: nn.Module, spec, *, audit: bool = False) -> Iterator[Ledger]:
    """Apply AttnLRP's rules (module docstring) to the decoder of ``model`` inside the block.

    Yields the :class:`Ledger` that the next backward fills. Forward values are unchanged (``audit``
    switches the decoder to an explicit eager attention, equal to the stock one up to rounding).

    >>> from saliency_r1.models.tiny import build_tiny
    >>> from saliency_r1.models.spec import get_spec
    >>> model, _ = build_tiny()
    >>> ids = torch.tensor([[1, 2, 3]])
    >>> ref = model(input_ids=ids).logits
    >>> with attnlrp_rules(model, get_spec(model)):
    ...     same = torch.equal(model(input_ids=ids).logits, ref)
    >>> same, model.lm_head._forward_hooks == {}
    (True, True)
    """
    hf = unwrap(model)
    ledger = Ledger(softmax=0.0 if audit else None)
    text_config = spec.get(hf, spec.text_config)
    impl = text_config._attn_implementation
    handles: list = []
    token = _LEDGER.set(ledger)
    try:
        _install(hf, spec, ledger, handles)
        if audit:
            if AUDIT_ATTENTION not in ALL_ATTENTION_FUNCTIONS:
                ALL_ATTENTION_FUNCTIONS.register(AUDIT_ATTENTION, _audit_attention)
                ALL_MASK_ATTENTION_FUNCTIONS.register(AUDIT_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
            text_config._attn_implementation = AUDIT_ATTENTION
        yield ledger
    finally:
        _LEDGER.reset(token)
        text_config._attn_implementation = impl
        for h in handles:
            h.remove()


@dataclass
class Relevance:
    """AttnLRP relevances of one example: per input position, and what the inputs do not receive."""

    tokens: torch.Tensor      # (T,) R_t = Σ_d e_{t,d} ĝ_{t,d} at the decoder's input embeddings
    visual: torch.Tensor      # (V,) absolute positions of the visual tokens
    explained: float          # F: the mean target logit
    bias: float               # relevance absorbed by the linears' biases
    softmax: float | None     # relevance absorbed by the softmax bias terms (None unless audited)

    @property
    def residual(self) -> float:
        """``F − Σ_t R_t − bias − softmax``: zero up to rounding when audited (conservation)."""
        return self.explained - float(self.tokens.double().sum()) - self.bias - (self.softmax or 0.0)


@contextmanager
def _input_leaf(language_model: nn.Module) -> Iterator[dict]:
    """Replace the decoder's ``inputs_embeds`` by a leaf that requires grad (yielded as ``box["e"]``)."""
    box: dict = {}

    def pre(mod, args, kwargs):
        box["e"] = kwargs["inputs_embeds"].detach().requires_grad_(True)
        kwargs["inputs_embeds"] = box["e"]
        return args, kwargs

    handle = language_model.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield box
    finally:
        handle.remove()


def attnlrp_relevance(smodel, ex: Example, target: str = "answer", *, audit: bool = False) -> Relevance:
    """AttnLRP relevance of every input position for ``F`` = the mean logit of the ``target`` tokens.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> rel = attnlrp_relevance(sm, prepare(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b"), audit=True)
    >>> rel.tokens.shape[0] == prepare(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b").length
    True
    >>> abs(rel.residual) < 1e-3 * abs(rel.explained)
    True
    """
    hf, spec = smodel.hf, smodel.spec
    rows, targets = ex.rows(target)
    e = visual_embeddings(smodel, ex)[None]  # (1, V, D)
    inp = embeds_inputs(ex, e, e.device)
    lm = spec.get(hf, spec.layers.rsplit(".", 1)[0])
    with torch.enable_grad(), _input_leaf(lm) as box, attnlrp_rules(hf, spec, audit=audit) as ledger:
        hidden = hf.model(**inp, use_cache=False).last_hidden_state  # (1, T, D), final norm applied
        logits = spec.get(hf, spec.lm_head)(hidden[0, rows.to(hidden.device)])  # (R, vocab)
        f = logits.gather(-1, targets.to(logits.device)[:, None]).double().mean()
        (g,) = torch.autograd.grad(f, box["e"])  # (1, T, D)
    tokens = (box["e"].detach().double() * g.double()).sum(-1)[0]  # (T,)
    return Relevance(tokens=tokens.cpu(), visual=ex.visual, explained=float(f.detach()), bias=ledger.bias,
                     softmax=ledger.softmax)


def attnlrp(smodel, image, question: str, response, *, target: str = "answer") -> list[torch.Tensor]:
    """AttnLRP map: ``ReLU`` of the visual tokens' relevance, on each image's merged grid.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> m = attnlrp(sm, Image.new("RGB", (84, 56)), "Q?", "<think>a</think>b")[0]
    >>> tuple(m.shape), bool((m >= 0).all())
    ((2, 3), True)
    """
    ex = prepare(smodel, image, question, response)
    rel = attnlrp_relevance(smodel, ex, target)
    return ex.to_grids(rel.tokens[ex.visual].float().clamp_min(0))


__all__ = ["attnlrp", "attnlrp_relevance", "attnlrp_rules", "Relevance", "Ledger", "QKV_FACTORS"]
