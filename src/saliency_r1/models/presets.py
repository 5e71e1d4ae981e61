"""Random-weight Qwen2.5-VL models at real shapes, and synthetic inputs for them (benchmarks).

Weights do not change timings, so speed and memory are measured on models built from a config with
real widths (optionally fewer layers) and synthetic token/pixel inputs; no tokenizer, no download.
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from .tiny import mrope_section

PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1088, vision=dict(depth=2, hidden_size=64,
                                                                      intermediate_size=128, num_heads=4)),
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, vision=dict(depth=32, hidden_size=1280,
                                                                     intermediate_size=3420, num_heads=16)),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, vision=dict(depth=32, hidden_size=1280,
                                                                     intermediate_size=3420, num_heads=16)),
}
"""Text and vision widths of Qwen2.5-VL-3B/7B-Instruct (config.json on the hub) and of the tiny model."""

IMAGE_PAD, VISION_START, VISION_END = 151655, 151652, 151653


def random_vlm(preset: str, n_layers: int | None = None, vision_depth: int | None = None,
               dtype: torch.dtype = torch.float32, device="cpu", attn_implementation: str = "sdpa"):
    """A random-weight Qwen2.5-VL of ``preset``'s widths (optionally fewer layers), in eval mode.

    >>> m = random_vlm("tiny")
    >>> m.config.text_config.hidden_size
    128
    """
    p = dict(PRESETS[preset])
    vision = dict(p.pop("vision"))
    if n_layers is not None:
        p["num_hidden_layers"] = n_layers
    if vision_depth is not None:
        vision["depth"] = vision_depth
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    vocab = max(p["vocab_size"], IMAGE_PAD + 8)
    depth = vision["depth"]
    full = [i for i in (7, 15, 23, 31) if i < depth] or [depth - 1]
    cfg = Qwen2_5_VLConfig(
        text_config=dict(p, vocab_size=vocab, rms_norm_eps=1e-6, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                          "mrope_section": mrope_section(head_dim)}),
        vision_config=dict(vision, out_hidden_size=p["hidden_size"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112, fullatt_block_indexes=full),
        image_token_id=IMAGE_PAD, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)
    cfg._attn_implementation = attn_implementation
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    return model.to(dtype).eval()


def synthetic_inputs(model, grid_hw: tuple[int, int], n_prompt: int = 32, n_response: int = 64,
                     think_frac: float = 0.8, seed: int = 0) -> tuple[dict, int, tuple, tuple]:
    """Inputs of one example: text, one image of ``grid_hw`` merged cells, a response.

    Returns ``(inputs, response_start, think_span, answer_span)`` with absolute spans: the response's
    first ``think_frac`` tokens play the thinking tokens, the rest the answer.

    >>> m = random_vlm("tiny")
    >>> inp, rs, think, answer = synthetic_inputs(m, (4, 4), n_prompt=8, n_response=10)
    >>> inp["input_ids"].shape[1] == rs + 10, think[1] == answer[0]
    (True, True)
    """
    g = torch.Generator().manual_seed(seed)
    h, w = grid_hw
    n_vis = h * w
    device = next(model.parameters()).device
    text = lambda n: torch.randint(100, 1000, (n,), generator=g)  # noqa: E731
    ids = torch.cat([text(n_prompt // 2), torch.tensor([VISION_START]), torch.full((n_vis,), IMAGE_PAD),
                     torch.tensor([VISION_END]), text(n_prompt - n_prompt // 2), text(n_response)])[None]
    rs = ids.shape[1] - n_response
    vcfg = model.config.vision_config
    patch_dim = 3 * vcfg.temporal_patch_size * vcfg.patch_size ** 2
    dtype = next(model.parameters()).dtype
    inputs = {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "mm_token_type_ids": (ids == IMAGE_PAD).long().to(device),
        "pixel_values": torch.randn(4 * n_vis, patch_dim, generator=g).to(device, dtype),
        "image_grid_thw": torch.tensor([[1, 2 * h, 2 * w]]).to(device),
    }
    n_think = max(1, int(think_frac * n_response))
    return inputs, rs, (rs, rs + n_think), (rs + n_think, rs + n_response)


__all__ = ["PRESETS", "random_vlm", "synthetic_inputs"]
