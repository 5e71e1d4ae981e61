"""Rollouts for tests and benchmarks: real sampling from the policy, then the response format imposed.

A randomly initialised tiny model never writes ``<think>…</think>answer`` on its own, so with it the
saliency reward would never trace anything, every reward would be 0, and GRPO would have no signal.
:class:`FormatForcingRollout` (a TRL ``rollout_func``) samples each completion from the current policy
with the trainer's own generation config, exactly as TRL's generate path does (same prompts, images,
length budget), then rewrites a fraction ``well_formed`` of them, keeping their length, into

    <think> t_1 … t_m </think> t_{m+1} … t_{n-2} <eos>

(the first two thirds of the sampled tokens as reasoning, the rest as the answer). The others are
returned as sampled. The completion ids are handed to TRL like vLLM's would be, so the rewards, the
traced forward and the loss run unchanged. Not for real training: use an SFT cold start there.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from ..attribution.batch import to_device


class FormatForcingRollout:
    """``rollout_func(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}`` (module docstring).

    >>> FormatForcingRollout(well_formed=0.5).well_formed
    0.5
    """

    __name__ = "format_forcing_rollout"

    def __init__(self, well_formed: float = 1.0, seed: int = 0):
        self.well_formed = well_formed
        self.rng = random.Random(seed)

    def __call__(self, prompts: list, trainer: Any) -> dict:
        from trl.data_utils import apply_chat_template
        from trl.models.utils import unwrap_model_for_generation

        proc = trainer.processing_class
        tok = proc.tokenizer
        texts = [apply_chat_template({"prompt": p}, proc, **trainer.chat_template_kwargs)["prompt"] for p in prompts]
        images = [b["image"] for p in prompts for m in p if isinstance(m.get("content"), list)
                  for b in m["content"] if b.get("type") == "image"]
        inputs = proc(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = to_device(dict(inputs), trainer.accelerator.device)
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation) as model, \
                torch.no_grad():
            seq = model.generate(**inputs, generation_config=trainer.generation_config)
        P = inputs["input_ids"].shape[1]
        ends = set(trainer.eos_token_ids)
        ids, mask = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu().bool()
        prompt_ids = [row[m].tolist() for row, m in zip(ids, mask)]
        completions = [self._shape(row.tolist(), ends, tok) for row in seq[:, P:].cpu()]
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None}

    def _shape(self, ids: list[int], ends: set, tok) -> list[int]:
        """Cut at the first end token; rewrite into the format with probability ``well_formed``."""
        for k, t in enumerate(ids):
            if t in ends:
                ids = ids[:k + 1]
                break
        if len(ids) < 6 or self.rng.random() >= self.well_formed:
            return ids
        open_id, close_id = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
        body = [t for t in ids if t not in ends and t not in (open_id, close_id)]
        n = len(ids) - 3  # <think>, </think> and <eos> take three places
        body = (body * (n // max(len(body), 1) + 1))[:n]
        m = max(1, (2 * n) // 3)
        return [open_id, *body[:m], close_id, *body[m:], tok.eos_token_id]


__all__ = ["FormatForcingRollout"]
