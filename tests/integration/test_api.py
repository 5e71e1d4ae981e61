"""The public API: explain, spans, variants, save/load, bad input, peft-wrapped models, unknown classes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import saliency_r1
from conftest import make_image
from saliency_r1 import InputError, SaliencyResult, UnsupportedModelError, from_pretrained_objects


def test_explain_teacher_forced(tiny, image):
    res = tiny.explain(image, "What colour is the circle?", response="<think>The circle is red.</think>red")
    n = len(res.response_ids)
    assert res.tokens[0] == "<think>" and res.response_start + n == len(res.input_ids)
    t0, t1 = res.think_span
    assert tiny.processor.tokenizer.decode(res.input_ids[t0:t1]) == "The circle is red."
    a0, a1 = res.answer_span
    assert tiny.processor.tokenizer.decode(res.input_ids[a0:a1]) == "red"
    h, w = res.grids[0]
    assert res.contributions.shape == (n, h * w)
    assert res.token_maps[0].shape == (n, h, w) and (res.token_maps[0] >= 0).all()
    for m in (res.holistic, res.think, res.answer, res.attn):
        assert m[0].shape == (h, w) and torch.isfinite(m[0]).all() and (m[0] >= 0).all()
    assert res.holistic_reason is None
    assert torch.equal(res.token_maps[0].flatten(1), res.contributions.clamp_min(0))


def test_explain_generates(tiny, image):
    res = tiny.explain(image, "What colour?", max_new_tokens=6, do_sample=False)
    assert 1 <= len(res.response_ids) <= 6
    assert res.meta["timings"]["generate_s"] > 0


def test_no_think_structure_gives_documented_none(tiny, image):
    res = tiny.explain(image, "What colour?", response="red")
    assert res.holistic is None and res.attn is None and res.think is None
    assert "no <think>" in res.holistic_reason
    res = tiny.explain(image, "What colour?", response="<think></think>red")
    assert res.holistic is None and "thinking span is empty" in res.holistic_reason
    res = tiny.explain(image, "What colour?", response="<think>hmm</think>")
    assert res.holistic is None and "answer" in res.holistic_reason
    assert res.think is not None  # the thinking tokens' own maps still exist


@pytest.mark.parametrize("bad,match", [
    ("", "response is empty"),
    ("   ", "response is empty"),
])
def test_empty_response_is_an_error(tiny, image, bad, match):
    with pytest.raises(InputError, match=match):
        tiny.explain(image, "Q?", response=bad)


def test_placeholder_tokens_never_generated_and_refused_in_responses(tiny, image):
    """Image/video pads and vision start/end are suppressed in generation (a response holding them cannot be
    traced with the prompt's images); given response ids holding one are a one-line error, and a response
    string spelling one is read as plain characters (special tokens split)."""
    placeholders = tiny.spec.placeholder_ids(tiny.hf)
    bias = torch.zeros(tiny.model.lm_head.weight.shape[0])
    bias[sorted(placeholders)] = 1e4  # make the model want nothing but placeholders
    handle = tiny.model.lm_head.register_forward_hook(lambda m, i, o: o + bias)
    try:
        res = tiny.explain(image, "Q?", max_new_tokens=5, do_sample=False)
    finally:
        handle.remove()
    assert placeholders.isdisjoint(res.response_ids.tolist())
    tok = tiny.processor.tokenizer
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    with pytest.raises(InputError, match="placeholder"):
        tiny.explain(image, "Q?", response=tok("<think>a</think>red")["input_ids"] + [pad, tok.eos_token_id])
    res = tiny.explain(image, "Q?", response="<think>a<|image_pad|></think>red")
    assert placeholders.isdisjoint(res.response_ids.tolist()) and "<|image_pad|>" in res.response_text


def test_bad_images(tiny, tmp_path):
    with pytest.raises(InputError, match="smaller than one merged patch"):
        tiny.explain(Image.new("RGB", (20, 100)), "Q?", response="<think>a</think>b")
    with pytest.raises(InputError, match="does not exist"):
        tiny.explain(tmp_path / "missing.png", "Q?", response="x")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        tiny.explain(tmp_path / "junk.png", "Q?", response="x")
    with pytest.raises(InputError, match="at least one image"):
        tiny.explain([], "Q?", response="x")


@pytest.mark.parametrize("mode", ["RGBA", "L", "CMYK", "P", "I;16"])
def test_image_modes(tiny, mode):
    img = make_image(112, 84).convert(mode) if mode != "I;16" else Image.new("I;16", (112, 84), 4000)
    res = tiny.explain(img, "Q?", response="<think>a b</think>c")
    assert res.grids == [(3, 4)]


def test_save_load_roundtrip(tiny, image, tmp_path):
    res = tiny.explain([image, make_image(84, 84, 5)], "Q?", response="<think>one two</think>three")
    res.save(tmp_path / "r")
    back = SaliencyResult.load(tmp_path / "r")
    assert back.grids == res.grids and back.tokens == res.tokens and back.think_span == res.think_span
    assert torch.equal(back.contributions, res.contributions)
    for a, b in zip(back.holistic, res.holistic):
        assert torch.equal(a, b)
    assert back.images[1].size == (84, 84)
    with pytest.raises(InputError, match="no saved SaliencyResult"):
        SaliencyResult.load(tmp_path)


def test_two_images_split_in_order(tiny):
    a, b = make_image(112, 84, 1), make_image(84, 140, 2)
    res = tiny.explain([a, b], "Compare?", response="<think>x y</think>z")
    assert res.grids == [(3, 4), (5, 3)]
    assert res.contributions.shape[1] == 12 + 15
    assert torch.equal(res.token_maps[1].flatten(1), res.contributions[:, 12:].clamp_min(0))


def test_peft_wrapped_model(tiny_dir, image):
    from peft import LoraConfig, get_peft_model

    base = saliency_r1.load_model(tiny_dir)
    ref = base.explain(image, "Q?", response="<think>a b</think>c")
    peft = get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    sm = from_pretrained_objects(peft, base.processor)
    res = sm.explain(image, "Q?", response="<think>a b</think>c")  # LoRA B = 0: same function
    assert torch.allclose(res.contributions, ref.contributions, atol=1e-6)


def test_unknown_model_class_lists_supported(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(UnsupportedModelError, match="Qwen2_5_VLForConditionalGeneration"):
        saliency_r1.load_model(tmp_path)
    with pytest.raises(UnsupportedModelError, match="supported"):
        from_pretrained_objects(torch.nn.Linear(2, 2), None)
    with pytest.raises(InputError, match="config.json missing"):
        saliency_r1.load_model(tmp_path.parent)
