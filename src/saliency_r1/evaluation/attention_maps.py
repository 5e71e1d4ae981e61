"""Attention baselines: raw attention and attention rollout (Abnar & Zuidema 2020).

Both read the decoder's post-RoPE ``q``/``k`` through :func:`~saliency_r1.capture.attention.capture_attention`
(works under sdpa; no ``output_attentions``) and recompute softmax rows in float32 for the rows
they need, under the causal mask, like :mod:`saliency_r1.attribution.decompose` (batch of one, no
padding, no sliding window).

Raw attention, over the target rows ``R`` (see :meth:`~saliency_r1.evaluation.common.Example.rows`)
and visual keys ``V``::

    map[v] = mean_{l, h, r ∈ R} a^{l,h}_{r, v}

Rollout: per layer ``Ā^l = ½ mean_h A^{l,h} + ½ I`` (rows stay stochastic), ``R = Ā^L … Ā^1``,
``map[v] = mean_{r ∈ R} R[r, v]``. Only the visual columns are kept: ``S^l = Ā^l S^{l-1}`` with
``S^0 = I[:, V]`` is ``T × V``; ``Ā^l`` is formed ``chunk`` rows at a time (transient
``H · chunk · T`` floats) and only rows ``≤ max(R)`` are needed (causality); the last layer only
forms the target rows. Memory: ``2 · T · V`` floats of state plus the transient, instead of the
``T × T`` per layer of the textbook product (``L · T²`` when every layer's attention is kept, as
``output_attentions`` does). Compute: ``O(L · T² · (H · d_h + V))`` — the expensive baseline.
"""

from __future__ import annotations

import torch

from ..attribution.batch import to_device
from ..attribution.decompose import softmax_rows
from ..capture.attention import capture_attention
from .common import Example, prepare


def _softmax_rows(module, query: torch.Tensor, key: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Softmax rows ``(H, R, T)`` float32 of the queries at ``rows`` over all keys (causal), batch of one
    (:func:`saliency_r1.attribution.decompose.softmax_rows`)."""
    H, T = query.shape[1], key.shape[2]
    rows = rows.to(query.device)
    allowed = torch.arange(T, device=query.device)[None, :] <= rows[:, None]  # (R, T)
    probs = softmax_rows(query, key, rows[None], allowed[None, None, None], module.scaling)  # (1, K, G, R, T)
    return probs[0].reshape(H, len(rows), T)  # (H, R, T)


def _forward(smodel, ex: Example, callback) -> None:
    """One teacher-forced forward with ``callback`` on every decoder layer's attention inputs."""
    with torch.no_grad(), capture_attention(smodel.model, smodel.spec, callback):
        smodel.model(**to_device(ex.inputs, smodel.device), use_cache=False, logits_to_keep=1)


def raw_attention(smodel, image, question: str, response, *, target: str = "answer") -> list[torch.Tensor]:
    """Mean attention of the target rows on each visual token, over layers and heads.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> [tuple(m.shape) for m in raw_attention(sm, Image.new("RGB", (56, 84)), "Q?", "<think>a</think>b")]
    [(3, 2)]
    """
    ex = prepare(smodel, image, question, response)
    rows, _ = ex.rows(target)
    vis = ex.visual.to(smodel.device)
    acc: list[torch.Tensor] = []

    def cb(layer, module, query, key, value):
        a = _softmax_rows(module, query, key, rows)  # (H, R, T)
        acc.append(a[:, :, vis].mean((0, 1)))  # (V,)

    _forward(smodel, ex, cb)
    return ex.to_grids(torch.stack(acc).mean(0))


class _Rollout:
    """Per-layer callback keeping ``S^l = Ā^l S^{l-1}`` restricted to the visual columns."""

    def __init__(self, ex: Example, rows: torch.Tensor, n_layers: int, chunk: int, device):
        self.rows, self.n_layers, self.chunk = rows.to(device), n_layers, chunk
        self.n = int(rows.max()) + 1  # rows after the last target row never matter (causal)
        vis = ex.visual.to(device)
        self.state = torch.zeros(self.n, len(vis), device=device)  # (n, V): S^0 = I[:, V]
        keep = vis < self.n
        self.state[vis[keep], torch.arange(len(vis), device=device)[keep]] = 1.0
        self.final: torch.Tensor | None = None

    def __call__(self, layer, module, query, key, value) -> None:
        last = layer == self.n_layers - 1
        rows_all = self.rows if last else torch.arange(self.n, device=self.rows.device)
        new = torch.empty(len(rows_all), self.state.shape[1], device=self.state.device)  # (rows, V)
        for s in range(0, len(rows_all), self.chunk):
            r = rows_all[s:s + self.chunk]
            a = _softmax_rows(module, query, key[:, :, :self.n], r).mean(0)  # (c, n): head mean
            a = 0.5 * a
            a[torch.arange(len(r)), r] += 0.5  # ½ A + ½ I
            new[s:s + len(r)] = a @ self.state  # (c, V)
        if last:
            self.final = new
        else:
            self.state = new


def rollout(smodel, image, question: str, response, *, target: str = "answer", chunk: int = 256
            ) -> list[torch.Tensor]:
    """Attention rollout restricted to the visual columns; see the module docstring.

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> m = rollout(sm, Image.new("RGB", (56, 56)), "Q?", "<think>a</think>b")[0]
    >>> tuple(m.shape), bool((m >= 0).all())
    ((2, 2), True)
    """
    ex = prepare(smodel, image, question, response)
    rows, _ = ex.rows(target)
    roll = _Rollout(ex, rows, smodel.spec.n_layers(smodel.hf), chunk, smodel.device)
    _forward(smodel, ex, roll)
    return ex.to_grids(roll.final.mean(0))  # (V,)


__all__ = ["raw_attention", "rollout"]
