"""The precondition diagnostic (saliency_r1.evaluation.precondition) on the tiny model: properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliency_r1.data import ShapesWorldConfig
from saliency_r1.errors import InputError
from saliency_r1.evaluation.precondition import (Trace, diagnose, normalised_entropy, object_cases, precondition_markdown,
                                                 probe, shapes_mentions, shapes_pairs)

WORLD = ShapesWorldConfig(width=112, height=112, min_objects=2, max_objects=3, small_size=(36, 46),
                          large_size=(36, 46), shapes=("square", "diamond"), colours=("red", "green", "blue", "yellow"),
                          families={"attribute": 1.0})


@pytest.fixture(scope="module")
def pairs(tiny):
    return shapes_pairs(tiny.processor.tokenizer, WORLD, 4, seed=5)


@pytest.fixture(scope="module")
def result(tiny, pairs):
    return diagnose(tiny, pairs)


def test_shares_entropy_and_gaps_are_in_range(result, pairs):
    r = result
    assert len(r.own) == sum(len(t.mentions) for pair in pairs for t in pair) > 0
    for a in (r.own, r.chance, r.best_other[~np.isnan(r.best_other)], r.entropy, r.attention_tv):
        assert ((a >= -1e-9) & (a <= 1 + 1e-9)).all()
    assert set(r.focus) == {"full", "think", "answer", "attn"}
    for s in r.focus.values():
        assert 0 <= s["all_zero"] <= 1 and 0 <= s["focused_wins"] <= 1 and s["n"] == len(pairs)
    assert "(a) share / chance" in precondition_markdown(r)


def test_chance_is_the_box_area_share(result, pairs):
    boxes = [t.objects[k] for pair in pairs for t in pair for _, k in t.mentions]
    area = [(b[2] - b[0]) * (b[3] - b[1]) / (WORLD.width * WORLD.height) for b in boxes]
    np.testing.assert_allclose(result.chance, area, atol=1e-9)


def test_full_row_matches_the_reward(result):
    """(d)'s full holistic map scored here equals the reward's own focused-vs-distracted test ((c), full)."""
    for k in ("focused", "distracted", "gap"):
        assert result.decomposition["holistic"][k] == pytest.approx(result.focus["full"][k], abs=1e-6)


def test_value_logit_factor_cannot_see_the_reasoning(tiny, pairs):
    """With a one-token answer the value x logit factor differs between two traces only through σ, a scalar
    that the energy-PG normalises away: its map's energy is the same whatever the reasoning."""
    t = pairs[0][0]
    one = "<think>It is red.</think>2"  # '2' is one token for the tiny tokenizer
    answer = tiny.spans(tiny.processor.tokenizer(one)["input_ids"]).answer
    assert answer[1] - answer[0] == 1
    a = probe(tiny, Trace(t.image, t.question, one, t.evidence, t.objects))
    b = probe(tiny, Trace(t.image, t.question, "<think>I see a blue square. The object is red.</think>2",
                          t.evidence, t.objects))
    va, vb = a.maps["value_logit"], b.maps["value_logit"]
    np.testing.assert_allclose(va / va.sum(), vb / vb.sum(), atol=1e-6)
    assert np.abs(a.maps["holistic"] / a.maps["holistic"].sum() - b.maps["holistic"] / b.maps["holistic"].sum()).max() > 1e-4


def test_uniform_attention_gives_entropy_one_and_ratio_one(tiny_dir, pairs):
    from saliency_r1 import load_model

    m = load_model(tiny_dir)
    with torch.no_grad():
        for layer in m.hf.model.language_model.layers:
            layer.self_attn.q_proj.weight.zero_()  # q = 0: every row of the softmax is uniform over its keys
            if layer.self_attn.q_proj.bias is not None:
                layer.self_attn.q_proj.bias.zero_()
    pr = probe(m, pairs[0][1])
    np.testing.assert_allclose(normalised_entropy(pr.think_attn), 1.0, atol=1e-9)
    own, chance, _ = np.array(pr.cases).T
    np.testing.assert_allclose(own / chance, 1.0, atol=1e-9)


def test_object_cases_by_hand():
    p = np.zeros((1, 4))
    p[0, 0] = 1.0  # all attention on the top-left cell
    objs = [[0, 0, 28, 28], [28, 28, 56, 56], [0, 28, 28, 56]]
    assert object_cases(p, (2, 2), (56, 56), objs, [((0, 1), 0), ((0, 1), 1)]) == [(1.0, 0.25, 0.0), (0.0, 0.25, 1.0)]
    assert normalised_entropy(np.full((1, 16), 1 / 16))[0] == pytest.approx(1.0)


def test_mentions_name_unique_words_inside_the_thinking(tiny):
    tok = tiny.processor.tokenizer
    objs = [{"shape": "square", "colour": "red"}, {"shape": "square", "colour": "blue"}]
    resp = "<think>I see a red square and a blue square. It is red.</think>red"
    spans = shapes_mentions(tok, resp, objs)
    ids = tok(resp, add_special_tokens=False)["input_ids"]
    words = [(tok.decode(ids[a:b]).strip(), k) for (a, b), k in spans]
    assert words == [("red", 0), ("blue", 1), ("red", 0)]  # 'square' is shared, the answer is outside <think>


def test_mentions_outside_the_thinking_are_refused(tiny, pairs):
    t = pairs[0][0]
    bad = Trace(t.image, t.question, t.response, t.evidence, t.objects, [((0, 1), 0)])  # (0, 1): <think> itself
    with pytest.raises(InputError, match="outside the thinking span"):
        probe(tiny, bad)


def test_cli_writes_the_table(tiny_dir, tmp_path, capsys):
    from saliency_r1.cli.main import main

    out = tmp_path / "pre"
    assert main(["eval", "precondition", "--model", str(tiny_dir), "--out", str(out), "--n", "3", "--seed", "7"]) == 0
    md = (out / "precondition.md").read_text()
    assert "split validation" in md and "(a) share / chance" in md and "(d) value x logit factor alone" in md
    assert main(["eval", "precondition", "--model", str(tiny_dir), "--out", str(out), "--n", "1"]) == 2
    assert "--n must be >= 2" in capsys.readouterr().err


def test_layer_terms_sum_to_the_holistic_map(tiny, pairs):
    """(e): the per-layer pre-ReLU holistic maps add up to the map (one answer token: ReLU of their sum), and
    the three regions (evidence, other objects, rest) partition each layer's mass."""
    from saliency_r1.evaluation.precondition import layer_mass, region_weights

    t = pairs[0][0]
    one = "<think>It is red.</think>2"  # '2' is one token for the tiny tokenizer
    pr = probe(tiny, Trace(t.image, t.question, one, t.evidence, t.objects))
    mass = layer_mass(pr, Trace(t.image, t.question, one, t.evidence, t.objects))
    assert mass.shape == (tiny.hf.config.text_config.num_hidden_layers, 3)
    from saliency_r1.attribution.batch import build_batch
    from saliency_r1.attribution.inputs import open_image, prompt_inputs, response_ids
    from saliency_r1.attribution.maps import trace_batch
    from saliency_r1.grammar import end_of_turn_id

    image = open_image(t.image, min_side=tiny.patch_pixels)
    ids = response_ids(tiny.processor, one, end_of_turn_id(tiny.processor.tokenizer))
    ex = trace_batch(tiny.model, tiny.spec, build_batch([prompt_inputs(tiny.processor, [image], t.question)], [ids],
                                                        [tiny.spans(ids)], 0, tiny.merge_size))[0]
    layers = ex.holistic_layers.double()
    torch.testing.assert_close(layers.sum(0).clamp_min(0), ex.holistic.double(), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(pr.layers, layers.numpy(), atol=1e-12)
    np.testing.assert_allclose(mass.sum(1), layers.sum(1).numpy(), atol=1e-9)
    w = region_weights(ex.grids[0], image.size, t.objects)
    assert ((w >= 0) & (w <= 1)).all() and w.sum() > 0
