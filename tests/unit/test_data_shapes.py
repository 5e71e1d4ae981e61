"""ShapesWorld: determinism, grounding (boxes, masks), family mix, traces, export/HF round trips."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from saliency_r1.data import (ShapesWorldConfig, corpus, export, format_response, generate, load,
                              to_hf_dataset)
from saliency_r1.data._geometry import PALETTE
from saliency_r1.data.shapes import COLOUR_PRIOR, FAMILIES, SHAPE_PRIOR, _build_one
from saliency_r1.errors import InputError

CFG = ShapesWorldConfig()


def _raster(polygon, size) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas) > 0


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) if k == "image" else a[k] == b[k] for k in a)


def test_deterministic_per_seed_and_index():
    a, b = generate(CFG, 6, seed=3), generate(CFG, 6, seed=3)
    assert all(_same(x, y) for x, y in zip(a, b))
    # sample i depends on (seed, split, i) only, not on n
    assert _same(generate(CFG, 9, seed=3)[5], a[5])


def test_seeds_and_splits_differ():
    base = generate(CFG, 8, seed=0)
    other_seed = generate(CFG, 8, seed=1)
    other_split = generate(CFG, 8, seed=0, split="test")
    for other in (other_seed, other_split):
        assert sum(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(base, other)) == 0
    assert {s["id"] for s in base}.isdisjoint({s["id"] for s in other_split})


def _object_pixels(image: Image.Image) -> np.ndarray:
    """Pixels far from the (noisy, grey) background, or exactly the label ink: the objects."""
    arr = np.asarray(image, dtype=np.int16)
    ink = np.all(arr == 250, axis=-1) | np.all(arr == 20, axis=-1)
    return (np.abs(arr - np.asarray(CFG.background, dtype=np.int16)).max(axis=-1) > 40) | ink


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), index=st.integers(0, 50))
def test_boxes_and_masks_ground_the_objects(seed, index):
    objs, s = _build_one(CFG, seed, "train", index)
    size = (s["width"], s["height"])
    assert s["image"].size == size and s["answer"].strip()
    rasters = [_raster(o.polygon(), size) for o in objs]
    covered = np.any(rasters, axis=0)
    assert not np.any(_object_pixels(s["image"]) & ~covered), "object pixels outside every polygon"
    for obj, r in zip(objs, rasters):  # tight box of each object's pixels
        ys, xs = np.nonzero(r)
        assert obj.box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert len(s["boxes"]) == len(s["masks"])
    for box, mask in zip(s["boxes"], s["masks"]):
        x1, y1, x2, y2 = box
        r = _raster(mask, size)
        ys, xs = np.nonzero(r)
        assert xs.min() >= x1 and xs.max() + 1 <= x2 and ys.min() >= y1 and ys.max() + 1 <= y2
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in mask)
        assert np.all(_object_pixels(s["image"])[r]), "mask covers background"
        owner = [o for o in objs if o.box == box]
        assert len(owner) == 1
        for o in objs:
            if o is not owner[0]:
                cx, cy = o.centre
                assert not (x1 <= cx <= x2 and y1 <= cy <= y2), "another object's centre in the box"


def _dominant_colour(image, mask) -> str:
    pix = np.asarray(image)[_raster(mask, image.size)]
    rgb = Counter(map(tuple, pix)).most_common(1)[0][0]
    return next(name for name, c in PALETTE.items() if c == rgb)


def test_answers_agree_with_the_pixels():
    for s in generate(CFG, 150, seed=5):
        fam, variant = s["source"].split("/")[1:3]
        if fam == "attribute" and variant == "colour":
            assert _dominant_colour(s["image"], s["masks"][0]) == s["answer"]
        if fam == "counting":
            assert int(s["answer"]) == len(s["boxes"]) >= 1
        if fam == "spatial" and variant == "left_right":
            (a, _, a2, _), (b, _, b2, _) = s["boxes"]
            assert s["answer"] == ("left" if a + a2 < b + b2 else "right")
        if fam == "existence" and s["answer"] == "yes":
            assert s["boxes"]
        if fam == "reading":
            assert 1 <= len(s["answer"]) <= 3 and set(s["answer"]) <= set(CFG.label_alphabet)


def test_family_mix_honours_config():
    weights = {"attribute": 0.5, "existence": 0.2, "spatial": 0.1, "counting": 0.1, "odd_one_out": 0.1}
    cfg = ShapesWorldConfig(families=weights)
    n = 1000
    got = Counter(_build_one(cfg, 0, "train", i, draw=False)[1]["source"].split("/")[1] for i in range(n))
    assert set(got) == set(weights)  # reading has weight 0
    for name, w in weights.items():
        assert abs(got[name] / n - w) < 0.05, (name, got)
    only = ShapesWorldConfig(families={"counting": 1.0})
    assert {s["source"].split("/")[1] for s in generate(only, 10)} == {"counting"}


def test_every_family_and_trace_kind_is_generated():
    sources = [_build_one(CFG, 1, "train", i, draw=False)[1]["source"] for i in range(400)]
    assert {s.split("/")[1] for s in sources} == set(FAMILIES)
    assert {s.split("/")[3] for s in sources} == {"focused", "distracted"}
    assert {s.split("/")[2] for s in sources if "/existence/" in s} == {"random", "popular", "adversarial"}


def test_distracted_fraction_and_trace_content():
    focused = generate(ShapesWorldConfig(distracted_frac=0.0), 30, seed=2)
    distracted = generate(ShapesWorldConfig(distracted_frac=1.0), 30, seed=2)
    assert all(s["source"].endswith("/focused") for s in focused)
    assert all(s["source"].endswith("/distracted") for s in distracted)
    for f, d in zip(focused, distracted):  # same scene and question, the trace only grows
        assert f["question"] == d["question"] and f["reasoning"] in d["reasoning"]
        assert len(d["reasoning"]) > len(f["reasoning"])
    words = [len(s["reasoning"].split()) for s in generate(CFG, 300, seed=9)]
    assert max(words) <= 40


def test_pope_negatives():
    cfg = ShapesWorldConfig(families={"existence": 1.0}, existence_yes_frac=0.0)
    for i in range(120):
        objs, s = _build_one(cfg, 4, "train", i, draw=False)
        assert s["answer"] == "no"
        words = s["question"].rstrip("?").split()  # Is there a(n) <colour> <shape> in the image
        colour, shape = words[3], words[4]
        present = {(o.colour, o.shape) for o in objs}
        assert (colour, shape) not in present
        absent = [(c, x) for x in cfg.shapes for c in cfg.colours if (c, x) not in present]
        top = sorted(absent, key=lambda cs: -COLOUR_PRIOR[cs[0]] * SHAPE_PRIOR[cs[1]])[: cfg.pope_top_k]
        strategy = s["source"].split("/")[2]
        if strategy == "adversarial":
            assert shape in {o.shape for o in objs} and s["boxes"]
        if strategy == "popular":
            assert (colour, shape) in top
    yes = [s["answer"] for s in generate(ShapesWorldConfig(families={"existence": 1.0}), 200)]
    assert 0.4 < yes.count("yes") / len(yes) < 0.6


def test_format_response_and_corpus():
    assert format_response("It is red.", "red") == "<think>It is red.</think>red"
    texts = corpus(20, seed=7)
    samples = generate(CFG, 20, seed=7)
    assert texts == [s["question"] + "\n" + format_response(s["reasoning"], s["answer"]) for s in samples]


def test_export_round_trip(tmp_path):
    samples = generate(CFG, 5, seed=11)
    path = export(samples, tmp_path / "out")
    assert (tmp_path / "out" / "images").is_dir()
    res = load(path.parent, format="shapes")
    assert len(res.samples) == 5 and not res.skipped
    for a, b in zip(samples, res.samples):
        assert {k: a[k] for k in a if k != "image"} == {k: b[k] for k in b if k != "image"}
        assert np.array_equal(np.asarray(a["image"]), np.asarray(Image.open(b["image"]).convert("RGB")))


def test_to_hf_dataset():
    samples = generate(CFG, 3, seed=12)
    ds = to_hf_dataset(samples)
    assert type(ds.features["image"]).__name__ == "Image"
    row = ds[0]
    assert row["image"].size == (168, 168) and row["boxes"] == samples[0]["boxes"]
    assert row["masks"] == samples[0]["masks"] and row["question"] == samples[0]["question"]


def test_config_help_and_validation():
    assert all(f.metadata.get("help") for f in dataclasses.fields(ShapesWorldConfig))
    for bad in ({"shapes": ("circle", "hexagon")}, {"families": {"poetry": 1.0}}, {"min_objects": 6},
                {"distracted_frac": 1.5}, {"shape_weights": (1.0, 2.0)}, {"width": 40, "height": 40}):
        with pytest.raises(InputError):
            ShapesWorldConfig(**bad)
    with pytest.raises(InputError):
        generate(CFG, 1, seed=-1)
    small = ShapesWorldConfig(width=224, height=112, shapes=("circle", "square"), colours=("red", "blue"))
    assert all(s["image"].size == (224, 112) for s in generate(small, 12))
