"""Images and prompts in: open, normalise and check images; build chat prompts and response ids.

The teacher-forced batch is :mod:`saliency_r1.attribution.batch`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._images import read_image
from ..errors import InputError

MAX_ASPECT = 200  # Qwen's smart_resize refuses more


def open_image(image, min_side: int = 28) -> Image.Image:
    """A path, PIL image or ``(H, W[, C])`` array -> RGB PIL image, checked for the model.

    CMYK, RGBA (composited on white), palette, greyscale and 16-bit images are converted to 8-bit RGB.

    >>> open_image(Image.new("RGBA", (40, 30))).mode
    'RGB'
    """
    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise InputError(f"image file {p} does not exist; check the path")
        image = read_image(p)  # header checks, pixel cap, finite pixels (saliency_r1._images)
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif not isinstance(image, Image.Image):
        raise InputError(f"unsupported image type {type(image).__name__}; pass a path, a PIL image or an array")
    image = _to_rgb(image)
    w, h = image.size
    if min(w, h) < min_side:
        raise InputError(f"image is {w}x{h} pixels, smaller than one merged patch ({min_side}x{min_side}); "
                         "upscale it or pass a larger image")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InputError(f"image aspect ratio {w}x{h} exceeds {MAX_ASPECT}:1; crop or pad it")
    return image


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InputError(f"image array has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = 65535.0 if a.max() > 255 else (255.0 if a.max() > 1 else 1.0)
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(a.squeeze(-1) if a.ndim == 3 and a.shape[2] == 1 else a)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        hi = a.max() if a.max() > 0 else 1.0
        image = Image.fromarray((a / hi * 255.0).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def user_turn(n_images: int, question: str) -> list[dict]:
    """One user message: ``n_images`` image blocks, then the question (chat-template messages).

    >>> user_turn(1, "Hi?")
    [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'Hi?'}]}]
    """
    if not isinstance(question, str):
        raise InputError(f"the question must be a string, not {type(question).__name__}")
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def chat_prompt(processor, n_images: int, question: str) -> str:
    """The model's own chat template with ``n_images`` images, then the question; generation prompt on.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> _, proc = build_tiny()
    >>> chat_prompt(proc, 1, "Hi?").endswith("Hi?<|im_end|>\\n<|im_start|>assistant\\n")
    True
    """
    return processor.apply_chat_template(user_turn(n_images, question), add_generation_prompt=True, tokenize=False)


def prompt_inputs(processor, images: list[Image.Image], question: str) -> dict:
    """Processor outputs for one prompt (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, pixels)."""
    if not images:
        raise InputError("no image given: saliency maps need at least one image in the prompt")
    text = chat_prompt(processor, len(images), question)
    try:
        return dict(processor(text=[text], images=images, return_tensors="pt"))
    except ValueError as e:
        raise InputError(f"the processor refused the image(s): {str(e)[:160]}") from None


def response_ids(processor, response, end_id: int) -> list[int]:
    """Ids of a given response (string or ids). A string gets the end-of-turn token appended, as a
    generated response has it; ids are taken as they are.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> _, proc = build_tiny()
    >>> ids = response_ids(proc, "<think>x</think>y", proc.tokenizer.eos_token_id)
    >>> ids[-1] == proc.tokenizer.eos_token_id
    True
    """
    if isinstance(response, str):
        if not response.strip():
            raise InputError("the response is empty; pass a non-empty response or None to generate one")
        ids = processor.tokenizer(response, add_special_tokens=False)["input_ids"]
        return ids + ([end_id] if not ids or ids[-1] != end_id else [])
    ids = [int(t) for t in (response.tolist() if isinstance(response, torch.Tensor) else response)]
    if not ids:
        raise InputError("the response ids are empty; pass at least one token")
    return ids


__all__ = ["open_image", "user_turn", "chat_prompt", "prompt_inputs", "response_ids"]
