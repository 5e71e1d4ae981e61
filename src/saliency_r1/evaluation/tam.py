"""TAM, the Token Activation Map (Li et al., ICCV 2025), reimplemented from the paper's description.

Logit lens of the last layer: ``z_p[c] = ⟨x_p, E[:, c]⟩`` with ``x_p`` the final-norm output at
position ``p`` (no vocabulary-wide logits: only the LM-head rows of the classes used).

For each target token ``t`` (class ``y_t``):

1. activation map ``M_t[v] = ReLU(z_v[y_t])`` over the visual positions ``v``;
2. estimated causal inference (ECI): the context tokens ``j`` before ``t`` — the question's text
   tokens and the earlier response tokens, minus those with ``t``'s own id — each have their own map
   ``M_j[v] = ReLU(z_v[tok_j])`` and a weight ``w_j = ReLU(z_j[y_t])`` (how much ``t``'s class is
   already active at ``j``), normalised to sum 1. Interference ``I_t = Σ_j w_j M_j``; the least-squares
   scale ``α_t = ⟨M_t, I_t⟩ / ⟨I_t, I_t⟩`` (the closed form of TAM's scalar minimisation);
   ``M_t ← ReLU(M_t − α_t I_t)``;
3. ``M_t`` and the context scores ``w`` (before normalisation) are min-max normalised together, as
   TAM does before visualising;
4. rank Gaussian filter on the ``(h, w)`` grid (:func:`rank_gaussian_filter`, 3 × 3).

The map of a response is the mean of its target tokens' maps.

Simplifications (documented in docs/baselines.md): the context is the question text (TAM: the
prompt's text span) and earlier response tokens; the first prompt token's greedy-class map that TAM
keeps for visualising activation degrees is not used; maps of several images are filtered per image
after one joint normalisation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..attribution.batch import to_device
from .common import Example, prepare


def rank_gaussian_filter(grid: np.ndarray, kernel_size: int = 3) -> np.ndarray:
    """TAM's rank Gaussian filter: per window, sort the values; Gaussian weights over the rank offset
    from the middle with ``σ`` = the window's coefficient of variation (std / mean); 0 where the
    window's mean is not positive; the plain mean where ``σ`` is 0. Reflect padding (edge for a
    single row or column).

    >>> rank_gaussian_filter(np.ones((2, 3))).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    g = np.asarray(grid, dtype=np.float64)
    p = kernel_size // 2
    mode = "reflect" if min(g.shape) > p else "edge"
    padded = np.pad(g, p, mode=mode)
    win = np.lib.stride_tricks.sliding_window_view(padded, (kernel_size, kernel_size))  # (h, w, k, k)
    win = np.sort(win.reshape(*g.shape, -1), axis=-1)  # (h, w, k²)
    mean, std = win.mean(-1), win.std(-1)
    sigma = np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), 0.0)  # (h, w)
    ax = np.arange(kernel_size ** 2) - kernel_size ** 2 // 2  # rank offsets
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.exp(-(ax ** 2)[None, None, :] / (2 * sigma[..., None] ** 2))  # (h, w, k²)
    k = np.where(sigma[..., None] > 0, k, 1.0)
    k = k / k.sum(-1, keepdims=True)
    return np.where(mean > 0, (win * k).sum(-1), 0.0)


def _context_positions(smodel, ex: Example) -> torch.Tensor:
    """Absolute positions of the question's text tokens: after the last visual token, before the
    response, not special tokens."""
    ids = ex.inputs["input_ids"][0]
    special = torch.tensor(sorted(smodel.processor.tokenizer.all_special_ids))
    pos = torch.arange(int(ex.visual.max()) + 1, ex.response_start)
    return pos[~torch.isin(ids[pos], special)]


def _eci(maps: torch.Tensor, ctx_maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``ReLU(M − α I)`` per row; ``maps (R, V)``, ``ctx_maps (C, V)``, ``weights (R, C)`` (masked)."""
    w = weights / (weights.sum(-1, keepdim=True) + 1e-8)
    interf = w @ ctx_maps  # (R, V)
    alpha = (maps * interf).sum(-1) / (interf * interf).sum(-1).clamp_min(1e-12)  # (R,)
    return (maps - alpha[:, None] * interf).clamp_min(0)


def tam(smodel, image, question: str, response, *, target: str = "answer", kernel_size: int = 3
        ) -> list[torch.Tensor]:
    """Token Activation Map of the target tokens (mean over them); see the module docstring.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> m = tam(sm, Image.new("RGB", (56, 56)), "What colour?", "<think>a</think>b")[0]
    >>> tuple(m.shape), bool((m >= 0).all())
    ((2, 2), True)
    """
    ex = prepare(smodel, image, question, response)
    rows, targets = ex.rows(target)
    ids = ex.inputs["input_ids"][0]
    q_pos = _context_positions(smodel, ex)
    r_pos = torch.arange(ex.response_start, ex.length)  # response positions
    ctx = torch.cat([q_pos, r_pos])  # (C,) context positions
    dev = smodel.device
    with torch.no_grad():
        hidden = smodel.hf.model(**to_device(ex.inputs, dev), use_cache=False).last_hidden_state[0].float()
        E = smodel.hf.lm_head.weight
        x_v = hidden[ex.visual.to(dev)]  # (V, D)
        maps = (x_v @ E[targets.to(dev)].float().T).T.clamp_min(0).cpu()  # (R, V)
        ctx_maps = (x_v @ E[ids[ctx].to(dev)].float().T).T.clamp_min(0).cpu()  # (C, V)
        w = (hidden[ctx.to(dev)] @ E[targets.to(dev)].float().T).T.clamp_min(0).cpu()  # (R, C)
    t_pos = rows + 1  # absolute positions of the target tokens
    before = (ctx[None, :] < t_pos[:, None])  # (R, C): context strictly before the token
    w = w * before * (ids[ctx][None, :] != targets[:, None])  # drop the token's own repeats
    maps = _eci(maps, ctx_maps, w) if bool(w.any()) else maps
    out = []
    for r in range(len(rows)):
        txt = w[r][before[r]]
        allv = torch.cat([maps[r], txt])
        lo, hi = allv.min(), allv.max()
        m = (maps[r] - lo) / (hi - lo) if hi > lo else torch.zeros_like(maps[r])
        grids = ex.to_grids(m)
        out.append([torch.from_numpy(rank_gaussian_filter(g.numpy(), kernel_size)).float() for g in grids])
    return [torch.stack([o[i] for o in out]).mean(0) for i in range(len(ex.grids))]


__all__ = ["tam", "rank_gaussian_filter"]
