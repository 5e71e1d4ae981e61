"""Model specs: where each VLM family keeps the parts the tracer reads. Differences live in data.

A spec is a frozen dataclass of dotted attribute paths, looked up in a registry keyed by the HF model
class name. An unknown class is a hard error that lists the supported ones (no silent default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class ModelSpec:
    """Where a VLM family keeps what the tracer needs.

    Paths are relative to the HF model (``...ForConditionalGeneration``); ``{i}`` is a layer index.
    ``eager_module`` names the modeling module whose ``eager_attention_forward`` is the family's
    reference eager attention. ``processor_class`` is the family's standard transformers processor (what
    ``AutoProcessor`` resolves a saved checkpoint to); ``image_features`` the method that encodes pixels
    into the merged visual tokens the decoder sees; ``shares_vision`` whether the forward may be handed those
    tokens precomputed (``mm_encoder_outputs``) so that one image is encoded once for many rows.
    """

    family: str
    layers: str
    attention: str
    v_proj: str
    o_proj: str
    final_norm: str
    lm_head: str
    text_config: str
    image_token_attr: str
    merge_size_attr: str
    patch_size_attr: str
    eager_module: str
    processor_class: str
    image_features: str = "model.get_image_features"
    shares_vision: bool = False
    placeholder_attrs: tuple[str, ...] = ("config.image_token_id", "config.video_token_id",
                                          "config.vision_start_token_id", "config.vision_end_token_id")

    def get(self, model: nn.Module, path: str, i: int | None = None):
        """Resolve a dotted path (with ``{i}`` filled) on ``model``.

        >>> spec = SPECS["Qwen2_5_VLForConditionalGeneration"]
        >>> spec.layers
        'model.language_model.layers'
        """
        obj = model
        for part in path.format(i=i).split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    def placeholder_ids(self, model: nn.Module) -> frozenset[int]:
        """Ids that only the processor may place (image/video pads, vision start/end): never in a response.

        >>> from saliency_r1.models.tiny import build_tiny
        >>> model, proc = build_tiny()
        >>> sorted(proc.tokenizer.convert_ids_to_tokens(sorted(SPECS[type(model).__name__].placeholder_ids(model))))
        ['<|image_pad|>', '<|video_pad|>', '<|vision_end|>', '<|vision_start|>']
        """
        ids = set()
        for attr in self.placeholder_attrs:
            try:
                value = self.get(model, attr)
            except AttributeError:
                continue
            if value is not None:
                ids.add(int(value))
        return frozenset(ids)

    def patch_pixels(self, model: nn.Module) -> int:
        """Side of one merged visual cell in resized pixels: ``patch_size * merge_size``.

        >>> from saliency_r1.models.presets import random_vlm
        >>> SPECS["Qwen2_5_VLForConditionalGeneration"].patch_pixels(random_vlm("tiny"))
        28
        """
        return int(self.get(model, self.patch_size_attr)) * int(self.get(model, self.merge_size_attr))

    def encode_images(self, model: nn.Module, pixel_values, image_grid_thw) -> tuple:
        """The merged visual tokens of each image, ``(tokens_i, d)`` each, as the decoder receives them.

        >>> import torch
        >>> from saliency_r1.models.presets import random_vlm
        >>> m = random_vlm("tiny")
        >>> [tuple(t.shape) for t in SPECS["Qwen2_5_VLForConditionalGeneration"].encode_images(
        ...     m, torch.randn(16, 1176), torch.tensor([[1, 4, 4]]))]
        [(4, 128)]
        """
        out = self.get(model, self.image_features)(pixel_values, image_grid_thw, return_dict=True)
        return tuple(out.pooler_output)

    def accepts_image_embeds(self, model: nn.Module) -> bool:
        """Whether ``model``'s forward may take precomputed image tokens (``mm_encoder_outputs``).

        >>> from saliency_r1.models.presets import random_vlm
        >>> SPECS["Qwen2_5_VLForConditionalGeneration"].accepts_image_embeds(random_vlm("tiny"))
        True
        """
        import inspect

        return self.shares_vision and "mm_encoder_outputs" in inspect.signature(type(model).forward).parameters

    def n_layers(self, model: nn.Module) -> int:
        return len(self.get(model, self.layers))

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The decoder's self-attention modules, in layer order."""
        return [self.get(model, self.attention, i) for i in range(self.n_layers(model))]


_QWEN_COMMON = dict(
    layers="model.language_model.layers",
    attention="model.language_model.layers.{i}.self_attn",
    v_proj="model.language_model.layers.{i}.self_attn.v_proj",
    o_proj="model.language_model.layers.{i}.self_attn.o_proj",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    text_config="config.text_config",
    image_token_attr="config.image_token_id",
    merge_size_attr="config.vision_config.spatial_merge_size",
    patch_size_attr="config.vision_config.patch_size",
)

SPECS: dict[str, ModelSpec] = {
    "Qwen2_5_VLForConditionalGeneration": ModelSpec(
        family="qwen2_5_vl", eager_module="transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
        processor_class="Qwen2_5_VLProcessor", shares_vision=True, **_QWEN_COMMON),
    "Qwen2VLForConditionalGeneration": ModelSpec(
        family="qwen2_vl", eager_module="transformers.models.qwen2_vl.modeling_qwen2_vl",
        processor_class="Qwen2VLProcessor", shares_vision=True, **_QWEN_COMMON),
    # Qwen3-VL has the same decoder layout (q/k norms sit before RoPE, inside the attention module, so
    # the tracer's view from the attention interface is unchanged). DeepStack adds visual features to
    # early hidden states: those enter h_i^0-like residual terms, not the attention-borne c_{i,p}.
    "Qwen3VLForConditionalGeneration": ModelSpec(
        family="qwen3_vl", eager_module="transformers.models.qwen3_vl.modeling_qwen3_vl",
        processor_class="Qwen3VLProcessor", **_QWEN_COMMON),
}


def unwrap(model: nn.Module) -> nn.Module:
    """The HF model under peft / DDP / compile wrappers.

    >>> import torch.nn as nn
    >>> unwrap(nn.Linear(1, 1)).__class__.__name__
    'Linear'
    """
    for module in model.modules():  # pre-order: the HF model sits just under its wrappers
        if type(module).__name__ in SPECS:
            return module
    return model


def get_spec(model: nn.Module) -> ModelSpec:
    """The spec of ``model`` (peft-wrapped or not); an unknown class is an error listing the supported.

    >>> import torch.nn as nn
    >>> try:
    ...     get_spec(nn.Linear(1, 1))
    ... except UnsupportedModelError as e:
    ...     print(str(e).split(";")[0])
    unsupported model class Linear
    """
    name = type(unwrap(model)).__name__
    if name not in SPECS:
        raise UnsupportedModelError(
            f"unsupported model class {name}; supported: {', '.join(sorted(SPECS))} "
            "(add a ModelSpec to saliency_r1.models.spec.SPECS for a new family)")
    return SPECS[name]


__all__ = ["ModelSpec", "SPECS", "get_spec", "unwrap"]
