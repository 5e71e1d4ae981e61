"""An image-only Qwen2.5-VL processor that works without torchvision.

``Qwen2_5_VLProcessor(..., video_processor=None)`` fails without torchvision, and
``AutoProcessor.from_pretrained`` then silently returns the tokenizer alone. This subclass has no
``video_processor`` parameter, uses the PIL image processor, saves and loads like any processor.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ..errors import InputError


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor for images only (no video processor, no torchvision).

    The token ids, the chat template and the image placeholder expansion are those of
    ``Qwen2_5_VLProcessor``; only the video half is absent.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = (getattr(tokenizer, "image_token_id", None)
                               or tokenizer.convert_tokens_to_ids(self.image_token))
        self.video_token_id = (getattr(tokenizer, "video_token_id", None)
                               or tokenizer.convert_tokens_to_ids(self.video_token))
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)


def load_processor(path: str | Path, min_pixels: int | None = None,
                   max_pixels: int | None = None) -> ImageOnlyQwenVLProcessor:
    """Build the image-only processor from a checkpoint directory (tokenizer + preprocessor config).

    The chat template comes from the directory (``chat_template.jinja``/``.json`` or the tokenizer's).
    """
    path = Path(path)
    if not (path / "preprocessor_config.json").is_file():
        raise InputError(f"{path} has no preprocessor_config.json; pass a full Qwen-VL checkpoint directory "
                         "(config.json, safetensors, tokenizer files, preprocessor_config.json)")
    overrides = {}
    if min_pixels is not None or max_pixels is not None:
        base = Qwen2VLImageProcessorPil.from_pretrained(str(path))
        overrides["size"] = {"shortest_edge": min_pixels or base.size["shortest_edge"],
                             "longest_edge": max_pixels or base.size["longest_edge"]}
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path), **overrides)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    template = _read_chat_template(path) or getattr(tokenizer, "chat_template", None)
    if template is None:
        raise InputError(f"{path} has no chat template; add chat_template.jinja (the model's own template)")
    return ImageOnlyQwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _read_chat_template(path: Path) -> str | None:
    import json

    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text()).get("chat_template")
    return None


__all__ = ["ImageOnlyQwenVLProcessor", "load_processor"]
