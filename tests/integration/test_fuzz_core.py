"""Property tests of the core: any image size, any response string, any batch composition.

Invariants: no exception other than the project's documented errors; maps finite and non-negative;
holistic present exactly when the spans exist; scores in [0, 1]; batch equals one-by-one.
``SALIENCY_R1_LONG_FUZZ=1`` runs many more examples.
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image
import saliency_r1
from saliency_r1.errors import SaliencyR1Error

LONG = os.environ.get("SALIENCY_R1_LONG_FUZZ") == "1"
FUZZ = settings(max_examples=400 if LONG else 12, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

pieces = st.sampled_from(["<think>", "</think>", "red", " the circle", " is", "\n", " ", "é", "🙂", "<b>",
                          "yes", "2", ".", "<|im_end|>", "<answer>", "</answer>"])
responses = st.lists(pieces, min_size=1, max_size=24).map("".join)


@FUZZ
@given(w=st.integers(28, 400), h=st.integers(28, 400))
def test_any_image_size(tiny, w, h):
    res = tiny.explain(make_image(w, h, seed=w * h), "What colour?", response="<think>a red one</think>red")
    gh, gw = res.grids[0]
    assert gh * gw == res.contributions.shape[1] >= 1
    rw, rh = res.resized_sizes[0]
    assert rw == gw * res.patch_pixels and rh == gh * res.patch_pixels
    for m in (res.holistic[0], res.token_maps[0]):
        assert torch.isfinite(m).all() and (m >= 0).all()
    s = saliency_r1.score(res, boxes=[[0, 0, w / 2, h / 2]])
    assert 0.0 <= s["energy_pg"] <= 1.0 and s["pg"] in (0.0, 1.0)


@FUZZ
@given(text=responses)
def test_any_response_string(tiny, text):
    try:
        res = tiny.explain(make_image(112, 84), "Q?", response=text)
    except SaliencyR1Error:
        assert not text.strip()  # only the empty response is refused
        return
    has_spans = res.think_span is not None and res.answer_span is not None
    assert (res.holistic is not None) == has_spans
    assert (res.holistic_reason is None) == has_spans
    assert torch.isfinite(res.contributions).all()
    for maps in (res.holistic, res.think, res.answer, res.attn):
        for m in maps or []:
            assert torch.isfinite(m).all() and (m >= 0).all()
    if res.think_span:
        assert res.response_start <= res.think_span[0] < res.think_span[1] <= len(res.input_ids)


@settings(max_examples=60 if LONG else 4, deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.integers(56, 196), st.integers(56, 196), responses), min_size=1, max_size=3))
def test_any_batch_equals_one_by_one(tiny, rows):
    from saliency_r1.attribution.batch import teacher_forced
    from saliency_r1.attribution.inputs import prompt_inputs, response_ids
    from saliency_r1.attribution.maps import holistic_maps

    sm, eos = tiny, tiny.processor.tokenizer.eos_token_id
    rows = [r for r in rows if r[2].strip()]
    if not rows:
        return
    prompts = [prompt_inputs(sm.processor, [make_image(w, h, seed=w)], "Q?") for w, h, _ in rows]
    resps = [response_ids(sm.processor, r, eos) for _, _, r in rows]
    singles = []
    for p, r in zip(prompts, resps):
        rs = p["input_ids"].shape[1]
        singles.append(holistic_maps(sm.model, sm.spec, teacher_forced(p, r), [rs], [sm.spans(r).shifted(rs)])[0])
    P, C = max(p["input_ids"].shape[1] for p in prompts), max(len(r) for r in resps)
    pad = sm.processor.tokenizer.pad_token_id
    cols = {"input_ids": [], "attention_mask": [], "mm_token_type_ids": []}
    for p, r in zip(prompts, resps):
        lp, lc = P - p["input_ids"].shape[1], C - len(r)
        z = lambda n: torch.zeros(n, dtype=torch.long)  # noqa: E731
        cols["input_ids"].append(torch.cat([z(lp) + pad, p["input_ids"][0], torch.tensor(r), z(lc) + pad]))
        cols["attention_mask"].append(torch.cat([z(lp), p["attention_mask"][0], z(len(r)) + 1, z(lc)]))
        cols["mm_token_type_ids"].append(torch.cat([z(lp), p["mm_token_type_ids"][0], z(C)]))
    batch = {k: torch.stack(v) for k, v in cols.items()}
    batch["pixel_values"] = torch.cat([p["pixel_values"] for p in prompts])
    batch["image_grid_thw"] = torch.cat([p["image_grid_thw"] for p in prompts])
    batched = holistic_maps(sm.model, sm.spec, batch, [P] * len(rows), [sm.spans(r).shifted(P) for r in resps])
    for one, many in zip(singles, batched):
        assert (one is None) == (many is None)
        if one is not None:
            assert torch.allclose(one[0], many[0], rtol=1e-4, atol=1e-6)
