"""The faithfulness score's core: the model's mean log-likelihood of a fixed response under many images.

    LL(image) = (1/N) Σ_{k=1..N} log p(y_k | image, question, y_<k)       (teacher-forced, one forward)

Images of one size give the same number of visual tokens, so ``B`` perturbed copies of one example
go through one batched forward without padding. Logits over the vocabulary are only formed at the
response rows, a few rows at a time (:func:`~saliency_r1.evaluation.common.target_logprobs`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..attribution.batch import pad_inputs, to_device
from ..attribution.inputs import open_image, prompt_inputs
from ..errors import InputError
from .common import target_logprobs


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
        prompts = [prompt_inputs(smodel.processor, [im], question) for im in images[s:s + batch_size]]
        inputs, start = pad_inputs(prompts, [ids] * len(prompts), 0)  # one size: no padding
        T = inputs["input_ids"].shape[1]
        if rows is None:
            rows = torch.arange(start - 1, T - 1)  # (N,) rows predicting the response tokens
        with torch.no_grad():
            hidden = smodel.hf.model(**to_device(inputs, smodel.device), use_cache=False).last_hidden_state
            lp = target_logprobs(smodel, hidden, rows, torch.tensor(ids))  # (B, N)
        out.append(lp.mean(-1).double().cpu())
    return torch.cat(out).numpy()


__all__ = ["response_loglik"]
