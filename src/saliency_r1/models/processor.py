"""The processor of a checkpoint: the family's real transformers processor where it loads, else an
image-only Qwen-VL processor that works without torchvision. Never a bare tokenizer.

``Qwen2_5_VLProcessor(..., video_processor=None)`` fails without torchvision, and
``AutoProcessor.from_pretrained`` then silently returns the tokenizer alone. :class:`ImageOnlyQwenVLProcessor`
has no ``video_processor`` parameter, uses the PIL image processor, saves and loads like any processor.

Layouts read (all written by transformers at some version): the image processor nested in
``processor_config.json`` (transformers >= 5) or in ``preprocessor_config.json`` (earlier), with or without a
``video_preprocessor_config.json``; the chat template in ``chat_template.jinja``, ``chat_template.json``,
``processor_config.json`` or the tokenizer config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoTokenizer, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ..errors import InputError

log = logging.getLogger(__name__)

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
"""Where transformers keeps the image-processor settings: nested (>= 5) or on their own (earlier)."""


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


def has_processor_files(path: str | Path) -> bool:
    """Whether ``path`` holds image-processor settings in any layout transformers writes.

    >>> import tempfile, pathlib
    >>> has_processor_files(tempfile.mkdtemp())
    False
    """
    return any((Path(path) / name).is_file() for name in PROCESSOR_FILES)


def load_processor(path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None):
    """The processor of the checkpoint directory ``path``: the family's own (``AutoProcessor``) where it
    loads with images, else :class:`ImageOnlyQwenVLProcessor` (e.g. without torchvision).

    ``min_pixels`` / ``max_pixels`` override the image processor's resize bounds. A result without an image
    processor (``AutoProcessor``'s bare-tokenizer fallback) is never returned.

    >>> import tempfile
    >>> from saliency_r1.models.tiny import tiny_checkpoint
    >>> p = load_processor(tiny_checkpoint(tempfile.mkdtemp() + "/t"), max_pixels=28 * 28 * 16)
    >>> hasattr(p, "image_processor"), p.image_processor.size["longest_edge"]
    (True, 12544)
    """
    path = Path(path)
    if not has_processor_files(path):
        raise InputError(f"{path} has neither processor_config.json nor preprocessor_config.json; pass a full "
                         "Qwen-VL checkpoint directory (config.json, safetensors, tokenizer files, processor "
                         "config) or re-save its processor with processor.save_pretrained(DIR)")
    processor = _auto_processor(path)
    if processor is None:
        processor = _image_only(path)
    if min_pixels is not None or max_pixels is not None:
        size = processor.image_processor.size
        processor.image_processor = type(processor.image_processor).from_pretrained(
            str(path), size={"shortest_edge": min_pixels or size["shortest_edge"],
                             "longest_edge": max_pixels or size["longest_edge"]})
    if processor.chat_template is None:
        raise InputError(f"{path} has no chat template; add chat_template.jinja (the model's own template)")
    return processor


def _auto_processor(path: Path):
    """``AutoProcessor.from_pretrained(path)`` when it yields a processor with an image processor, else None."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(path))
    except Exception as e:  # no torchvision, no video processor, unknown processor_class: use the fallback
        log.info("AutoProcessor cannot load %s (%s: %s); using the image-only processor", path,
                 type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        log.warning("AutoProcessor returned %s for %s (no image processor; check processor_class in "
                    "processor_config.json); using the image-only processor", type(processor).__name__, path)
        return None
    if processor.chat_template is None:
        processor.chat_template = read_chat_template(path) or getattr(processor.tokenizer, "chat_template", None)
    return processor


def _image_only(path: Path) -> ImageOnlyQwenVLProcessor:
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    template = read_chat_template(path) or getattr(tokenizer, "chat_template", None)
    return ImageOnlyQwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def read_chat_template(path: str | Path) -> str | None:
    """The chat template stored beside a processor: ``chat_template.jinja``, ``chat_template.json`` or
    ``processor_config.json``'s ``chat_template`` (older transformers); None when there is none.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "chat_template.json").write_text('{"chat_template": "T"}')
    >>> read_chat_template(d)
    'T'
    """
    path = Path(path)
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    for name in ("chat_template.json", "processor_config.json"):
        if (path / name).is_file():
            template = _read_json(path / name).get("chat_template")
            if template:
                return template
    return None


def stamp_processor_class(directory: str | Path, processor_class: str) -> None:
    """Write ``processor_class`` into every processor/tokenizer config of a saved checkpoint, so that
    ``AutoProcessor`` resolves it to the family's standard processor (not to a project-only class).

    >>> import tempfile, pathlib, json
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "processor_config.json").write_text('{"processor_class": "X"}')
    >>> stamp_processor_class(d, "Qwen2_5_VLProcessor"); json.loads((d / "processor_config.json").read_text())
    {'processor_class': 'Qwen2_5_VLProcessor'}
    """
    from .._io import atomic_write_json

    for name in (*PROCESSOR_FILES, "tokenizer_config.json", "video_preprocessor_config.json"):
        f = Path(directory) / name
        if f.is_file():
            cfg = _read_json(f)
            cfg["processor_class"] = processor_class
            atomic_write_json(f, cfg)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e.msg}); re-save the checkpoint") from None


__all__ = ["ImageOnlyQwenVLProcessor", "PROCESSOR_FILES", "has_processor_files", "load_processor",
           "read_chat_template", "stamp_processor_class"]
