"""Per-example evaluation of faithfulness (Table 1) and pointing (Table 3), and the resumable loops.

Faithfulness of one sample: the model's own response (``response="generated"``: greedy generation;
``"reference"``: the sample's ``<think>reasoning</think>answer`` teacher-forced, for untrained
models that emit no tags), the two anchors (original, blank), then every method's map and its
deletion/insertion scores. Pointing of one sample: generate, check the format and the answer, then
energy-PG / PG of each method's map against the sample's boxes (:func:`saliency_r1.scoring.score_map`,
area upsampling).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..attribution.inputs import open_image, prompt_inputs
from ..errors import InputError
from ..grammar import extract_answer, format_response, is_correct, well_formed
from ..scoring import score_map
from .common import prepare
from .faithfulness import FaithfulnessConfig, deletion_insertion, reference
from .methods import compute_maps
from .records import append_record, pending, read_records

RESPONSES = ("generated", "reference")


def own_response(smodel, sample: dict, response: str = "generated", **generate_kwargs: Any
                 ) -> tuple[list[int], float]:
    """The response ids to explain and score, and the generation time (0 for ``reference``)."""
    if response == "reference":
        ex = prepare(smodel, sample["image"], sample["question"],
                     format_response(sample.get("reasoning"), sample["answer"]))
        return ex.ids, 0.0
    if response != "generated":
        raise InputError(f"unknown response mode {response!r}; use one of {', '.join(RESPONSES)}")
    image = open_image(sample["image"], min_side=smodel.patch_pixels)
    t0 = time.perf_counter()
    ids = smodel.generate(prompt_inputs(smodel.processor, [image], sample["question"]), **generate_kwargs)
    if not ids:
        raise InputError("the model generated an empty response; raise max_new_tokens")
    return ids, time.perf_counter() - t0


def faithfulness_record(smodel, sample: dict, methods: list[str], config: FaithfulnessConfig,
                        response: str = "generated", target: str = "answer", **generate_kwargs: Any) -> dict:
    """Deletion/insertion of every method on one sample; a JSON-ready record."""
    ids, gen_s = own_response(smodel, sample, response, **generate_kwargs)
    q = sample["question"]
    ref = reference(smodel, sample["image"], q, ids, config)
    rec: dict[str, Any] = {"id": str(sample["id"]), "source": sample.get("source"), "response_ids": ids,
                           "response_text": smodel.processor.tokenizer.decode(ids, skip_special_tokens=True),
                           "generate_s": gen_s, "ll_original": ref.ll_original, "ll_blank": ref.ll_blank,
                           "gap": ref.ll_original - ref.ll_blank,
                           "degenerate": abs(ref.ll_original - ref.ll_blank) < config.min_gap, "methods": {}}
    ex = prepare(smodel, ref.image, q, ids)
    resized = (ex.grids[0][1] * smodel.patch_pixels, ex.grids[0][0] * smodel.patch_pixels)
    for name in methods:
        got = compute_maps(smodel, name, ref.image, q, ids, target=target)
        m: dict[str, Any] = {"seconds": got["seconds"], "skipped": got["skipped"], "fallback": got["fallback"]}
        if got["maps"] is not None:
            m.update(deletion_insertion(smodel, ref, q, ids, got["maps"][0], resized, config))
            m.pop("ll", None)
        rec["methods"][name] = m
    return rec


def check_response(text: str, answer: str) -> tuple[bool, bool, str]:
    """``(format_ok, correct, predicted answer)`` of a decoded response, by the training rewards' rules
    (:mod:`saliency_r1.grammar`: R_format's strict rule, R_accuracy's normalised match).

    >>> check_response("<think>it is red</think> Red.", "red")
    (True, True, 'Red.')
    """
    return well_formed(text), is_correct(text, str(answer)), extract_answer(text)


def pointing_record(smodel, sample: dict, methods: list[str], response: str = "generated", target: str = "answer",
                    **generate_kwargs: Any) -> dict:
    """Energy-PG and PG of each method's map on one sample, plus format and accuracy of the response."""
    if not sample.get("boxes"):
        raise InputError(f"sample {sample.get('id')!r} has no boxes: pointing needs evidence boxes")
    ids, gen_s = own_response(smodel, sample, response, **generate_kwargs)
    text = smodel.processor.tokenizer.decode(ids, skip_special_tokens=False)
    end = smodel.processor.tokenizer.eos_token
    fmt, correct, pred = check_response(text.split(end)[0] if end else text, sample["answer"])
    if response == "reference":  # the reference is well formed and correct by construction
        fmt = correct = None
    image = open_image(sample["image"], min_side=smodel.patch_pixels)
    ex = prepare(smodel, image, sample["question"], ids)
    resized = (ex.grids[0][1] * smodel.patch_pixels, ex.grids[0][0] * smodel.patch_pixels)
    rec: dict[str, Any] = {"id": str(sample["id"]), "source": sample.get("source"), "response_text": text,
                           "prediction": pred, "answer": sample["answer"], "format_ok": fmt, "correct": correct,
                           "generate_s": gen_s, "methods": {}}
    for name in methods:
        got = compute_maps(smodel, name, image, sample["question"], ids, target=target)
        m: dict[str, Any] = {"seconds": got["seconds"], "skipped": got["skipped"], "fallback": got["fallback"]}
        if got["maps"] is not None:
            m.update(score_map(got["maps"][0], image.size, resized, boxes=sample["boxes"]))
        rec["methods"][name] = m
    return rec


def run_loop(samples: list[dict], out_dir, n: int | None, make_record: Callable[[dict], dict],
             progress: bool = True, desc: str = "eval") -> list[dict]:
    """Score the samples not yet in ``out_dir``'s records (first ``n``), appending as it goes.

    Returns all the records (old and new) of the first ``n`` samples, in sample order.
    """
    from tqdm.auto import tqdm

    old = read_records(out_dir)
    done = {str(r["id"]) for r in old}
    todo = list(pending(samples, done, n))
    for sample in tqdm(todo, desc=desc, disable=not progress, unit="ex"):
        append_record(out_dir, make_record(sample))
    wanted = [str(s["id"]) for s in (samples[:n] if n is not None else samples)]
    by_id = {str(r["id"]): r for r in read_records(out_dir)}
    return [by_id[i] for i in wanted if i in by_id]


__all__ = ["RESPONSES", "own_response", "faithfulness_record", "check_response", "pointing_record", "run_loop"]
