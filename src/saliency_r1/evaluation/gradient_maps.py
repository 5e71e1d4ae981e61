"""Class-activation and gradient baselines on the merged visual tokens.

Notation: ``e_v ∈ R^D`` is merged visual token ``v`` as the LLM receives it (the vision merger's
output, scattered into ``inputs_embeds``; :func:`~saliency_r1.evaluation.common.visual_embeddings`);
``F(e) = mean_{r ∈ R} log p(y_r | e, …)`` the mean log-likelihood of the target tokens
(:func:`~saliency_r1.evaluation.common.loglik_from_embeds`); ``g_v = ∂F/∂e_v``.

* ``cam``: CAM with the LM head as the classifier. ``x_v`` = the final-norm output at visual position
  ``v`` (the features the LM head reads there), ``w = mean_{r ∈ R} E[:, y_r]`` (the LM-head rows of
  the target tokens): ``s_v = ⟨x_v, w⟩``, ``map = s − min(s)``. A ReLU instead of the shift would
  zero the whole map whenever every visual position gives the targets a negative logit, which is
  common (visual positions are not trained to predict text); the shift keeps CAM's ranking, which
  is all deletion/insertion use. No gradient; one forward.
* ``gradcam``: Grad-CAM's pooled channel weights ``α = mean_v g_v`` ``(D,)``, ``map_v = ReLU(⟨α, e_v⟩)``.
  One forward + one backward.
* ``ixg``: gradient × input, ``captum.attr.InputXGradient``: ``map_v = ReLU(Σ_d g_{v,d} e_{v,d})``.
* ``ig``: integrated gradients, ``captum.attr.IntegratedGradients`` from the all-zero embedding:
  ``IG_v = Σ_d e_{v,d} ∫_0^1 ∂F/∂e_{v,d}(α e) dα`` (``n_steps`` nodes of ``method``, default
  ``gausslegendre`` with 16 steps), ``map_v = ReLU(IG_v)``. ``n_steps`` forwards + backwards, batched
  ``internal_batch_size`` at a time.

Summing over the feature dim before the ReLU keeps only net positive evidence per token, matching
the ReLU of the logit decomposition (method.md §1).
"""

from __future__ import annotations

import torch

from ..attribution.batch import to_device
from .common import Example, loglik_from_embeds, prepare, visual_embeddings


def _forward_func(smodel, ex: Example, target: str):
    """``F``: visual embeddings ``(B, V, D)`` -> mean target log-likelihood ``(B,)`` (captum's forward)."""
    return lambda embeds: loglik_from_embeds(smodel, ex, embeds, target)


def cam(smodel, image, question: str, response, *, target: str = "answer") -> list[torch.Tensor]:
    """CAM with the LM head's target rows as class weights; see the module docstring.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> m = cam(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b")[0]
    >>> tuple(m.shape), float(m.min())
    ((2, 2), 0.0)
    """
    ex = prepare(smodel, image, question, response)
    _, targets = ex.rows(target)
    with torch.no_grad():
        hidden = smodel.hf.model(**to_device(ex.inputs, smodel.device), use_cache=False).last_hidden_state
        x = hidden[0, ex.visual.to(hidden.device)].float()  # (V, D), final norm applied
        w = smodel.hf.lm_head.weight[targets.to(hidden.device)].float().mean(0)  # (D,)
        s = x @ w  # (V,)
    return ex.to_grids(s - s.min())


def gradcam(smodel, image, question: str, response, *, target: str = "answer") -> list[torch.Tensor]:
    """Grad-CAM on the merged visual tokens: ``ReLU(⟨mean_v g_v, e_v⟩)``.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> m = gradcam(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b")[0]
    >>> tuple(m.shape), bool((m >= 0).all())
    ((2, 2), True)
    """
    ex = prepare(smodel, image, question, response)
    e = visual_embeddings(smodel, ex).detach().requires_grad_(True)  # (V, D)
    with torch.enable_grad():
        f = loglik_from_embeds(smodel, ex, e[None], target).sum()
        (g,) = torch.autograd.grad(f, e)  # (V, D)
    alpha = g.float().mean(0)  # (D,)
    return ex.to_grids((e.detach().float() @ alpha).clamp_min(0))


def input_x_gradient(smodel, image, question: str, response, *, target: str = "answer") -> list[torch.Tensor]:
    """Gradient × input with ``captum.attr.InputXGradient``, summed over the feature dim, ReLU.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> tuple(input_x_gradient(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b")[0].shape)
    (2, 2)
    """
    from captum.attr import InputXGradient

    ex = prepare(smodel, image, question, response)
    e = visual_embeddings(smodel, ex)[None].requires_grad_(True)  # (1, V, D)
    with torch.enable_grad():
        attr = InputXGradient(_forward_func(smodel, ex, target)).attribute(e)  # (1, V, D)
    return ex.to_grids(attr[0].float().sum(-1).clamp_min(0))


def integrated_gradients(smodel, image, question: str, response, *, target: str = "answer", n_steps: int = 16,
                         method: str = "gausslegendre", internal_batch_size: int | None = 4
                         ) -> list[torch.Tensor]:
    """Integrated gradients from the zero embedding with ``captum.attr.IntegratedGradients``; ReLU of the
    per-token sum.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> tuple(integrated_gradients(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b", n_steps=2)[0].shape)
    (2, 2)
    """
    from captum.attr import IntegratedGradients

    ex = prepare(smodel, image, question, response)
    e = visual_embeddings(smodel, ex)[None]  # (1, V, D)
    with torch.enable_grad():
        attr = IntegratedGradients(_forward_func(smodel, ex, target)).attribute(
            e, baselines=torch.zeros_like(e), n_steps=n_steps, method=method,
            internal_batch_size=internal_batch_size)  # (1, V, D)
    return ex.to_grids(attr[0].float().sum(-1).clamp_min(0))


__all__ = ["cam", "gradcam", "input_x_gradient", "integrated_gradients"]
