"""Numerics: half-precision paths accumulate in float32; NaN from the model is reported, not propagated."""

from __future__ import annotations

import pytest
import torch

import saliency_r1
from saliency_r1 import load_model
from saliency_r1.errors import NumericalError

RESP = "<think>The circle is red and round.</think>red"


def test_bf16_model_accumulates_in_float32(tiny_dir, image):
    full = load_model(tiny_dir)
    half = load_model(tiny_dir, dtype="bf16")
    a = full.explain(image, "What colour?", response=RESP)
    b = half.explain(image, "What colour?", response=RESP)
    assert b.contributions.dtype == torch.float32 and torch.isfinite(b.contributions).all()
    corr = torch.corrcoef(torch.stack([a.contributions.flatten(), b.contributions.flatten()]))[0, 1]
    assert corr > 0.95, f"bf16 contributions drift from float32 (corr {corr:.3f})"
    assert torch.isfinite(b.holistic[0]).all() and (b.holistic[0] >= 0).all()


def test_nan_in_model_output_is_reported(tiny_dir, image):
    sm = load_model(tiny_dir)
    with torch.no_grad():
        sm.hf.model.language_model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(NumericalError, match="NaN"):
        sm.explain(image, "What colour?", response=RESP)


def test_nan_gives_none_in_the_batched_path(tiny_dir, image):
    from saliency_r1.attribution.batch import teacher_forced
    from saliency_r1.attribution.inputs import prompt_inputs, response_ids
    from saliency_r1.attribution.maps import holistic_maps

    sm = load_model(tiny_dir)
    with torch.no_grad():
        sm.hf.model.language_model.layers[0].self_attn.v_proj.bias[0] = float("inf")
    prompt = prompt_inputs(sm.processor, [image], "Q?")
    ids = response_ids(sm.processor, RESP, sm.processor.tokenizer.eos_token_id)
    rs = prompt["input_ids"].shape[1]
    maps = holistic_maps(sm.model, sm.spec, teacher_forced(prompt, ids), [rs], [sm.spans(ids).shifted(rs)])
    assert maps == [None]


def test_zero_norm_hidden_state_and_all_zero_map_are_finite(tiny, image):
    """An all-zero image gives identical visual tokens; maps stay finite, scores are numbers, not NaN."""
    from PIL import Image

    res = tiny.explain(Image.new("RGB", (84, 84)), "Q?", response=RESP)
    s = saliency_r1.score(res, boxes=[[0, 0, 40, 40]])
    assert 0.0 <= s["energy_pg"] <= 1.0 and s["pg"] in (0.0, 1.0)
