"""Quick held-out check of a (tiny) model: answer accuracy per question family, format rate, and how well its
holistic maps point at the evidence (energy-PG and PG, method.md §3) against a uniform map.

Uniform baseline: a uniform map has energy-PG = (evidence area / image area), and its arg-max is undefined,
so its PG is taken as the expected PG of a uniformly random pixel, which is the same area fraction. Both are
reported as ``uniform`` (the mean over the scored samples).

Accuracy, format and the predicted answer use the rewards' own rules (:mod:`saliency_r1.grammar`):
``correct`` = :func:`~saliency_r1.grammar.is_correct` (R_accuracy's normalised match of the answer after
the last ``</think>``), ``format`` = :func:`~saliency_r1.grammar.well_formed` (R_format's strict rule:
non-blank reasoning, exactly one ``<think>…</think>`` block, then a non-blank answer).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..grammar import extract_answer, is_correct, well_formed


def family_of(source: str) -> str:
    """Question family of a sample: ``shapes/attribute/colour/focused`` -> ``attribute``; other sources as is.

    >>> family_of("shapes/existence/popular/focused"), family_of("visual_cot/gqa")
    ('existence', 'visual_cot/gqa')
    """
    parts = str(source).split("/")
    return parts[1] if parts[0] == "shapes" and len(parts) > 1 else str(source)


def uniform_baseline(image_size: tuple[int, int], boxes: Any) -> float:
    """Energy-PG of a uniform map = expected PG of a uniformly random pixel = evidence area / image area.

    >>> uniform_baseline((4, 2), [[0, 0, 2, 2]])
    0.5
    """
    from ..scoring import region_mask

    return float(region_mask(image_size, boxes=boxes).mean())


def score_one(model, sample: dict, max_new_tokens: int) -> dict[str, Any]:
    """Generate (greedy) and explain one sample; its correctness, format and pointing scores."""
    from ..data import is_distracted
    from ..scoring import score_map

    res = model.explain(sample["image"], sample["question"], max_new_tokens=max_new_tokens, do_sample=False)
    text = res.response_text
    rec = {"id": sample.get("id"), "family": family_of(sample.get("source", "")), "response": text,
           "answer": sample["answer"], "prediction": extract_answer(text), "format": well_formed(text),
           "tokens": int(len(res.response_ids)), "holistic": res.holistic is not None,
           "distracted": is_distracted(text)}
    rec["correct"] = is_correct(text, sample["answer"])
    if sample.get("boxes"):
        size = res.image_sizes[0]
        rec["uniform"] = uniform_baseline(size, sample["boxes"])
        if res.holistic is not None:
            s = score_map(res.holistic[0], size, res.resized_sizes[0], boxes=sample["boxes"])
            rec["energy_pg"], rec["pg"] = float(s["energy_pg"]), float(s["pg"])
        else:  # no holistic map (broken format): scores 0, as the saliency reward does
            rec["energy_pg"], rec["pg"] = 0.0, 0.0
    return rec


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over records: accuracy, format rate, holistic rate, energy-PG, PG, uniform, response tokens, and
    the rate of responses with a sentence about irrelevant objects (:func:`saliency_r1.data.is_distracted`).

    >>> summarise([{"correct": True, "format": True, "holistic": True, "tokens": 4}])["accuracy"]
    1.0
    """
    def mean(key: str, rows: list[dict]) -> float | None:
        vals = [float(r[key]) for r in rows if key in r]
        return float(np.mean(vals)) if vals else None

    return {"n": len(records), "accuracy": mean("correct", records), "format_rate": mean("format", records),
            "holistic_rate": mean("holistic", records), "energy_pg": mean("energy_pg", records),
            "pg": mean("pg", records), "uniform": mean("uniform", records),
            "n_scored": sum("pg" in r for r in records), "mean_response_tokens": mean("tokens", records),
            "distracted_rate": mean("distracted", records)}


def accuracy_and_pointing(model_dir, samples: list[dict], max_new_tokens: int = 64) -> dict[str, Any]:
    """Greedy answers and holistic maps of ``samples``, scored overall and per family.

    ``model_dir``: a checkpoint directory or an already loaded :class:`~saliency_r1.SaliencyModel`.
    Accuracy and format: the rewards' rules (module docstring). Pointing: mean
    energy-PG and PG of the holistic map over the samples with boxes, ``uniform`` the uniform map's value
    (module docstring). Returns ``{"n", "accuracy", "format_rate", "holistic_rate", "energy_pg", "pg",
    "uniform", "n_scored", "mean_response_tokens", "distracted_rate", "per_family": {family: same keys},
    "seconds"}``; one sample's record is :func:`score_one`.

    >>> import tempfile
    >>> from saliency_r1.data import generate
    >>> from saliency_r1.models.tiny import tiny_checkpoint
    >>> r = accuracy_and_pointing(tiny_checkpoint(tempfile.mkdtemp() + "/t"), generate(None, 1), max_new_tokens=4)
    >>> r["n"], sorted(r["per_family"]) == sorted({s["source"].split("/")[1] for s in generate(None, 1)})
    (1, True)
    """
    from .. import load_model

    if not samples:
        raise InputError("no samples to evaluate; pass at least one sample")
    model = load_model(model_dir) if isinstance(model_dir, (str, Path)) else model_dir
    t0 = time.perf_counter()
    records = [score_one(model, s, max_new_tokens) for s in samples]
    by_family: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_family[r["family"]].append(r)
    out = summarise(records)
    out["per_family"] = {k: summarise(v) for k, v in sorted(by_family.items())}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


__all__ = ["accuracy_and_pointing", "score_one", "summarise", "family_of", "uniform_baseline"]
