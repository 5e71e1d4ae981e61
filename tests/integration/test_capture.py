"""Hooks: removed after exceptions, loud when nothing was captured; the rollout on a hand-checkable case."""

from __future__ import annotations

import pytest
import torch

from saliency_r1.attribution.decompose import LogitDecomposer, TracePlan
from saliency_r1.capture.attention import capture_attention, capture_norm_input
from saliency_r1.errors import CaptureError


def _ids(sm):
    return torch.tensor([[5, 6, 7, 8]])


def test_hooks_removed_after_exception(tiny):
    cfg = tiny.hf.config.text_config
    before = cfg._attn_implementation
    norm = tiny.hf.model.language_model.norm

    def boom(*a):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with capture_norm_input(tiny.model, tiny.spec), capture_attention(tiny.model, tiny.spec, boom):
            tiny.model(input_ids=_ids(tiny))
    assert cfg._attn_implementation == before
    assert not norm._forward_pre_hooks
    with torch.no_grad():
        tiny.model(input_ids=_ids(tiny))  # plain forward still works


def test_capture_without_forward_raises(tiny):
    with pytest.raises(CaptureError, match="no decoder attention call"):
        with capture_attention(tiny.model, tiny.spec, lambda *a: None):
            pass
    with pytest.raises(CaptureError, match="final norm"):
        with capture_norm_input(tiny.model, tiny.spec):
            pass
    assert tiny.hf.config.text_config._attn_implementation == "sdpa"


def test_nested_capture_is_refused(tiny):
    with pytest.raises(CaptureError, match="already active"):
        with capture_attention(tiny.model, tiny.spec, lambda *a: None):
            with capture_attention(tiny.model, tiny.spec, lambda *a: None):
                pass
    assert tiny.hf.config.text_config._attn_implementation == "sdpa"


class _Stub(torch.nn.Module):
    """One attention module with W_O = identity blocks, for a hand-checkable rollout."""

    def __init__(self, D):
        super().__init__()
        self.scaling = 1.0
        self.o_proj = torch.nn.Linear(D, D, bias=False)
        with torch.no_grad():
            self.o_proj.weight.copy_(torch.eye(D))


def test_rollout_hand_checkable():
    """Zero queries give uniform causal attention a_{i,p} = 1/(i+1); value·u = 1 for every head.

    Sequence of 6 positions: visual V = {0, 1}, thinking J = {2, 3}, answer token at 5 (row 4).
    Â[p, k] = Σ_j a_{j,p} a_{4,j} = (1/3 + 1/4) · 1/5 for each p ∈ V, per head; 2 heads.
    """
    T, H, E = 6, 2, 2
    D = H * E

    class Spec:
        final_norm, lm_head, o_proj = "norm", "head", "att{i}"

        def get(self, model, path, i=None):
            return {"norm": norm, "head": head, "att{i}": att.o_proj}[path]

    att = _Stub(D)
    norm = torch.nn.Module()
    norm.weight = torch.nn.Parameter(torch.ones(D))
    norm.variance_epsilon = 0.0
    head = torch.nn.Module()
    head.weight = torch.nn.Parameter(torch.ones(3, D) / E)  # u = 1/E each: ⟨v, W_O^h⊤u⟩ = Σ_e v_e / E
    plan = TracePlan(rows=torch.tensor([[4]]), row_mask=torch.ones(1, 1), targets=torch.tensor([[0]]),
                     visual=torch.tensor([[0, 1]]), visual_mask=torch.ones(1, 2),
                     think_q=torch.tensor([[2, 3]]), think_k=torch.tensor([[2, 3]]), think_mask=torch.ones(1, 2),
                     answer_rows=torch.tensor([[0]]), answer_mask=torch.ones(1, 1), key_mask=torch.ones(1, T))
    dec = LogitDecomposer.__new__(LogitDecomposer)
    dec.spec, dec.plan, dec.hf = Spec(), plan, None
    dec.u = head.weight[plan.targets].float() * norm.weight
    dec.do_rollout = True
    dec.contrib = torch.zeros(1, 1, 2)
    dec.hol, dec.attn = torch.zeros(1, 1, 2), torch.zeros(1, 1, 2)
    dec.think_attn, dec.value_logit = torch.zeros(1, 2, 2), torch.zeros(1, 1, 2)
    dec.layers_seen, dec.hol_layers = set(), []
    dec.qpos, dec.allowed, dec.empty_rows = dec._queries()
    q = torch.zeros(1, H, T, E)
    k = torch.zeros(1, H, T, E)
    v = torch.ones(1, H, T, E)
    dec(0, att, q, k, v)
    assert len(dec.hol_layers) == 1 and torch.equal(dec.hol_layers[0], dec.hol)  # (e): per-layer terms sum to hol
    a_hat = (1 / 3 + 1 / 4) / 5
    assert torch.allclose(dec.attn[0, 0], torch.full((2,), H * a_hat))
    assert torch.allclose(dec.hol[0, 0], torch.full((2,), H * a_hat))  # s = 1 per head
    assert torch.allclose(dec.contrib[0, 0], torch.full((2,), H / 5))  # a_{4,p} = 1/5, s = 1
    assert torch.allclose(dec.think_attn[0], H * torch.tensor([[1 / 3] * 2, [1 / 4] * 2]))  # a_{j,p} = 1/(j+1)
    assert torch.allclose(dec.value_logit[0, 0], torch.full((2,), float(H)))  # the factor alone: s = 1 per head
    out = dec.finish(torch.ones(1, T, D))
    assert torch.allclose(out.sigma, torch.ones(1, 1))
