"""Other VLM families from their real transformers classes (tiny configs, synthetic inputs):
the tracer matches the naive eager oracle and leaves logits unchanged."""

from __future__ import annotations

import pytest
import torch
import transformers

from saliency_r1.attribution.decompose import trace
from saliency_r1.attribution.maps import build_plan
from saliency_r1.attribution.reference import naive_trace
from saliency_r1.grammar import Spans
from saliency_r1.models.presets import IMAGE_PAD, VISION_END, VISION_START
from saliency_r1.models.spec import get_spec

IDS = dict(image_token_id=IMAGE_PAD, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)
TEXT = dict(vocab_size=IMAGE_PAD + 8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)


def _qwen2_vl():
    cfg = transformers.Qwen2VLConfig(
        text_config=dict(TEXT, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2), **IDS)
    return cfg, transformers.Qwen2VLForConditionalGeneration, 14


def _qwen3_vl():
    cfg = transformers.Qwen3VLConfig(
        text_config=dict(TEXT, head_dim=16, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                                             "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]), **IDS)
    return cfg, transformers.Qwen3VLForConditionalGeneration, 16


def _inputs(cfg, patch, gh=3, gw=4, n_resp=12):
    g = torch.Generator().manual_seed(0)
    n_vis = gh * gw
    ids = torch.cat([torch.randint(10, 500, (5,), generator=g), torch.tensor([VISION_START]),
                     torch.full((n_vis,), IMAGE_PAD), torch.tensor([VISION_END]),
                     torch.randint(10, 500, (6 + n_resp,), generator=g)])[None]
    dim = 3 * 2 * patch * patch
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "mm_token_type_ids": (ids == IMAGE_PAD).long(),
              "pixel_values": torch.randn(4 * n_vis, dim, generator=g),
              "image_grid_thw": torch.tensor([[1, 2 * gh, 2 * gw]])}
    rs = ids.shape[1] - n_resp
    spans = Spans((rs, rs + 8), (rs + 8, rs + n_resp))
    return inputs, build_plan(ids, inputs["attention_mask"], [rs], [spans], IMAGE_PAD)


@pytest.mark.parametrize("family", [_qwen2_vl, _qwen3_vl], ids=["qwen2_vl", "qwen3_vl"])
def test_family_matches_naive_oracle(family):
    cfg, cls, patch = family()
    torch.manual_seed(0)
    model = cls(cfg).eval()
    spec = get_spec(model)
    inputs, plan = _inputs(cfg, patch)
    with torch.no_grad():
        before = model(**inputs, use_cache=False).logits
    ours = trace(model, spec, inputs, plan)
    with torch.no_grad():
        after = model(**inputs, use_cache=False).logits
    assert torch.equal(before, after)
    model.set_attn_implementation("eager")
    ref = naive_trace(model, spec, inputs, plan)
    assert torch.allclose(ours.contributions[0], ref["contributions"], rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours.holistic[0], ref["holistic"], rtol=1e-4, atol=1e-7)
    assert ours.contributions.abs().sum() > 0


def test_family_knowledge_is_in_the_spec():
    """Each spec names a processor transformers knows for that model type, and its own family key."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

    from saliency_r1.models.spec import SPECS

    for arch, spec in SPECS.items():
        assert hasattr(transformers, arch)
        assert spec.processor_class in PROCESSOR_MAPPING_NAMES[spec.family], arch
        assert processor_class_from_name(spec.processor_class).__name__ == spec.processor_class


@pytest.mark.parametrize("family", [_qwen2_vl, _qwen3_vl], ids=["qwen2_vl", "qwen3_vl"])
def test_spec_reads_patch_size_and_vision_sharing_from_the_model(family):
    cfg, cls, patch = family()
    model = cls(cfg).eval()
    spec = get_spec(model)
    assert spec.patch_pixels(model) == patch * 2
    assert spec.accepts_image_embeds(model) == (spec.family == "qwen2_vl")  # Qwen3-VL: DeepStack, no sharing
    inputs, _ = _inputs(cfg, patch)
    with torch.no_grad():
        tokens = spec.encode_images(model, inputs["pixel_values"], inputs["image_grid_thw"])
    assert [tuple(t.shape) for t in tokens] == [(12, 64)]


def test_qwen2_vl_checkpoint_names_its_own_processor(tmp_path, monkeypatch):
    import json

    from transformers import AutoProcessor, Qwen2VLProcessor

    from saliency_r1.models.tiny import build_tiny, save_checkpoint

    cfg, cls, _ = _qwen2_vl()
    out = save_checkpoint(cls(cfg).eval(), build_tiny()[1], tmp_path / "q2")
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Qwen2VLProcessor"
    monkeypatch.setattr(Qwen2VLProcessor, "from_pretrained", classmethod(lambda c, *a, **k: c))
    assert AutoProcessor.from_pretrained(str(out)) is Qwen2VLProcessor
