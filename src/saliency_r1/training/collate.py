"""Batches for SFT of a Qwen-VL model: prompt (chat template + image) then the response, loss on the response.

Each example is built the way the model sees it at inference (:func:`saliency_r1.attribution.inputs.chat_prompt`:
the model's own chat template with the image, ``add_generation_prompt=True``), followed by the response ids and
the end-of-turn token. Labels are ``-100`` everywhere except on the response ids and that end token, so the
image, the system prompt and the question are never in the loss. ``mm_token_type_ids`` (1 on image tokens, 0
elsewhere, including the response and the padding) travel with the batch: without them Qwen2.5-VL silently
skips M-RoPE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..attribution.inputs import open_image, prompt_inputs, response_ids
from ..errors import InputError
from ..grammar import end_of_turn_id, format_response

IGNORE_INDEX = -100
_PADDED = ("input_ids", "attention_mask", "mm_token_type_ids", "labels")


def response_text(example: dict[str, Any]) -> str:
    """The target text of an example: its ``response`` if given, else ``<think>{reasoning}</think>{answer}``.

    >>> response_text({"reasoning": "It is red.", "answer": "red"})
    '<think>It is red.</think>red'
    """
    if example.get("response"):
        return str(example["response"])
    answer = example.get("answer")
    if answer is None or str(answer) == "":
        raise InputError(f"example {example.get('id', '?')!r} has no answer and no response; every SFT example needs "
                         "an 'answer' (with optional 'reasoning') or a 'response'")
    return format_response(example.get("reasoning"), str(answer))


def encode_example(processor, example: dict[str, Any], end_id: int, max_length: int | None = None) -> dict:
    """One example -> unpadded tensors: ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``labels``
    (1-D) and ``pixel_values``, ``image_grid_thw`` (per image rows).

    The response is cut (never the prompt, which holds the image tokens) when prompt + response exceed
    ``max_length``. Special-token text in the question or response (``<|im_end|>``) is tokenised as plain
    characters (:func:`saliency_r1.attribution.inputs.text_ids`), so a dataset row cannot fake a chat turn.

    >>> from PIL import Image
    >>> from saliency_r1.models.tiny import build_tiny
    >>> proc = build_tiny()[1]
    >>> enc = encode_example(proc, {"image": Image.new("RGB", (56, 56)), "question": "Q?", "answer": "a"}, 2)
    >>> int((enc["labels"] != -100).sum()) == len(proc.tokenizer("<think></think>a")["input_ids"]) + 1
    True
    """
    images = example["image"] if isinstance(example["image"], (list, tuple)) else [example["image"]]
    images = [open_image(im) for im in images]
    try:  # question and response with special tokens split: dataset text never becomes control tokens
        enc = prompt_inputs(processor, images, str(example["question"]))
        resp = response_ids(processor, response_text(example), end_id)
    except InputError as e:
        raise InputError(f"example {example.get('id', '?')!r}: {e}") from None
    prompt_ids = enc["input_ids"][0]
    if max_length is not None:
        room = max_length - len(prompt_ids)
        if room < 1:
            raise InputError(f"example {example.get('id', '?')!r}: the prompt alone has {len(prompt_ids)} tokens, "
                             f"more than max_length={max_length}; raise max_length or lower the image max_pixels")
        resp = resp[:room]
    r = torch.tensor(resp, dtype=torch.long)
    mm = enc.get("mm_token_type_ids")
    mm = mm[0] if mm is not None else (prompt_ids == processor.image_token_id).long()
    return {
        "input_ids": torch.cat([prompt_ids, r]),
        "attention_mask": torch.ones(len(prompt_ids) + len(r), dtype=torch.long),
        "mm_token_type_ids": torch.cat([mm.long(), torch.zeros_like(r)]),
        "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), r]),
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": enc["image_grid_thw"],
    }


def pad_batch(encoded: list[dict], pad_id: int, padding_side: str = "right") -> dict:
    """Pad the 1-D fields (``pad_id`` / 0 / 0 / -100) and concatenate the per-image rows.

    >>> e = {"input_ids": torch.tensor([5, 6]), "attention_mask": torch.ones(2, dtype=torch.long),
    ...      "mm_token_type_ids": torch.zeros(2, dtype=torch.long), "labels": torch.tensor([-100, 6]),
    ...      "pixel_values": torch.zeros(4, 3), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    >>> f = dict(e, **{k: v[:1] for k, v in e.items() if k in ("input_ids", "attention_mask", "mm_token_type_ids", "labels")})
    >>> pad_batch([e, f], pad_id=0, padding_side="left")["input_ids"].tolist()
    [[5, 6], [0, 5]]
    """
    if padding_side not in ("left", "right"):
        raise InputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    longest = max(len(e["input_ids"]) for e in encoded)
    fill = {"input_ids": pad_id, "attention_mask": 0, "mm_token_type_ids": 0, "labels": IGNORE_INDEX}
    batch = {}
    for key in _PADDED:
        rows = []
        for e in encoded:
            pad = torch.full((longest - len(e[key]),), fill[key], dtype=torch.long)
            rows.append(torch.cat([pad, e[key]] if padding_side == "left" else [e[key], pad]))
        batch[key] = torch.stack(rows)
    batch["pixel_values"] = torch.cat([e["pixel_values"] for e in encoded])
    batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in encoded])
    return batch


@dataclass
class VisionSFTCollator:
    """Data collator for ``SFTTrainer``: examples (``image``, ``question``, and ``response`` or ``answer`` +
    ``reasoning``) -> a padded batch with response-only labels.

    >>> from PIL import Image
    >>> from saliency_r1.models.tiny import build_tiny
    >>> collate = VisionSFTCollator(build_tiny()[1])
    >>> ex = {"image": Image.new("RGB", (56, 56)), "question": "Q?", "answer": "a", "reasoning": "b"}
    >>> sorted(collate([ex, dict(ex, answer="a longer answer")]))
    ['attention_mask', 'image_grid_thw', 'input_ids', 'labels', 'mm_token_type_ids', 'pixel_values']
    """

    processor: Any
    max_length: int | None = None
    padding_side: str = "right"

    def __post_init__(self) -> None:
        tok = self.processor.tokenizer
        self.end_id = end_of_turn_id(tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise InputError("the tokenizer has no pad or eos token; set tokenizer.pad_token")
        self.pad_id = int(pad)
        if self.padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise InputError("empty batch: the collator needs at least one example")
        encoded = [encode_example(self.processor, ex, self.end_id, self.max_length) for ex in examples]
        return pad_batch(encoded, self.pad_id, self.padding_side)


@dataclass
class IndexCollator:
    """Rows ``{"index": i}`` -> ``collate([samples[i], ...])``: the Trainer's dataset holds only indices, the
    samples (PIL images included) stay in memory as they are, with no encoding into Arrow.

    >>> from PIL import Image
    >>> from saliency_r1.models.tiny import build_tiny
    >>> ex = {"image": Image.new("RGB", (56, 56)), "question": "Q?", "answer": "a"}
    >>> IndexCollator([ex], VisionSFTCollator(build_tiny()[1]))([{"index": 0}])["input_ids"].shape[0]
    1
    """

    samples: list
    collate: VisionSFTCollator

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.collate([self.samples[int(r["index"])] for r in rows])


__all__ = ["VisionSFTCollator", "IndexCollator", "encode_example", "pad_batch", "response_text", "end_of_turn_id", "IGNORE_INDEX"]
