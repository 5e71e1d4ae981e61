"""The tracer against its maths: exactness identity, the naive oracle, kernels, batching, images, GQA."""

from __future__ import annotations

import pytest
import torch

from conftest import make_image
from saliency_r1 import load_model
from saliency_r1.attribution.decompose import trace
from saliency_r1.attribution.batch import teacher_forced
from saliency_r1.attribution.inputs import prompt_inputs, response_ids
from saliency_r1.attribution.maps import build_plan, holistic_maps
from saliency_r1.attribution.reference import naive_trace

RESPONSE = "<think>The circle is red and the square is blue.</think>red"


def _prepared(sm, images, question="What colour is the circle?", response=RESPONSE, columns="visual"):
    prompt = prompt_inputs(sm.processor, images, question)
    ids = response_ids(sm.processor, response, sm.processor.tokenizer.eos_token_id)
    inputs = teacher_forced(prompt, ids)
    rs = prompt["input_ids"].shape[1]
    spans = sm.spans(ids).shifted(rs)
    plan = build_plan(inputs["input_ids"], inputs["attention_mask"], [rs], [spans], sm.image_token_id,
                      columns=columns)
    return inputs, plan, spans, rs


def test_exactness_identity(tiny, image):
    """Embedding + FFN + bias terms + Σ_p c_{i,p} over ALL positions rebuild the target logit."""
    sm = tiny
    inputs, plan, _, _ = _prepared(sm, [image], columns="all")
    layers = sm.spec.get(sm.hf, sm.spec.layers)
    h0, ffn, hooks = [], [], []
    hooks.append(layers[0].register_forward_pre_hook(
        lambda m, a, kw: h0.append((a[0] if a else kw["hidden_states"]).detach()), with_kwargs=True))
    for layer in layers:
        hooks.append(layer.mlp.register_forward_hook(lambda m, a, o: ffn.append(o.detach())))
    try:
        out = trace(sm.model, sm.spec, inputs, plan, rollout=False)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        logits = sm.model(**inputs, use_cache=False).logits[0]
    rows, tgt = plan.rows[0], plan.targets[0]
    z_true = logits[rows, tgt]
    u = sm.hf.lm_head.weight[tgt].float() * sm.hf.model.language_model.norm.weight.float()
    resid = (h0[0][0, rows] + sum(f[0, rows] for f in ffn)).float()
    o_bias = sum((getattr(layer.self_attn.o_proj, "bias", None) is not None) for layer in layers)
    assert o_bias == 0  # Qwen's o_proj has no bias: the only bias terms are b_V, inside o_p
    rebuilt = (resid * u).sum(-1) / out.sigma[0] + out.contributions[0].sum(-1)
    rel = ((rebuilt - z_true).abs() / z_true.abs().clamp_min(1e-3)).max()
    assert rel <= 1e-4, f"relative error {rel:.2e}"
    assert torch.allclose(out.target_logits[0], z_true, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_images", [1, 2])
def test_matches_naive_eager_reference(tiny_dir, n_images):
    sdpa, eager = load_model(tiny_dir), load_model(tiny_dir, attn_implementation="eager")
    images = [make_image(seed=s, w=112 + 28 * s) for s in range(n_images)]
    inputs, plan, _, _ = _prepared(sdpa, images)
    ours = trace(sdpa.model, sdpa.spec, inputs, plan)
    ref = naive_trace(eager.model, eager.spec, inputs, plan)
    assert torch.allclose(ours.contributions[0], ref["contributions"], rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours.holistic[0], ref["holistic"], rtol=1e-4, atol=1e-7)
    assert torch.allclose(ours.attn[0], ref["attn"], rtol=1e-4, atol=1e-7)
    assert ours.contributions.abs().sum() > 0 and ours.holistic.abs().sum() > 0


def test_sdpa_equals_eager(tiny, tiny_eager, image):
    inputs, plan, _, _ = _prepared(tiny, [image])
    a = trace(tiny.model, tiny.spec, inputs, plan)
    b = trace(tiny_eager.model, tiny_eager.spec, inputs, plan)
    assert torch.allclose(a.contributions, b.contributions, rtol=1e-4, atol=1e-6)
    assert torch.allclose(a.holistic, b.holistic, rtol=1e-4, atol=1e-7)


def test_tracing_leaves_logits_unchanged(tiny, image):
    inputs, plan, _, _ = _prepared(tiny, [image])
    from saliency_r1.attribution.decompose import LogitDecomposer
    from saliency_r1.capture.attention import capture_attention

    with torch.no_grad():
        plain = tiny.model(**inputs, use_cache=False).logits
        with capture_attention(tiny.model, tiny.spec, LogitDecomposer(tiny.model, tiny.spec, plan)):
            traced = tiny.model(**inputs, use_cache=False).logits
        after = tiny.model(**inputs, use_cache=False).logits
    assert torch.equal(plain, traced) and torch.equal(plain, after)


def test_gqa_ratio_three(tiny_gqa3_dir):
    sdpa, eager = load_model(tiny_gqa3_dir), load_model(tiny_gqa3_dir, attn_implementation="eager")
    assert sdpa.hf.config.text_config.num_attention_heads // sdpa.hf.config.text_config.num_key_value_heads == 3
    inputs, plan, _, _ = _prepared(sdpa, [make_image(seed=3)])
    ours = trace(sdpa.model, sdpa.spec, inputs, plan)
    ref = naive_trace(eager.model, eager.spec, inputs, plan)
    assert torch.allclose(ours.contributions[0], ref["contributions"], rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours.holistic[0], ref["holistic"], rtol=1e-4, atol=1e-7)


def test_left_padded_batch_equals_one_by_one(tiny):
    """Prompts of different lengths (left-padded) and completions of different lengths (right-padded)."""
    sm = tiny
    cases = [(make_image(168, 140, 0), "What colour is the circle?", RESPONSE),
             (make_image(112, 84, 1), "Is there a square?", "<think>I see no square here at all.</think>no"),
             (make_image(140, 168, 2), "How many?", "<think>two</think>2")]
    singles, prompts, resps = [], [], []
    for img, q, r in cases:
        prompt = prompt_inputs(sm.processor, [img], q)
        ids = response_ids(sm.processor, r, sm.processor.tokenizer.eos_token_id)
        inp = teacher_forced(prompt, ids)
        rs = prompt["input_ids"].shape[1]
        singles.append(holistic_maps(sm.model, sm.spec, inp, [rs], [sm.spans(ids).shifted(rs)])[0])
        prompts.append(prompt), resps.append(ids)
    P = max(p["input_ids"].shape[1] for p in prompts)
    C = max(len(r) for r in resps)
    pad = sm.processor.tokenizer.pad_token_id
    ids_b, mask_b, mm_b, starts, spans = [], [], [], [], []
    for p, r in zip(prompts, resps):
        lp, lc = P - p["input_ids"].shape[1], C - len(r)
        ids_b.append(torch.cat([torch.full((lp,), pad), p["input_ids"][0], torch.tensor(r), torch.full((lc,), pad)]))
        mask_b.append(torch.cat([torch.zeros(lp), p["attention_mask"][0], torch.ones(len(r)), torch.zeros(lc)]))
        mm_b.append(torch.cat([torch.zeros(lp), p["mm_token_type_ids"][0], torch.zeros(C)]))
        starts.append(P)
        spans.append(sm.spans(r).shifted(P))
    batch = {"input_ids": torch.stack(ids_b).long(), "attention_mask": torch.stack(mask_b).long(),
             "mm_token_type_ids": torch.stack(mm_b).long(),
             "pixel_values": torch.cat([p["pixel_values"] for p in prompts]),
             "image_grid_thw": torch.cat([p["image_grid_thw"] for p in prompts])}
    batched = holistic_maps(sm.model, sm.spec, batch, starts, spans)
    for one, many in zip(singles, batched):
        assert one[0].shape == many[0].shape
        assert torch.allclose(one[0], many[0], rtol=1e-4, atol=1e-6)
