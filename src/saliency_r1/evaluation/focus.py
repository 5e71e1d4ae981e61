"""Does the saliency reward prefer focused reasoning? The premise of the paper's Fig. 1 and §3.3, measured.

Saliency-R1 can only steer a policy through the text it samples: GRPO raises the likelihood of completions
with high reward. The paper's story is that reasoning which also describes irrelevant objects (*distracted*)
spreads the holistic map over them, so R_saliency = energy-PG is lower than for *focused* reasoning about the
evidence, and GRPO learns to reason in a focused way. This module tests that premise on a given model.

For ShapesWorld scenes, the same image and question are teacher-forced twice with the same answer: once with
the focused trace and once with the distracted one (:func:`saliency_r1.data.generate` with
``distracted_frac`` 0 and 1 and the same seed give the same scene and question; the focused sample's image is
used for both). Each gets the saliency reward (:class:`saliency_r1.rewards.SaliencyReward`). Reported: the
mean reward of each kind, the mean paired gap ``focused - distracted`` with its standard error, and the
fraction of pairs where the focused trace scores higher. A gap near 0 means the reward cannot tell the two
kinds of reasoning apart on this model, so GRPO has no reason to make the reasoning more focused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import InputError


def paired_traces(config: Any, n: int, seed: int = 0, split: str = "test") -> list[tuple[dict, str, str]]:
    """``(sample, focused_response, distracted_response)`` for the first ``n`` scenes with evidence boxes.

    >>> from saliency_r1.data import ShapesWorldConfig
    >>> s, f, d = paired_traces(ShapesWorldConfig(families={"attribute": 1.0}), 1)[0]
    >>> f.endswith("</think>" + s["answer"]) and d.endswith("</think>" + s["answer"]) and f != d
    True
    """
    from ..data import ShapesWorldConfig, generate

    cfg = config if config is not None else ShapesWorldConfig()
    focused = generate(dataclasses.replace(cfg, distracted_frac=0.0), n, seed=seed, split=split)
    distracted = generate(dataclasses.replace(cfg, distracted_frac=1.0), n, seed=seed, split=split)
    out = []
    for f, d in zip(focused, distracted):
        if not f["boxes"] or (f["question"], f["answer"]) != (d["question"], d["answer"]):
            continue
        out.append((f, f"<think>{f['reasoning']}</think>{f['answer']}", f"<think>{d['reasoning']}</think>{d['answer']}"))
    return out


def focus_gap(model: Any, pairs: list[tuple[dict, str, str]], variant: str = "full") -> dict[str, float]:
    """Saliency reward of focused vs distracted reasoning on the same scenes (module docstring).

    ``model``: a :class:`~saliency_r1.SaliencyModel` (``load_model(...)``). Returns ``{"n", "focused",
    "distracted", "gap", "gap_se", "focused_wins"}`` (rewards in [0, 1]; ``focused_wins`` counts ties as half).

    >>> import tempfile
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> from saliency_r1.data import ShapesWorldConfig
    >>> m = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> r = focus_gap(m, paired_traces(ShapesWorldConfig(families={"attribute": 1.0}), 2))
    >>> r["n"], 0.0 <= r["focused"] <= 1.0, -1.0 <= r["gap"] <= 1.0
    (2, True, True)
    """
    from ..attribution.inputs import user_turn
    from ..rewards import SaliencyReward

    if not pairs:
        raise InputError("no focused/distracted pairs to score; pass ShapesWorld scenes with evidence boxes")
    reward = SaliencyReward(variant, model=model.model, processor=model.processor, batch_size=8)
    rows = [(sample, response) for sample, f, d in pairs for response in (f, d)]  # each scene's two rows adjacent
    r = reward([user_turn(1, s["question"]) for s, _ in rows], [resp for _, resp in rows], None,
               image=[s["image"] for s, _ in rows], boxes=[s["boxes"] for s, _ in rows])
    scored = [(a, b) for a, b in zip(r[::2], r[1::2]) if a is not None and b is not None]
    if not scored:
        raise InputError("no pair could be scored (every row lacked usable evidence)")
    return paired_stats([a for a, _ in scored], [b for _, b in scored])


def paired_stats(focused, distracted) -> dict[str, float]:
    """Paired comparison of two scores per scene: ``{"n", "focused", "distracted", "gap", "gap_se",
    "focused_wins"}`` with ``gap = mean(focused - distracted)``, its standard error (ddof 1; 0 for one
    pair) and the fraction of pairs the focused trace wins (ties count half).

    >>> r = paired_stats([0.5, 0.3, 0.2], [0.1, 0.3, 0.4])
    >>> r["n"], round(r["gap"], 3), r["focused_wins"]
    (3, 0.067, 0.5)
    """
    foc, dis = np.asarray(focused, dtype=float), np.asarray(distracted, dtype=float)
    if foc.shape != dis.shape or foc.ndim != 1 or not len(foc):
        raise InputError(f"paired scores need two equal, non-empty lists; got {foc.shape} and {dis.shape}")
    gap = foc - dis
    return {"n": len(foc), "focused": float(foc.mean()), "distracted": float(dis.mean()),
            "gap": float(gap.mean()), "gap_se": float(gap.std(ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else 0.0,
            "focused_wins": float(np.mean((gap > 0) + 0.5 * (gap == 0)))}


__all__ = ["paired_traces", "focus_gap", "paired_stats"]
