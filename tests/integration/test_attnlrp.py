"""AttnLRP: conservation (relevance sums to the explained logit up to the documented bias terms), the rules'
context manager leaves the model untouched, and the method runs in the faithfulness evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_image
from test_evaluation import planted, shapes_dir  # noqa: F401  (fixtures)
from saliency_r1.evaluation import METHODS, prepare
from saliency_r1.evaluation.attnlrp import attnlrp_relevance, attnlrp_rules
from saliency_r1.evaluation.common import on_device

Q, RESP = "What colour is the circle?", "<think>I see a red circle</think>red"


@pytest.fixture(scope="module")
def tiny64(tiny_dir):
    """The tiny model in float64 with non-zero q/k/v biases and a larger LM head (a non-trivial logit)."""
    from saliency_r1 import load_model

    sm = load_model(tiny_dir, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sm.hf.model.language_model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        sm.hf.lm_head.weight.mul_(20)
    return sm


def _zero_biases(sm) -> None:
    with torch.no_grad():
        for name, p in sm.hf.model.language_model.named_parameters():
            if name.endswith("bias"):
                p.zero_()


@pytest.mark.parametrize("target", ["answer", "response"])
def test_relevance_is_conserved_up_to_the_bias_and_softmax_terms(tiny64, target):
    ex = prepare(tiny64, make_image(168, 112), Q, RESP)
    rel = attnlrp_relevance(tiny64, ex, target, audit=True)
    assert rel.tokens.shape == (ex.length,) and torch.isfinite(rel.tokens).all()
    # every term is real: the biases and the softmax's Taylor bias absorb relevance ...
    assert abs(rel.bias) > 1e-3 and abs(rel.softmax) > 1e-3
    # ... and with them the books balance (float64: ~1e-10; the identity rule's 1e-10 epsilon)
    assert abs(rel.residual) < 1e-6 * abs(rel.explained)
    assert abs(float(rel.tokens.sum()) - rel.explained) > 1e-3  # the terms are not negligible here
    # the audit only adds bookkeeping: the same relevances from the stock attention kernel
    plain = attnlrp_relevance(tiny64, ex, target)
    assert plain.softmax is None and plain.bias == pytest.approx(rel.bias, rel=1e-9)
    assert torch.allclose(plain.tokens, rel.tokens, rtol=1e-9, atol=1e-12)
    assert plain.explained == pytest.approx(rel.explained, rel=1e-12)


def test_conservation_without_biases_leaves_only_the_softmax_term(tiny_dir):
    from saliency_r1 import load_model

    sm = load_model(tiny_dir, dtype=torch.float64)
    _zero_biases(sm)
    ex = prepare(sm, make_image(168, 112), Q, RESP)
    rel = attnlrp_relevance(sm, ex, audit=True)
    assert rel.bias == 0.0
    total = float(rel.tokens.sum()) + rel.softmax
    assert total == pytest.approx(rel.explained, rel=1e-6)


def test_float32_conservation_on_the_stock_model(tiny):
    ex = prepare(tiny, make_image(168, 112), Q, RESP)
    rel = attnlrp_relevance(tiny, ex, audit=True)
    assert abs(rel.residual) < 1e-3 * abs(rel.explained)


def _no_hooks(module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_rules_leave_logits_and_parameters_unchanged(tiny):
    hf = tiny.hf
    inputs = on_device(prepare(tiny, make_image(168, 112), Q, RESP).inputs, tiny.device)
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    impl = hf.config.text_config._attn_implementation
    with torch.no_grad():
        ref = hf(**inputs).logits
        with attnlrp_rules(hf, tiny.spec) as ledger:
            inside = hf(**inputs).logits
        with attnlrp_rules(hf, tiny.spec, audit=True):
            audited = hf(**inputs).logits
    assert torch.equal(inside, ref)  # bit-identical forward
    assert torch.allclose(audited, ref, atol=1e-5)  # explicit eager attention: rounding only
    assert ledger.bias == 0.0 and ledger.softmax is None  # no backward, nothing recorded
    METHODS["attnlrp"](tiny, make_image(168, 112), Q, RESP)
    assert _no_hooks(hf) and hf.config.text_config._attn_implementation == impl
    assert all(torch.equal(before[k], v) for k, v in hf.state_dict().items())
    assert all(p.grad is None for p in hf.parameters())
    with torch.no_grad():
        assert torch.equal(hf(**inputs).logits, ref)


def test_rules_are_removed_when_the_block_raises(tiny):
    hf = tiny.hf
    impl = hf.config.text_config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with attnlrp_rules(hf, tiny.spec, audit=True):
            raise RuntimeError("boom")
    assert _no_hooks(hf) and hf.config.text_config._attn_implementation == impl


def test_map_is_the_relu_of_the_visual_relevance_on_the_merged_grid(tiny):
    image = make_image(168, 112)
    ex = prepare(tiny, image, Q, RESP)
    (m,) = METHODS["attnlrp"](tiny, image, Q, RESP)
    rel = attnlrp_relevance(tiny, ex)
    assert tuple(m.shape) == ex.grids[0] == (4, 6)
    expect = rel.tokens[ex.visual].float().clamp_min(0).reshape(4, 6)  # row-major over the merged grid
    assert torch.allclose(m, expect) and m.sum() > 0


def test_planted_patch_is_found_by_attnlrp(planted):
    sm, image, red = planted
    m = METHODS["attnlrp"](sm, image, Q, RESP)[0]
    assert int(m.flatten().argmax()) == red


def test_attnlrp_runs_in_the_faithfulness_command(tiny_dir, shapes_dir, tmp_path):
    from saliency_r1.cli.main import main

    out = tmp_path / "faith"
    assert main(["eval", "faithfulness", "--model", str(tiny_dir), "--data", str(shapes_dir), "--n", "2",
                 "--methods", "attnlrp,random", "--response", "reference", "--levels", "15", "--steps", "2",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["rows"]) == {"attnlrp", "random"} and "del@15" in res["rows"]["attnlrp"]
    assert "attnlrp" in (out / "results.md").read_text()


def test_unsupported_decoder_is_a_one_line_error_and_leaves_no_hooks(tiny_dir):
    from saliency_r1 import load_model
    from saliency_r1.errors import InputError

    sm = load_model(tiny_dir)
    del sm.hf.model.language_model.layers[0].mlp.up_proj  # no longer a gated MLP
    with pytest.raises(InputError, match="gated MLPs"):
        with attnlrp_rules(sm.hf, sm.spec):
            pass
    assert _no_hooks(sm.hf)
