"""Evaluation: baselines, deletion/insertion, the planted-patch toy, captum parity, resumable CLI.

The planted toy (``planted`` fixture) is the real Qwen2.5-VL class with overwritten weights, so that
the response's likelihood depends on the image only through the merged visual token whose pixels are
red (see :func:`plant`). ``ours`` must point at that token, and deleting its pixels must hurt more
than inserting them helps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from saliency_r1.evaluation import METHODS, FaithfulnessConfig, deletion_insertion, normalise, reference
from saliency_r1.evaluation.common import loglik_from_embeds, prepare, visual_embeddings
from saliency_r1.evaluation.likelihood import response_loglik
from saliency_r1.evaluation.methods import compute_maps
from saliency_r1.evaluation.perturb import make_blank, perturb, pixel_order, rank_pixels
from saliency_r1.evaluation.records import append_record, read_records
from saliency_r1.evaluation.tam import rank_gaussian_filter

Q, RESP = "What colour is the circle?", "<think>I see a red circle</think>red"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_finite_nonnegative_maps_on_the_grid(tiny, name):
    image = make_image(168, 112)
    opts = {"n_steps": 4} if name == "ig" else {}
    got = METHODS[name](tiny, image, Q, RESP, **opts)
    grids = prepare(tiny, image, Q, RESP).grids
    assert [tuple(m.shape) for m in got] == grids == [(4, 6)]
    assert all(torch.isfinite(m).all() and (m >= 0).all() for m in got)
    assert compute_maps(tiny, name, image, Q, RESP, **opts)["skipped"] is None


def test_ours_falls_back_without_spans_and_variants_report_unavailable(tiny, image):
    got = compute_maps(tiny, "ours", image, Q, "a red circle")
    assert got["fallback"] and got["maps"][0].sum() > 0
    assert compute_maps(tiny, "ours-think", image, Q, "a red circle")["maps"] is None


# --- the planted toy -------------------------------------------------------------------------------

def plant(sm, image, question, response, scale: float = 10.0) -> int:
    """Wire ``sm``'s weights so that the response depends on the image only through red patches.

    Vision: patch embedding = ``w · pixels`` with ``w`` in the null space of the processor's
    normalisation for grey (so any grey level, black included, embeds to ~0 and red to > 0);
    vision blocks' attention/MLP outputs zeroed (each merged token sees only its own pixels);
    merger = threshold (8x - 7, GELU) then a fixed content direction ``u`` in dims > d/2, plus a
    constant bias on dim d/2. LLM: text embeddings live in dims < d/2; layer 0 has ``q = 0`` (uniform
    attention) and a value map that reads only the content dims; every other attention output and
    every MLP is zeroed; the LM-head rows of the response tokens get a component along the one
    direction the red token writes (positive, so it raises their likelihood). Returns the index of
    the red token.
    """
    hf, vis = sm.hf, sm.hf.model.visual
    ip = sm.processor.image_processor
    m, s = np.array(ip.image_mean), np.array(ip.image_std)
    w = np.cross(1 / s, m / s)  # Σ_c w_c (x/255 - m_c)/s_c = 0 for every grey level x
    w = w if w[0] > 0 else -w
    lm = hf.model.language_model
    with torch.no_grad():
        vis.patch_embed.proj.weight.zero_()
        vis.patch_embed.proj.weight += torch.tensor(w, dtype=torch.float32)[None, :, None, None, None]
        for blk in vis.blocks:
            for lin in (blk.attn.proj, blk.mlp.down_proj):
                lin.weight.zero_(), lin.bias.zero_()
        l1, l2 = vis.merger.mlp[0], vis.merger.mlp[2]
        l1.weight.copy_(8 * torch.eye(l1.weight.shape[0])), l1.bias.fill_(-7.0)
        d = l2.weight.shape[0]
        half = d // 2
        u = torch.zeros(d)
        u[half + 1:] = torch.randn(d - half - 1, generator=torch.Generator().manual_seed(0))
        l2.weight.copy_(scale * (u / u.norm())[:, None].expand(d, l2.weight.shape[1]) / l2.weight.shape[1])
        l2.bias.zero_(), l2.bias.__setitem__(half, 4.0)
        lm.embed_tokens.weight[:, half:] = 0
        for i, layer in enumerate(lm.layers):
            layer.mlp.down_proj.weight.zero_()
            att = layer.self_attn
            if i:
                att.o_proj.weight.zero_()
                continue
            att.q_proj.weight.zero_(), att.q_proj.bias.zero_()
            att.v_proj.weight[:, :half + 1] = 0
            att.v_proj.bias.zero_()
            att.o_proj.weight.mul_(scale)
    ex = prepare(sm, image, question, response)
    e = visual_embeddings(sm, ex)  # (V, D)
    red = int(e[:, half + 1:].norm(dim=-1).argmax())
    with torch.no_grad():
        att = lm.layers[0].self_attn
        v = att.v_proj(lm.layers[0].input_layernorm(e[red]))  # (K * E,)
        H, K = att.config.num_attention_heads, att.config.num_key_value_heads
        vh = v.view(K, -1).repeat_interleave(H // K, 0).reshape(-1)  # (H * E,): GQA repeat
        g = lm.norm.weight * (att.o_proj.weight @ vh)
        g = g / g.norm()
        E = hf.lm_head.weight
        for y in set(ex.ids):
            E[y] -= (E[y] @ g) * g
            E[y] += 5.0 * E[y].norm() * g
    return red


@pytest.fixture(scope="module")
def planted(tiny_dir):
    from saliency_r1 import load_model

    sm = load_model(tiny_dir)
    image = Image.new("RGB", (112, 112), (128, 128, 128))  # a 4 x 4 grid, no resize
    image.paste((230, 20, 20), (56, 28, 84, 56))  # merged cell (1, 2) = token 6
    red = plant(sm, image, Q, RESP)
    return sm, image, red


def test_planted_patch_is_found_and_its_deletion_hurts(planted):
    sm, image, red = planted
    assert red == 6
    for name in ("ours", "ours-think", "ours-answer"):
        m = compute_maps(sm, name, image, Q, RESP)["maps"][0]
        assert int(m.flatten().argmax()) == red, name
    ids = prepare(sm, image, Q, RESP).ids
    cfg = FaithfulnessConfig(levels=(15.0,), steps=0)
    ref = reference(sm, image, Q, ids, cfg)
    assert ref.ll_original - ref.ll_blank > 1.0  # the red patch matters
    out = deletion_insertion(sm, ref, Q, ids, compute_maps(sm, "ours", image, Q, ids)["maps"][0], None, cfg)
    assert out["deletion"]["15"] < out["insertion"]["15"]
    assert out["deletion"]["15"] == pytest.approx(0.0, abs=1.0)
    assert out["insertion"]["15"] == pytest.approx(100.0, abs=1.0)
    rnd = deletion_insertion(sm, ref, Q, ids, torch.zeros(4, 4), None, cfg)  # ties -> top rows first
    assert rnd["deletion"]["15"] == pytest.approx(100.0, abs=1.0)  # the red cell is not in the top 15 %


# --- captum parity ----------------------------------------------------------------------------------

def test_input_x_gradient_matches_captum_and_autograd(tiny, image):
    from captum.attr import InputXGradient

    ex = prepare(tiny, image, Q, RESP)
    e = visual_embeddings(tiny, ex)[None].requires_grad_(True)  # (1, V, D)
    f = lambda x: loglik_from_embeds(tiny, ex, x, "answer")  # noqa: E731
    direct = InputXGradient(f).attribute(e)[0].sum(-1).clamp_min(0)
    (g,) = torch.autograd.grad(f(e).sum(), e)
    manual = (g * e)[0].detach().sum(-1).clamp_min(0)
    ours = METHODS["ixg"](tiny, image, Q, RESP)[0].flatten()
    torch.testing.assert_close(ours, direct.detach().float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours, manual.float(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_matches_a_manual_riemann_sum(tiny, image):
    ex = prepare(tiny, image, Q, RESP)
    e = visual_embeddings(tiny, ex)[None]  # (1, V, D)
    n = 4
    total = torch.zeros_like(e)
    for k in range(1, n + 1):  # riemann_right: alphas k/n, weights 1/n
        x = (k / n * e).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loglik_from_embeds(tiny, ex, x, "answer").sum(), x)
        total += g / n
    manual = (total * e)[0].sum(-1).clamp_min(0)
    got = METHODS["ig"](tiny, image, Q, RESP, n_steps=n, method="riemann_right", internal_batch_size=n)[0]
    torch.testing.assert_close(got.flatten(), manual.float(), rtol=1e-4, atol=1e-6)


# --- attention baselines against output_attentions ------------------------------------------------

def test_raw_attention_and_rollout_match_output_attentions(tiny_eager, image):
    ex = prepare(tiny_eager, image, Q, RESP)
    with torch.no_grad():
        att = tiny_eager.model(**ex.inputs, use_cache=False, output_attentions=True).attentions  # L x (1, H, T, T)
    rows, _ = ex.rows("answer")
    vis = ex.visual
    raw = torch.stack([a[0][:, rows][:, :, vis].mean((0, 1)) for a in att]).mean(0)
    torch.testing.assert_close(METHODS["attention"](tiny_eager, image, Q, RESP)[0].flatten(), raw, rtol=1e-4, atol=1e-6)
    T = ex.length
    roll = torch.eye(T)
    for a in att:
        roll = (0.5 * a[0].mean(0) + 0.5 * torch.eye(T)) @ roll  # (T, T)
    want = roll[rows][:, vis].mean(0)
    got = METHODS["rollout"](tiny_eager, image, Q, RESP, chunk=7)[0].flatten()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


# --- deletion / insertion mechanics -----------------------------------------------------------------

def test_normalisation_anchors_blank_zero_original_hundred(tiny, image):
    ids = prepare(tiny, image, Q, RESP).ids
    blank = make_blank(image, "black")
    order = rank_pixels(torch.rand(4, 5), image.size)
    dele = perturb(image, blank, order, [0.0, 1.0], "deletion")
    ins = perturb(image, blank, order, [0.0, 1.0], "insertion")
    assert np.array_equal(np.asarray(dele[0]), np.asarray(image)) and np.array_equal(np.asarray(dele[1]), np.asarray(blank))
    assert np.array_equal(np.asarray(ins[0]), np.asarray(blank)) and np.array_equal(np.asarray(ins[1]), np.asarray(image))
    ll_o, ll_b = response_loglik(tiny, [image, blank], Q, ids)
    scores = normalise(response_loglik(tiny, dele + ins, Q, ids), ll_o, ll_b)
    np.testing.assert_allclose(scores, [100.0, 0.0, 0.0, 100.0], atol=0.5)
    assert np.isnan(normalise([1.0], 2.0, 2.0)).all()


def test_ranking_ties_are_deterministic_and_blanks_differ(image):
    order = pixel_order(np.array([[2.0, 5.0, 5.0], [5.0, 1.0, 2.0]]))
    assert order.tolist() == [1, 2, 3, 0, 5, 4]
    assert make_blank(image, "mean").getpixel((0, 0)) != (0, 0, 0)
    assert make_blank(image, "blur", blur_radius=3).size == image.size
    m = perturb(image, make_blank(image), rank_pixels([[1.0, 0.0]], image.size), [0.5], "deletion")[0]
    a = np.asarray(m)
    assert (a[:, : image.size[0] // 2] == 0).all() and (a[:, image.size[0] // 2:] > 0).any()


def test_rank_gaussian_filter_keeps_constant_maps_and_zeroes_empty_windows():
    assert np.allclose(rank_gaussian_filter(np.full((3, 4), 2.0)), 2.0)
    out = rank_gaussian_filter(np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]))
    assert out.shape == (3, 3) and np.isfinite(out).all() and (out >= 0).all()
    assert rank_gaussian_filter(np.zeros((1, 5))).tolist() == [[0.0] * 5]


# --- resumable commands ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    from saliency_r1.data import export, generate

    d = tmp_path_factory.mktemp("shapes")
    export(generate(None, 3, seed=0, split="test"), d)
    return d


def test_faithfulness_command_resumes_skipping_done_ids(tiny_dir, shapes_dir, tmp_path, monkeypatch):
    from saliency_r1.cli.main import main
    from saliency_r1.evaluation import runner

    out = tmp_path / "faith"
    args = ["eval", "faithfulness", "--model", str(tiny_dir), "--data", str(shapes_dir), "--methods", "ours,random",
            "--response", "reference", "--levels", "15", "--steps", "2", "--out", str(out), "--no-progress"]
    assert main(args + ["--n", "2"]) == 0
    first = read_records(out)
    assert len(first) == 2
    seen = []
    real = runner.faithfulness_record
    monkeypatch.setattr(runner, "faithfulness_record", lambda sm, s, *a, **k: seen.append(s["id"]) or real(sm, s, *a, **k))
    assert main(args + ["--n", "3"]) == 0
    assert seen == ["shapes-test-0-000002"]
    res = json.loads((out / "results.json").read_text())
    assert res["n_records"] == 3 and set(res["rows"]) == {"ours", "random"}
    assert "del@15" in res["rows"]["ours"] and (out / "results.md").read_text().startswith("## Faithfulness")
    assert main(args[:-3] + ["--blank", "mean", "--out", str(out), "--no-progress"]) == 2  # other settings


def test_pointing_command_writes_table(tiny_dir, shapes_dir, tmp_path):
    from saliency_r1.cli.main import main

    out = tmp_path / "point"
    assert main(["eval", "pointing", "--model", str(tiny_dir), "--data", str(shapes_dir), "--n", "2",
                 "--max-new-tokens", "6", "--methods", "ours,attention", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_records"] == 2 and res["rows"]["ours"]["n"] == 2
    assert 0.0 <= res["rows"]["ours"]["energy-PG"] <= 100.0 and res["format_rate"] == 0.0


def test_records_survive_a_truncated_last_line(tmp_path):
    append_record(tmp_path, {"id": "a", "x": float("nan")})
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"id": "b", "x"')
    assert read_records(tmp_path) == [{"id": "a", "x": None}]
    append_record(tmp_path, {"id": "c"})
    assert [r["id"] for r in read_records(tmp_path)] == ["a", "c"]
