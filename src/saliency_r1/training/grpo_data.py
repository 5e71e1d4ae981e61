"""GRPO rows for TRL's vision-language path, from ShapesWorld or data sources (:func:`.run_config.load_samples`).

One row per sample::

    prompt   [{"role": "user", "content": question (+ instruction)}]   (conversational, no template)
    image    the image (``datasets.Image``: a PIL image or a path); TRL 1.16 reads ``image`` (one per
             row) or ``images`` (a list) and puts ``{"type": "image"}`` blocks before the user text
    answer   ground-truth answer (R_accuracy)
    boxes    evidence boxes, pixel xyxy of the original image, possibly empty (R_saliency: None)
    masks    evidence polygons or None
    width, height, id

TRL passes every column but ``prompt`` to the reward functions as keyword lists.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .run_config import load_samples


def features():
    """The ``datasets.Features`` of the GRPO rows.

    >>> sorted(features())[:3]
    ['answer', 'boxes', 'height']
    """
    import datasets as ds

    f64 = ds.Value("float64")
    return ds.Features({
        "prompt": ds.List({"role": ds.Value("string"), "content": ds.Value("string")}),
        "image": ds.Image(), "answer": ds.Value("string"), "boxes": ds.List(ds.List(f64)),
        "masks": ds.List(ds.List(ds.List(f64))), "width": ds.Value("int32"), "height": ds.Value("int32"),
        "id": ds.Value("string"),
    })


def to_row(sample: dict, instruction: str | None = None, system_prompt: str | None = None) -> dict:
    """One schema sample (:class:`saliency_r1.data.Sample`) as a GRPO row.

    >>> to_row({"image": "a.png", "question": "Q?", "answer": "a", "boxes": [], "masks": None, "width": 28,
    ...         "height": 28, "id": "0"}, instruction="Think first.")["prompt"]
    [{'role': 'user', 'content': 'Q? Think first.'}]
    """
    text = sample["question"] + (f" {instruction}" if instruction else "")
    prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": text}]
    return {"prompt": prompt, "image": sample["image"], "answer": sample["answer"],
            "boxes": [list(map(float, b)) for b in sample.get("boxes") or []], "masks": sample.get("masks"),
            "width": int(sample["width"]), "height": int(sample["height"]), "id": str(sample.get("id", ""))}


def build_dataset(data: Any):
    """The ``datasets.Dataset`` of GRPO rows for a :class:`~.run_config.DataSection` (module docstring)."""
    import datasets as ds

    samples = load_samples(data)
    if not samples:
        raise InputError("the GRPO dataset is empty; check data.n, data.sources and their limits")
    rows = [to_row(s, data.instruction, data.system_prompt) for s in samples]
    return ds.Dataset.from_list(rows, features=features())


__all__ = ["features", "to_row", "load_samples", "build_dataset"]
