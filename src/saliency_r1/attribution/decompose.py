"""Streaming logit decomposition (method.md §1) and thinking-bottleneck rollout (method.md §2).

For the token ``y`` predicted at row ``i`` and context token ``p``:

    c_{i,p} = Σ_l Σ_h a_{i,p}^{l,h} ⟨γ ⊙ o_p^{l,h}, E_y⟩ / σ_i ,   o_p^{l,h} = W_O^{l}[:, h] v_p^{l,g(h)}

Computed per layer, inside the attention call, from the layer's own post-RoPE q/k and v:

* ``u_i = γ ⊙ E[:, y_i]`` — only the lm_head rows of the target tokens, never the vocabulary;
* ``w_i^h = W_O^{h⊤} u_i`` (``E``-dim per head), then ``s_{i,p}^h = ⟨v_p^{g(h)}, w_i^h⟩`` for p ∈ V;
* ``a_{i,p}^{l,h}`` is recomputed for the traced rows only (softmax of ``q_i K^⊤ · scaling`` under the
  causal and padding mask), in float32, whatever attention kernel the forward itself uses.

Per layer the transient is O(H · rows · T) for the softmax rows and O(H · rows · (V + J)) kept; the
accumulators are ``(B, R, V)`` and ``(B, A, V)``. No layer's full T × T attention is ever kept.

Exact: with all positions as columns, embedding + FFN + bias terms + Σ_p c_{i,p} rebuild the logit
(``tests/integration/test_tracer.py::test_exactness_identity``). Frozen, as in the paper: σ_i is read from the real final hidden state, the
final RMSNorm's γ is folded into ``u``. The rollout (§2) composes, per (l, h), the thinking tokens'
rows over V with the answer rows over the thinking tokens: Â = a[A, J] @ a[J, V].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..capture.attention import capture_attention, capture_norm_input
from ..models.spec import ModelSpec, unwrap


@dataclass
class TracePlan:
    """Padded index tensors of one batch. Positions are absolute in the padded sequence.

    ``rows`` are the predicting positions of the response tokens (token at t is predicted at t − 1),
    ``targets`` the token ids there; ``visual`` the columns kept (the image-pad positions, or every
    position for the exactness check); ``think_q`` / ``think_k`` the first-hop queries and second-hop
    keys of the bottleneck; ``answer_rows`` index *into* ``rows`` (the rows predicting answer tokens).
    """

    rows: torch.Tensor            # (B, R)
    row_mask: torch.Tensor        # (B, R)
    targets: torch.Tensor         # (B, R)
    visual: torch.Tensor          # (B, V)
    visual_mask: torch.Tensor     # (B, V)
    think_q: torch.Tensor         # (B, J)
    think_k: torch.Tensor         # (B, J)
    think_mask: torch.Tensor      # (B, J)
    answer_rows: torch.Tensor     # (B, A)
    answer_mask: torch.Tensor     # (B, A)
    key_mask: torch.Tensor        # (B, T)

    @property
    def rollout(self) -> bool:
        return bool(self.think_mask.any()) and bool(self.answer_mask.any())

    def to(self, device) -> "TracePlan":
        return TracePlan(**{k: v.to(device) for k, v in self.__dict__.items()})


@dataclass
class TraceOutput:
    """Raw results of one traced batch (padded; masks in the plan say what is real).

    ``contributions`` ``(B, R, V)``: c of §1 (divided by σ). ``holistic`` ``(B, A, V)``: the per
    answer-token §2 contributions, before ReLU. ``attn`` ``(B, A, V)``: Σ_{l,h} Â (the `attn` variant).
    ``target_logits`` ``(B, R)``: z_{i, y_i} rebuilt from the captured final hidden state.
    ``think_attn`` ``(B, J, V)``: Σ_{l,h} a[J, V], the thinking tokens' first-hop attention on the visual
    tokens alone; ``value_logit`` ``(B, A, V)``: Σ_{l,h} ⟨v_p, W_O^{h⊤} u_i⟩ / σ_i, the holistic map's value ×
    logit factor alone (attention replaced by ones); ``holistic_layers`` ``(L, B, A, V)``: ``holistic`` split by
    decoder layer (it is their sum). All three for the precondition diagnostic
    (:mod:`saliency_r1.evaluation.precondition`); None without the rollout.
    """

    contributions: torch.Tensor
    holistic: torch.Tensor | None
    attn: torch.Tensor | None
    sigma: torch.Tensor
    target_logits: torch.Tensor
    think_attn: torch.Tensor | None = None
    value_logit: torch.Tensor | None = None
    holistic_layers: torch.Tensor | None = None


def _gather_last(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[..., q, idx[b, j]]`` for x ``(B, K, G, Q, T)`` and idx ``(B, J)`` -> ``(B, K, G, Q, J)``."""
    B, K, G, Q, _ = x.shape
    return x.gather(-1, idx[:, None, None, None, :].expand(B, K, G, Q, idx.shape[1]))


def _gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[..., idx[b, a], :]`` for x ``(B, K, G, Q, C)`` and idx ``(B, A)`` -> ``(B, K, G, A, C)``."""
    B, K, G, _, C = x.shape
    return x.gather(3, idx[:, None, None, :, None].expand(B, K, G, idx.shape[1], C))


def softmax_rows(query: torch.Tensor, key: torch.Tensor, qpos: torch.Tensor, allowed: torch.Tensor,
                 scaling: float) -> torch.Tensor:
    """Attention rows ``softmax(q_i K^T · scaling)`` of the queries at ``qpos`` only, float32, recomputed from
    a layer's post-RoPE ``query (B, H, T, E)`` and ``key (B, K, T', E)`` (GQA: ``K`` kv heads, ``G = H / K``).

    ``qpos (B, Q)`` query positions; ``allowed (B, 1, 1, Q, T')`` the keys each query may see (causal and
    padding). Returns ``(B, K, G, Q, T')``; a row that sees no key is NaN.

    >>> q = torch.zeros(1, 2, 3, 4); k = torch.zeros(1, 1, 3, 4)
    >>> allowed = (torch.arange(3)[None, :] <= torch.tensor([1, 2])[:, None])[None, None, None]
    >>> softmax_rows(q, k, torch.tensor([[1, 2]]), allowed, 0.5)[0, 0, 0]
    tensor([[0.5000, 0.5000, 0.0000],
            [0.3333, 0.3333, 0.3333]])
    """
    B, H, T, E = query.shape
    K, Q = key.shape[1], qpos.shape[1]
    q = query.gather(2, qpos[:, None, :, None].expand(B, H, Q, E)).float()  # (B, H, Q, E)
    q = q.view(B, K, H // K, Q, E)  # (B, K, G, Q, E)
    scores = torch.einsum("bkgqe,bkte->bkgqt", q, key.float()) * scaling  # (B, K, G, Q, T')
    return scores.masked_fill_(~allowed, float("-inf")).softmax(-1)


class LogitDecomposer:
    """Per-layer callback that accumulates §1 contributions and the §2 rollout, layer by layer."""

    def __init__(self, model: nn.Module, spec: ModelSpec, plan: TracePlan, rollout: bool = True):
        self.spec, self.plan = spec, plan
        hf = unwrap(model)
        self.hf = hf
        norm = spec.get(hf, spec.final_norm)
        lm_head = spec.get(hf, spec.lm_head)
        gamma = norm.weight.detach().float()
        self.u = lm_head.weight.detach()[plan.targets].float() * gamma  # (B, R, D)
        self.do_rollout = rollout and plan.rollout
        B, R = plan.rows.shape
        V, A = plan.visual.shape[1], plan.answer_rows.shape[1]
        dev = self.u.device
        self.contrib = torch.zeros(B, R, V, device=dev)
        self.hol = torch.zeros(B, A, V, device=dev) if self.do_rollout else None
        self.attn = torch.zeros(B, A, V, device=dev) if self.do_rollout else None
        J = plan.think_q.shape[1]
        self.think_attn = torch.zeros(B, J, V, device=dev) if self.do_rollout else None
        self.value_logit = torch.zeros(B, A, V, device=dev) if self.do_rollout else None
        self.hol_layers: list[torch.Tensor] = []  # per layer (B, A, V), in call order
        self.layers_seen: set[int] = set()
        self.qpos, self.allowed, self.empty_rows = self._queries()

    def _queries(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Traced query positions ``(B, Q)``, their causal + padding key mask ``(B, 1, 1, Q, T)``, and
        whether some row sees no key at all (padding rows), once per plan."""
        plan = self.plan
        qpos = torch.cat([plan.rows, plan.think_q], 1) if self.do_rollout else plan.rows  # (B, Q)
        keys = torch.arange(plan.key_mask.shape[1], device=qpos.device)
        allowed = (keys[None, None, :] <= qpos[:, :, None]) & plan.key_mask[:, None, :].bool()  # (B, Q, T)
        return qpos, allowed[:, None, None], not bool(allowed.any(-1).all())

    def _probs(self, module, query, key) -> torch.Tensor:
        """Softmax rows of the traced queries over all keys, float32: ``(B, K, G, Q, T)``."""
        probs = softmax_rows(query, key, self.qpos, self.allowed, module.scaling)
        return torch.nan_to_num(probs, nan=0.0) if self.empty_rows else probs

    @torch.no_grad()
    def __call__(self, layer: int, module: nn.Module, query, key, value) -> None:
        plan = self.plan
        B, H, T, E = query.shape
        K, G, R = key.shape[1], H // key.shape[1], plan.rows.shape[1]
        V = plan.visual.shape[1]
        probs = self._probs(module, query, key)  # (B, K, G, Q, T)
        o_proj = self.spec.get(self.hf, self.spec.o_proj, layer)
        W = o_proj.weight.detach().float().view(-1, H, E)  # (D, H, E)
        w = torch.einsum("brd,dhe->bhre", self.u, W).reshape(B, K, G, R, E)  # (B, K, G, R, E)
        v_vis = value.gather(2, plan.visual[:, None, :, None].expand(B, K, V, E)).float()  # (B, K, V, E)
        s = torch.einsum("bkgre,bkve->bkgrv", w, v_vis)  # (B, K, G, R, V)
        a_rv = _gather_last(probs[:, :, :, :R], plan.visual)  # (B, K, G, R, V)
        self.contrib += (a_rv * s).sum((1, 2))  # (B, R, V)
        if self.do_rollout:
            a_jv = _gather_last(probs[:, :, :, R:], plan.visual)  # (B, K, G, J, V)
            a_aj = _gather_last(_gather_rows(probs[:, :, :, :R], plan.answer_rows), plan.think_k)  # (B, K, G, A, J)
            a_aj = a_aj * plan.think_mask[:, None, None, None, :]
            a_hat = a_aj @ a_jv  # (B, K, G, A, V)
            s_a = _gather_rows(s, plan.answer_rows)  # (B, K, G, A, V)
            self.hol_layers.append((a_hat * s_a).sum((1, 2)))  # (B, A, V)
            self.hol += self.hol_layers[-1]
            self.attn += a_hat.sum((1, 2))  # (B, A, V)
            self.think_attn += a_jv.sum((1, 2))  # (B, J, V)
            self.value_logit += s_a.sum((1, 2))  # (B, A, V)
        self.layers_seen.add(layer)

    def finish(self, final_hidden: torch.Tensor) -> TraceOutput:
        """Divide by σ_i (from the real final hidden state ``(B, T, D)``) and mask the padding."""
        plan = self.plan
        norm = self.spec.get(self.hf, self.spec.final_norm)
        eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
        D = final_hidden.shape[-1]
        h_rows = final_hidden.gather(1, plan.rows[:, :, None].expand(-1, -1, D)).float()  # (B, R, D)
        sigma = torch.sqrt(h_rows.pow(2).mean(-1) + eps)  # (B, R)
        contrib = self.contrib / sigma[:, :, None]
        contrib = contrib * plan.row_mask[:, :, None] * plan.visual_mask[:, None, :]
        z = (h_rows * self.u).sum(-1) / sigma  # (B, R)
        hol = attn = think_attn = value_logit = hol_layers = None
        if self.do_rollout:
            sig_a = sigma.gather(1, plan.answer_rows)  # (B, A)
            m = plan.answer_mask[:, :, None] * plan.visual_mask[:, None, :]
            hol = self.hol / sig_a[:, :, None] * m
            attn = self.attn * m
            think_attn = self.think_attn * plan.think_mask[:, :, None] * plan.visual_mask[:, None, :]
            value_logit = self.value_logit / sig_a[:, :, None] * m
            hol_layers = torch.stack(self.hol_layers) / sig_a[None, :, :, None] * m  # (L, B, A, V)
        return TraceOutput(contrib, hol, attn, sigma, z, think_attn, value_logit, hol_layers)


def trace(model: nn.Module, spec: ModelSpec, inputs: dict, plan: TracePlan, rollout: bool = True) -> TraceOutput:
    """One teacher-forced forward over ``inputs`` with the decomposer attached; returns raw sums.

    ``inputs`` are the model's keyword inputs (``input_ids``, ``attention_mask``, ``pixel_values``,
    ``image_grid_thw``, ``mm_token_type_ids``). Logits are not materialised (``logits_to_keep=1``).
    """
    dec = LogitDecomposer(model, spec, plan, rollout=rollout)
    with torch.no_grad(), capture_norm_input(model, spec) as hidden, capture_attention(model, spec, dec):
        model(**inputs, use_cache=False, logits_to_keep=1)
    n_layers = spec.n_layers(unwrap(model))
    if len(dec.layers_seen) != n_layers:
        from ..errors import CaptureError

        raise CaptureError(f"traced {len(dec.layers_seen)} of {n_layers} decoder layers; the spec's "
                           "attention paths do not match this model")
    return dec.finish(hidden[-1])


__all__ = ["TracePlan", "TraceOutput", "LogitDecomposer", "trace"]
