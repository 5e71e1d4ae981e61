"""The authors' recipe as options (issue 13, Deliver 2): each option changes the map exactly as specified on a
hand-checkable case, and the defaults (the paper's definitions) are unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import make_image
from saliency_r1.attribution.decompose import TraceOutput
from saliency_r1.attribution.maps import build_plan, split_examples
from saliency_r1.errors import InputError
from saliency_r1.grammar import Spans
from saliency_r1.rewards import SaliencyReward
from saliency_r1.scoring import authors_box_bug, score_grid
from saliency_r1.training.grpo_config import load_run_config

Q = "What colour is the circle?"
MULTI = "<think>The circle is red and the square is blue.</think>the red circle"  # several answer tokens


def _hand_trace(relu: str):
    """One example: response = [think, think, answer, answer] at positions 4..7, two visual tokens (0, 1).

    Contributions of the two answer rows: [2, -1] and [-1, 3]; their bottleneck rows the same numbers."""
    ids = torch.tensor([[9, 9, 1, 1, 5, 5, 6, 6]])
    mask = torch.ones(1, 8, dtype=torch.long)
    spans = [Spans((4, 6), (6, 8))]
    plan = build_plan(ids, mask, [4], spans, image_token_id=9)
    c = torch.tensor([[[0.5, 0.5], [1.0, -4.0], [2.0, -1.0], [-1.0, 3.0]]])  # (B, R, V): rows of tokens 4..7
    out = TraceOutput(contributions=c, holistic=c[:, 2:].clone(), attn=c[:, 2:].abs(), sigma=torch.ones(1, 4),
                      target_logits=torch.zeros(1, 4))
    return split_examples(out, plan, spans, [4], [[(1, 2)]], relu=relu)[0]


def test_relu_placement_by_hand():
    per, after = _hand_trace("per_token"), _hand_trace("after_sum")
    assert per.holistic.tolist() == [2.0, 3.0] and after.holistic.tolist() == [1.0, 2.0]  # ΣReLU vs ReLU(Σ)
    assert per.answer.tolist() == [2.0, 3.0] and after.answer.tolist() == [1.0, 2.0]
    assert per.think.tolist() == [1.5, 0.5] and after.think.tolist() == [1.5, 0.0]
    assert torch.equal(per.attn, after.attn) and torch.equal(per.contributions, after.contributions)
    with pytest.raises(InputError, match="relu"):
        _hand_trace("sum")


def test_think_query_offset_moves_the_first_hop_only():
    ids, mask, spans = torch.tensor([[9, 9, 1, 5, 5, 5, 6, 2]]), torch.ones(1, 8, dtype=torch.long), [Spans((3, 6), (6, 7))]
    paper = build_plan(ids, mask, [3], spans, 9)
    authors = build_plan(ids, mask, [3], spans, 9, think_query_offset=-1)
    assert paper.think_q.tolist() == [[3, 4, 5]] and authors.think_q.tolist() == [[2, 3, 4]]
    assert torch.equal(paper.think_k, authors.think_k) and torch.equal(paper.rows, authors.rows)


def test_explain_options_change_only_what_they_name(tiny):
    image = make_image(168, 112)
    base = tiny.explain(image, Q, response=MULTI)
    same = tiny.explain(image, Q, response=MULTI, relu="per_token", think_query_offset=0)
    assert all(torch.equal(a, b) for a, b in zip(base.holistic, same.holistic))  # the defaults are the paper's
    a0, a1 = base.answer_span[0] - base.response_start, base.answer_span[1] - base.response_start
    assert a1 - a0 >= 2  # a multi-token answer: the ReLU placement matters
    after = tiny.explain(image, Q, response=MULTI, relu="after_sum")
    raw = base.contributions[a0:a1]  # (A, V)
    assert torch.allclose(base.answer[0].flatten(), raw.clamp_min(0).sum(0))
    assert torch.allclose(after.answer[0].flatten(), raw.sum(0).clamp_min(0))
    assert (after.holistic[0] <= base.holistic[0] + 1e-6).all()  # ReLU(Σ) <= Σ ReLU
    assert all(torch.equal(a, b) for a, b in zip(base.token_maps, after.token_maps))
    shifted = tiny.explain(image, Q, response=MULTI, think_query_offset=-1)
    assert torch.equal(shifted.contributions, base.contributions)  # §1 maps are not the bottleneck's
    assert all(torch.equal(a, b) for a, b in zip(shifted.think, base.think))
    assert not torch.allclose(shifted.holistic[0], base.holistic[0])
    with pytest.raises(InputError, match="think_query_offset"):
        tiny.explain(image, Q, response=MULTI, think_query_offset=1)


def test_authors_box_bug_by_hand_and_in_the_reward(tiny):
    assert authors_box_bug([[0, 0, 56, 28]], (168, 112)) == [[0.0, 0.0, 56.0, 42.0]]  # y2 * W / H
    assert authors_box_bug([[0, 0, 56, 112]], (168, 112)) == [[0.0, 0.0, 56.0, 112.0]]  # clipped to the image
    image = make_image(168, 112)
    prompt = [[{"role": "user", "content": Q}]]
    tok = tiny.processor.tokenizer
    ids = tok(MULTI, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    box = [[[0, 0, 56, 28]]]
    plain = SaliencyReward("full", model=tiny.model, processor=tiny.processor)(prompt, [MULTI], [ids], image=[image],
                                                                            boxes=box)
    bug = SaliencyReward("full", model=tiny.model, processor=tiny.processor, authors_box_bug=True)(
        prompt, [MULTI], [ids], image=[image], boxes=box)
    grid = tiny.explain(image, Q, response=MULTI).holistic[0].numpy()
    assert plain[0] == pytest.approx(score_grid(grid, (168, 112), [[0, 0, 56, 28]]), abs=1e-5)
    assert bug[0] == pytest.approx(score_grid(grid, (168, 112), [[0, 0, 56, 42]]), abs=1e-5)


def test_reward_options_match_explain(tiny):
    image = make_image(168, 112)
    prompt = [[{"role": "user", "content": Q}]]
    tok = tiny.processor.tokenizer
    ids = tok(MULTI, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    box = [[[0, 0, 84, 112]]]
    got = SaliencyReward("full", model=tiny.model, processor=tiny.processor, relu="after_sum",
                         think_query_offset=-1)(prompt, [MULTI], [ids], image=[image], boxes=box)
    res = tiny.explain(image, Q, response=MULTI, relu="after_sum", think_query_offset=-1)
    assert got[0] == pytest.approx(score_grid(res.holistic[0].numpy(), (168, 112), box[0]), abs=1e-5)


def test_authors_variant_config_and_defaults():
    cfg = load_run_config("src/saliency_r1/configs/variants/authors.yaml").rewards
    assert (cfg.relu, cfg.think_query_offset, cfg.authors_box_bug) == ("after_sum", -1, True)
    paper = load_run_config("src/saliency_r1/configs/grpo_shapes.yaml").rewards
    assert (paper.relu, paper.think_query_offset, paper.authors_box_bug) == ("per_token", 0, False)


def test_cli_explain_flags_listed():
    out = subprocess.run([sys.executable, "-c", "from saliency_r1.cli.main import main; main()", "explain", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert "--relu" in out.stdout and "--think-query-offset" in out.stdout and "--authors-box-bug" in out.stdout
