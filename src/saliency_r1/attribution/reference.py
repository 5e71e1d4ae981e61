"""The naive reference: eager attention with ``output_attentions=True`` (every layer's full T × T
attention kept in memory, as the paper authors' patched code does), values from v_proj hooks.

Slow and memory-hungry by design; it exists as the oracle of the tests and the baseline of
``benchmarks/saliency_overhead.py``. Written independently of :mod:`.decompose` (explicit loops
over layers, heads and thinking tokens).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.spec import ModelSpec, unwrap
from .decompose import TracePlan


def naive_trace(model: nn.Module, spec: ModelSpec, inputs: dict, plan: TracePlan, b: int = 0
                ) -> dict[str, torch.Tensor]:
    """c ``(R, V)``, holistic ``(A, V)`` (pre-ReLU) and attn ``(A, V)`` of example ``b``.

    The model must be loaded with ``attn_implementation="eager"``.
    """
    hf = unwrap(model)
    L = spec.n_layers(hf)
    values, handles = {}, []
    for i in range(L):
        mod = spec.get(hf, spec.v_proj, i)
        handles.append(mod.register_forward_hook(lambda m, a, o, i=i: values.__setitem__(i, o.detach())))
    norm = spec.get(hf, spec.final_norm)
    got = []
    handles.append(norm.register_forward_pre_hook(lambda m, a: got.append(a[0].detach())))
    try:
        with torch.no_grad():
            out = model(**inputs, use_cache=False, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    attns = out.attentions  # L x (B, H, T, T)
    if not attns or attns[0] is None:
        raise RuntimeError("the model returned no attentions: load it with attn_implementation='eager'")
    n = int(plan.row_mask[b].sum())
    v_n = int(plan.visual_mask[b].sum())
    rows, vis = plan.rows[b, :n], plan.visual[b, :v_n]
    u = spec.get(hf, spec.lm_head).weight[plan.targets[b, :n]].float() * spec.get(hf, spec.final_norm).weight.float()
    h = got[-1][b, rows].float()
    sigma = torch.sqrt(h.pow(2).mean(-1) + norm.variance_epsilon)  # (R,)
    H = attns[0].shape[1]
    c = torch.zeros(n, v_n)
    a_n = int(plan.answer_mask[b].sum())
    j_n = int(plan.think_mask[b].sum())
    hol, attn = torch.zeros(a_n, v_n), torch.zeros(a_n, v_n)
    ans = plan.answer_rows[b, :a_n]
    tq, tk = plan.think_q[b, :j_n], plan.think_k[b, :j_n]
    for layer in range(L):
        W = spec.get(hf, spec.o_proj, layer).weight.float()  # (D, H*E)
        E = W.shape[1] // H
        K = values[layer].shape[-1] // E
        v = values[layer][b].float().view(-1, K, E)  # (T, K, E)
        for head in range(H):
            o = v[:, head // (H // K)] @ W[:, head * E:(head + 1) * E].T  # (T, D): o_p^{l,h}
            s = u @ o[vis].T  # (R, V): <o_p, u_i>
            a = attns[layer][b, head].float()  # (T, T)
            c += a[rows][:, vis] * s
            if a_n and j_n:
                a_hat = a[rows[ans]][:, tk] @ a[tq][:, vis]  # (A, V)
                hol += a_hat * s[ans]
                attn += a_hat
    c = c / sigma[:, None]
    hol = hol / sigma[ans][:, None] if a_n else hol
    return {"contributions": c, "holistic": hol, "attn": attn, "sigma": sigma}


__all__ = ["naive_trace"]
