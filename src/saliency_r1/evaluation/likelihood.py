"""The faithfulness score's core: the model's mean log-likelihood of a fixed response under many images.

    LL(image) = (1/N) Σ_{k=1..N} log p(y_k | image, question, y_<k)       (teacher-forced, one forward)

Images of one size give the same number of visual tokens, so ``B`` perturbed copies of one example
go through one batched forward without padding. Logits over the vocabulary are only formed at the
response rows, a few rows at a time (:func:`~saliency_r1.evaluation.common.target_logprobs`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..attribution.inputs import chat_prompt, open_image, prompt_inputs, special_tokens_in
from ..errors import InputError
from .common import on_device, target_logprobs


def _batch_inputs(smodel, images: list, question: str, ids: list[int]) -> tuple[dict, int]:
    """Teacher-forced inputs of ``B`` one-image prompts with the same response; returns (inputs, start)."""
    if special_tokens_in(smodel.processor.tokenizer, question):  # split special tokens: one prompt per image
        parts = [prompt_inputs(smodel.processor, [im], question) for im in images]
        prompt = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # (B, P) per token, rows per image
    else:
        text = chat_prompt(smodel.processor, 1, question)
        try:
            prompt = dict(smodel.processor(text=[text] * len(images), images=images, return_tensors="pt"))
        except ValueError as e:
            raise InputError(f"the processor refused the image(s): {str(e)[:160]}") from None
    B, start = prompt["input_ids"].shape
    r = torch.tensor([ids], dtype=torch.long).expand(B, -1)  # (B, N)
    prompt["input_ids"] = torch.cat([prompt["input_ids"], r], 1)
    prompt["attention_mask"] = torch.cat([prompt["attention_mask"], torch.ones_like(r)], 1)
    if "mm_token_type_ids" in prompt:
        prompt["mm_token_type_ids"] = torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(r)], 1)
    return prompt, start


def response_loglik(smodel, images: list, question: str, ids: list[int], batch_size: int = 8) -> np.ndarray:
    """Mean log-likelihood of the response ``ids`` under each image, ``(len(images),)`` float64.

    All images must have the same size (they are perturbed copies of one image).

    >>> import tempfile
    >>> from PIL import Image
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> sm = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> ll = response_loglik(sm, [Image.new("RGB", (56, 56)), Image.new("RGB", (56, 56), "red")], "Q?", [5, 6])
    >>> ll.shape, bool((ll < 0).all())
    ((2,), True)
    """
    if not ids:
        raise InputError("the response is empty: nothing to score")
    images = [open_image(im, min_side=smodel.patch_pixels) for im in images]
    if len({im.size for im in images}) > 1:
        raise InputError("response_loglik scores copies of one image: pass images of one size")
    rows = None
    out = []
    for s in range(0, len(images), max(1, int(batch_size))):
        inputs, start = _batch_inputs(smodel, images[s:s + batch_size], question, ids)
        T = inputs["input_ids"].shape[1]
        if rows is None:
            rows = torch.arange(start - 1, T - 1)  # (N,) rows predicting the response tokens
        with torch.no_grad():
            hidden = smodel.hf.model(**on_device(inputs, smodel.device), use_cache=False).last_hidden_state
            lp = target_logprobs(smodel, hidden, rows, torch.tensor(ids))  # (B, N)
        out.append(lp.mean(-1).double().cpu())
    return torch.cat(out).numpy()


__all__ = ["response_loglik"]
