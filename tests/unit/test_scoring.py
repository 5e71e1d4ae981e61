"""Tests of saliency_r1.scoring: box conventions, masks, upsampling, energy-PG / PG (method.md §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import saliency_r1
from saliency_r1.attribution.result import SaliencyResult
from saliency_r1.errors import InputError
from saliency_r1.scoring import (
    BOX_FORMATS, alignment, as_mask, boxes_to_mask, from_xyxy, map_to_pixels, parse_box_string,
    pointing_game, polygons_to_mask, region_mask, score_grid, score_grids, score_map, score_result, to_xyxy,
)
from saliency_r1.scoring.upsample import area_matrix, bilinear_matrix

# ---------------------------------------------------------------- boxes


@pytest.mark.parametrize("box, fmt, size, expected", [
    ([10, 20, 30, 40], "xyxy", (100, 50), [10, 20, 30, 40]),
    ([10, 20, 30, 25], "xywh", (100, 50), [10, 20, 40, 45]),
    ([0.1, 0.2, 0.5, 0.6], "norm_xyxy", (200, 100), [20, 20, 100, 60]),
    # landscape 200x100: square side 200, the image sits 50 px down in the padded square
    ([0.25, 0.25, 0.75, 0.75], "visual_cot", (200, 100), [50, 0, 150, 100]),
    ([0.5, 0.3, 1.0, 0.5], "visual_cot", (200, 100), [100, 10, 200, 50]),
    # portrait 100x200: square side 200, the image sits 50 px right
    ([0.25, 0.25, 0.75, 0.75], "visual_cot", (100, 200), [0, 50, 100, 150]),
    ([0.3, 0.0, 0.5, 0.5], "visual_cot", (100, 200), [10, 0, 50, 100]),
    # odd difference: 101x50, offset (101 - 50) // 2 = 25
    ([0.0, 25 / 101, 1.0, 75 / 101], "visual_cot", (101, 50), [0, 0, 101, 50]),
    # square image: no padding, visual_cot == norm_xyxy
    ([0.5, 0.5, 1.0, 1.0], "visual_cot", (64, 64), [32, 32, 64, 64]),
])
def test_conversion_table(box, fmt, size, expected):
    out = to_xyxy(box, fmt, size)
    assert out.shape == (1, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out[0], expected, atol=1e-9)


@pytest.mark.parametrize("fmt", BOX_FORMATS)
@pytest.mark.parametrize("size", [(200, 100), (100, 200), (101, 50), (64, 64)])
def test_round_trip(fmt, size):
    pixels = np.array([[3.0, 4.5, 50.25, 40.0], [0.0, 0.0, 20.0, 10.0]])
    there = from_xyxy(pixels, fmt, size)
    np.testing.assert_allclose(to_xyxy(there, fmt, size), pixels, atol=1e-9)


def test_visual_cot_matches_square_padding():
    """Paint a box in the padded square the Visual-CoT way; its pixels land where to_xyxy says."""
    width, height = 60, 20
    side, off = 60, (60 - 20) // 2
    square = np.zeros((side, side))
    square[off:off + height, :] = 1.0  # the image inside its padding
    norm = [12 / side, (off + 4) / side, 30 / side, (off + 16) / side]
    x1, y1, x2, y2 = to_xyxy(norm, "visual_cot", (width, height))[0]
    assert (x1, y1, x2, y2) == pytest.approx((12, 4, 30, 16))


def test_box_strings_and_inputs():
    assert parse_box_string("[0.1, 0.2, 0.5, 0.6]") == [[0.1, 0.2, 0.5, 0.6]]
    assert parse_box_string("[[1, 2, 3, 4], [5, 6, 7, 8]]") == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert parse_box_string("(1, 2, 3, 4)") == [[1, 2, 3, 4]]
    assert parse_box_string("1 2 3 4") == [[1, 2, 3, 4]]
    expected = [[10, 20, 30, 40]]
    size = (100, 100)
    for boxes in ([10, 20, 30, 40], (10, 20, 30, 40), [[10, 20, 30, 40]], "[10, 20, 30, 40]", ["[10, 20, 30, 40]"],
                  np.array([10, 20, 30, 40]), torch.tensor([[10.0, 20.0, 30.0, 40.0]]), ["10", "20", "30", "40"]):
        np.testing.assert_array_equal(to_xyxy(boxes, "xyxy", size), expected)
    assert to_xyxy([[0, 0, 1, 1], "[2, 2, 3, 3]"], "xyxy", size).shape == (2, 4)


@pytest.mark.parametrize("boxes, fmt, needle", [
    ("[0.1, 0.2, abc, 0.6]", "norm_xyxy", "non-numeric"),
    ([1, 2, "x", 4], "xyxy", "non-numeric"),
    ([1, 2, None, 4], "xyxy", "non-numeric"),
    ([True, 2, 3, 4], "xyxy", "non-numeric"),
    ([1, 2, 3], "xyxy", "exactly 4"),
    ([1, 2, 3, 4, 5], "xyxy", "exactly 4"),
    ([[1, 2, 3, 4], [1, 2]], "xyxy", "box 1 has 2 values"),
    ([5, 1, 2, 4], "xyxy", "inverted"),
    ([1, 5, 4, 2], "xyxy", "inverted"),
    ([1, 1, -2, 3], "xywh", "inverted"),
    ([1, 1, 1, 4], "xyxy", "zero area"),
    ([1, 1, 0, 3], "xywh", "zero area"),
    ([math.nan, 1, 2, 3], "xyxy", "NaN or infinite"),
    ([0, 0, math.inf, 1], "xyxy", "NaN or infinite"),
    ("[0.1, nan, 0.3, 0.4]", "norm_xyxy", "NaN or infinite"),
    ([300, 10, 400, 20], "xyxy", "entirely outside"),
    ([-50, -50, -10, -10], "xyxy", "entirely outside"),
    ([100, 0, 120, 10], "xyxy", "entirely outside"),  # touches the right border only
    ([0.1, 0.0, 0.5, 0.2], "visual_cot", "entirely outside"),  # in the padding above the image
    ([0.1, 0.1, 120, 80], "norm_xyxy", "not normalised"),
    ([], "xyxy", "empty"),
    (None, "xyxy", "no boxes"),
    ("[]", "xyxy", "empty box"),
    ([[1, 2, 3, 4], 5], "xyxy", "mix"),
    (np.zeros((2, 2, 4)), "xyxy", "shape"),
    ([1, 2, 3, 4], "cxcywh", "unknown box_format"),
])
def test_bad_boxes_raise_helpful_one_line_errors(boxes, fmt, needle):
    with pytest.raises(InputError) as info:
        to_xyxy(boxes, fmt, (100, 50))
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert any(word in message for word in ("give", "use", "pass", "check", "must", "write", "for pixel"))


@pytest.mark.parametrize("size", [None, (0, 10), (10.5, 10), (10,), "640x480", (True, 4)])
def test_bad_image_size(size):
    with pytest.raises(InputError, match="image_size|(width, height)"):
        to_xyxy([0, 0, 1, 1], "xyxy", size)


def test_partial_box_is_clipped():
    np.testing.assert_array_equal(to_xyxy([-10, -5, 50, 70], "xyxy", (40, 30)), [[0, 0, 40, 30]])
    np.testing.assert_allclose(to_xyxy([0.5, -0.1, 1.2, 0.5], "norm_xyxy", (10, 10)), [[5, 0, 10, 5]])

# ---------------------------------------------------------------- masks


def test_boxes_to_mask_fractional_coverage():
    mask = boxes_to_mask([10.5, 0, 12, 1.25], (20, 3))
    assert mask.shape == (3, 20) and mask.dtype == np.float64
    assert mask[0, 10] == 0.5 and mask[0, 11] == 1.0 and mask[0, 12] == 0.0 and mask[0, 9] == 0.0
    assert mask[1, 10] == pytest.approx(0.125) and mask[1, 11] == pytest.approx(0.25)
    assert mask.sum() == pytest.approx(1.5 * 1.25)


def test_union_of_overlapping_boxes_not_double_counted():
    a, b = [0.5, 0.5, 6.5, 4.0], [3.0, 2.0, 9.25, 7.5]
    inter = (6.5 - 3.0) * (4.0 - 2.0)
    union_area = 6.0 * 3.5 + 6.25 * 5.5 - inter
    mask = boxes_to_mask([a, b], (12, 10))
    assert mask.max() <= 1.0
    assert mask.sum() == pytest.approx(union_area)
    np.testing.assert_allclose(boxes_to_mask([a, a, a], (12, 10)), boxes_to_mask(a, (12, 10)))
    mask_a, mask_b = boxes_to_mask(a, (12, 10)), boxes_to_mask(b, (12, 10))
    assert np.all(mask >= np.maximum(mask_a, mask_b) - 1e-12) and np.all(mask <= mask_a + mask_b + 1e-12)
    assert mask[3, 4] == 1.0 and mask[2, 6] == 1.0  # inside both: 1, not 2
    grid = np.random.default_rng(0).random((4, 5))
    assert score_map(grid, (12, 10), None, boxes=[a, b, a])["energy_pg"] == pytest.approx(
        score_map(grid, (12, 10), None, boxes=[a, b])["energy_pg"])


def test_polygons_to_mask():
    square = polygons_to_mask([2, 2, 6, 2, 6, 6, 2, 6], (10, 8))
    assert square.shape == (8, 10) and set(np.unique(square)) <= {0.0, 1.0}
    assert square[2:6, 2:6].all() and square.sum() <= 25  # PIL fills edges inclusively
    np.testing.assert_array_equal(square, polygons_to_mask([[2, 2], [6, 2], [6, 6], [2, 6]], (10, 8)))
    two = polygons_to_mask([[0, 0, 1, 0, 1, 1], [7, 5, 9, 5, 9, 7, 7, 7]], (10, 8))
    assert two[0, 0] == 1 and two[6, 8] == 1 and two[3, 4] == 0
    tri = polygons_to_mask([[0, 0], [8, 0], [0, 8]], (10, 10))
    assert tri[1, 1] == 1 and tri[8, 8] == 0
    for bad in ([1, 2, 3], [[0, 0], [1, 1]], [0, 0, 1, "a", 1, 1], [0, 0, 5, 0, np.nan, 5], []):
        with pytest.raises(InputError):
            polygons_to_mask(bad, (10, 10))


def test_as_mask():
    m = np.zeros((4, 6), dtype=bool)
    m[1:3, 2:4] = True
    np.testing.assert_array_equal(as_mask(m, (6, 4)), m.astype(float))
    np.testing.assert_array_equal(as_mask(torch.from_numpy(m), (6, 4)), m.astype(float))
    with pytest.raises(InputError, match=r"mask shape \(6, 4\) does not match.*\(H, W\) = \(4, 6\)"):
        as_mask(m.T, (6, 4))
    with pytest.raises(InputError, match="divide it by 255"):
        as_mask(m.astype(np.uint8) * 255, (6, 4))
    with pytest.raises(InputError, match="NaN"):
        as_mask(np.full((4, 6), np.nan), (6, 4))

# ---------------------------------------------------------------- upsampling


def test_area_upsampling_preserves_mass_and_cell_values():
    rng = np.random.default_rng(1)
    grid = rng.random((3, 7))
    width, height = 50, 31  # cells of 50/7 x 31/3 pixels: not whole pixels
    pixels = map_to_pixels(grid, (width, height), (196, 84))
    assert pixels.shape == (height, width) and pixels.dtype == np.float64
    assert pixels.sum() * 1.0 == pytest.approx(grid.sum() * (width / 7) * (height / 3), rel=1e-12)
    # integer cells: every pixel equals its cell's value exactly
    exact = map_to_pixels(grid, (70, 30), (196, 84))
    np.testing.assert_array_equal(exact, np.kron(grid, np.ones((10, 10))))
    # fractional cells: pixels strictly inside a cell carry its value; border pixels a weighted mean
    assert pixels[0, 0] == grid[0, 0] and pixels[30, 49] == grid[2, 6]
    assert grid[0, :2].min() <= pixels[0, 7] <= grid[0, :2].max()
    np.testing.assert_allclose(area_matrix(31, 3).sum(axis=1), 1.0)
    np.testing.assert_allclose(area_matrix(31, 3).sum(axis=0), 31 / 3)


def test_bilinear_constant_and_torch_parity():
    const = map_to_pixels(np.full((4, 3), 2.5), (37, 23), None, mode="bilinear")
    np.testing.assert_allclose(const, 2.5, rtol=0, atol=1e-12)
    grid = np.random.default_rng(2).random((4, 6))
    for size in ((37, 23), (6, 4), (3, 2)):  # up, identity, down
        ref = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None], size=size[::-1],
                                              mode="bilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(map_to_pixels(grid, size, None, mode="bilinear"), ref, atol=1e-12)
    np.testing.assert_allclose(bilinear_matrix(9, 4).sum(axis=1), 1.0)


def test_upsample_inputs():
    grid = torch.rand(2, 3, dtype=torch.bfloat16)
    assert map_to_pixels(grid, (9, 4)).min() >= 0
    with pytest.raises(InputError, match="token_maps are"):
        map_to_pixels(np.zeros((5, 2, 3)), (9, 4))
    with pytest.raises(InputError, match="unknown upsample mode"):
        map_to_pixels(np.zeros((2, 3)), (9, 4), mode="nearest")
    with pytest.raises(InputError, match="cannot tile"):
        map_to_pixels(np.zeros((2, 3)), (9, 4), (2, 28))

# ---------------------------------------------------------------- metrics


def test_alignment_and_pointing_game_basics():
    region = np.zeros((2, 4))
    region[:, 2:] = 1.0
    s = np.array([[1.0, 0.0, 2.0, 1.0], [0.0, -5.0, 0.0, 0.0]])  # negatives are clipped to 0
    assert alignment(s, region) == pytest.approx(0.75)
    assert pointing_game(s, region) == 1.0
    assert alignment(np.zeros((2, 4)), region) == 0.0 and pointing_game(np.zeros((2, 4)), region) == 0.0
    assert alignment(-np.ones((2, 4)), region) == 0.0
    nan_map = s.copy()
    nan_map[0, 0] = np.nan
    assert alignment(nan_map, region) == 0.0 and pointing_game(nan_map, region) == 0.0
    assert alignment(np.full((2, 4), 1e308), region) == pytest.approx(0.5)  # no overflow
    with pytest.raises(InputError, match="same"):
        alignment(s, region.T)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        alignment(s, region * 2)


def test_pointing_game_ties():
    s = np.zeros((1, 9))
    s[0, 2:7] = 1.0  # a flat maximum, as area upsampling makes
    region = np.zeros((1, 9))
    region[0, 4:6] = 1.0
    assert pointing_game(s, region, ties="centroid") == 1.0  # centre of the plateau is pixel 4
    assert pointing_game(s, region, ties="first") == 0.0  # pixel 2
    assert pointing_game(s, region, ties="any") == 1.0
    with pytest.raises(InputError, match="ties"):
        pointing_game(s, region, ties="random")


def test_score_map_boxes_and_masks():
    grid = np.array([[0.0, 1.0], [3.0, 0.0]])
    size = (40, 20)  # cells 20 x 10
    out = score_map(grid, size, (56, 56), boxes=[0, 10, 20, 20])
    assert out == {"energy_pg": pytest.approx(0.75), "pg": 1.0}
    mask = np.zeros((20, 40), dtype=bool)
    mask[10:, :20] = True
    assert score_map(grid, size, (56, 56), masks=mask) == out
    assert score_map(grid, size, (56, 56), masks=[mask, mask]) == out
    both = score_map(grid, size, (56, 56), boxes=[20, 0, 40, 10], masks=mask)
    assert both["energy_pg"] == pytest.approx(1.0)
    norm = score_map(grid, size, (56, 56), boxes="[0.0, 0.5, 0.5, 1.0]", box_format="norm_xyxy")
    assert norm == out
    assert score_map(np.zeros((2, 2)), size, None, boxes=[0, 0, 5, 5]) == {"energy_pg": 0.0, "pg": 0.0}
    assert score_map(grid, size, None, boxes=[0, 10, 20, 20], upsample="bilinear")["pg"] == 1.0
    with pytest.raises(InputError, match="no evidence"):
        score_map(grid, size)
    np.testing.assert_array_equal(region_mask(size, masks=mask), mask)


@pytest.mark.parametrize("shape, size", [((3, 7), (50, 31)), ((4, 4), (64, 48)), ((5, 2), (17, 23))])
def test_grid_score_equals_pixel_score_on_pixel_boundaries(shape, size):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        grid = rng.random(shape) ** 3
        boxes = []
        for _ in range(rng.integers(1, 4)):
            x1, x2 = sorted(rng.choice(size[0] + 1, 2, replace=False))
            y1, y2 = sorted(rng.choice(size[1] + 1, 2, replace=False))
            boxes.append([x1, y1, x2, y2])
        pixel = score_map(grid, size, None, boxes=boxes, upsample="area")["energy_pg"]
        assert score_grid(grid, size, boxes) == pytest.approx(pixel, abs=1e-9)


def test_grid_score_close_to_pixel_score_off_boundaries():
    grid = np.random.default_rng(3).random((6, 6))
    box = [3.3, 7.6, 40.2, 22.9]
    pixel = score_map(grid, (48, 36), None, boxes=box)["energy_pg"]
    assert score_grid(grid, (48, 36), box) == pytest.approx(pixel, abs=1e-2)


def test_score_grids_batch():
    maps = [np.array([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]]), np.zeros((2, 2))]
    out = score_grids(maps, [(4, 2), (4, 2), (4, 4)], [[2, 0, 4, 2], [[0, 0, 1, 2], [0, 0, 2, 1]], [0, 0, 1, 1]])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.75, 0.375, 0.0])
    assert score_grids([], [], []).shape == (0,)
    with pytest.raises(InputError, match="one image size"):
        score_grids(maps, [(4, 2)], [[0, 0, 1, 1]] * 3)


@settings(max_examples=60, deadline=None)
@given(
    hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.0, 1e-300, 1.0, 1e300]),
    n_boxes=st.integers(1, 3),
)
def test_property_scores_bounded_and_finite(hw, size, seed, scale, n_boxes):
    rng = np.random.default_rng(seed)
    grid = (rng.random(hw) - 0.3) * scale
    boxes = []
    for _ in range(n_boxes):
        x1, x2 = np.sort(rng.uniform(-0.2, 1.2, 2)) * size[0]
        y1, y2 = np.sort(rng.uniform(-0.2, 1.2, 2)) * size[1]
        if x2 <= max(x1, 0) or y2 <= max(y1, 0) or x1 >= size[0] or y1 >= size[1]:
            continue
        boxes.append([x1, y1, x2, y2])
    if not boxes:
        boxes = [[0, 0, size[0], size[1]]]
    for mode in ("area", "bilinear"):
        out = score_map(grid, size, None, boxes=boxes, upsample=mode)
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in out.values())
    grid_score = score_grid(grid, size, boxes)
    assert math.isfinite(grid_score) and 0.0 <= grid_score <= 1.0
    rounded = [[math.floor(b[0]), math.floor(b[1]), math.ceil(b[2]), math.ceil(b[3])] for b in boxes]
    assert score_grid(grid, size, rounded) == pytest.approx(
        score_map(grid, size, None, boxes=rounded)["energy_pg"], abs=1e-9)

# ---------------------------------------------------------------- SaliencyResult


def _result(holistic: bool = True) -> SaliencyResult:
    grid = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    token_maps = torch.stack([grid, grid.flip(0), torch.zeros(2, 2)])  # (N, h, w)
    return SaliencyResult(
        input_ids=torch.arange(10), response_start=7, response_ids=torch.arange(7, 10), tokens=["a", "b", "c"],
        think_span=None, answer_span=(7, 10), contributions=torch.zeros(3, 4), grids=[(2, 2)],
        token_maps=[token_maps], holistic=[grid] if holistic else None, think=None, answer=[grid.flip(1)],
        attn=None, image_sizes=[(40, 20)], resized_sizes=[(56, 56)], patch_pixels=28,
        holistic_reason=None if holistic else "the response has no <think> span")


def test_score_result():
    res = _result()
    box = [0, 10, 20, 20]
    assert score_result(res, boxes=box) == {"energy_pg": pytest.approx(0.75), "pg": 1.0}  # floats only
    assert saliency_r1.score(res, box)["energy_pg"] == pytest.approx(0.75)
    assert score_result(res, boxes=box, which="answer")["energy_pg"] == pytest.approx(0.0)
    # token 1's map is [[3, 0], [0, 1]]: the bottom-right cell holds a quarter, the arg-max is top-left
    assert score_result(res, boxes=[20, 10, 40, 20], which=1) == {
        "energy_pg": pytest.approx(0.25), "pg": 0.0}
    assert score_result(res, boxes=box, which=-1)["energy_pg"] == 0.0
    with pytest.raises(InputError, match="no <think> span"):
        score_result(_result(holistic=False), boxes=box)
    with pytest.raises(InputError, match="'think' map is not available"):
        score_result(res, boxes=box, which="think")
    with pytest.raises(InputError, match="out of range"):
        score_result(res, boxes=box, which=3)
    with pytest.raises(InputError, match="out of range"):
        score_result(res, boxes=box, image=1)
    with pytest.raises(InputError, match="unknown map"):
        score_result(res, boxes=box, which="rollout")


@given(st.integers(1, 6), st.integers(1, 6), st.lists(st.tuples(st.floats(0, 60), st.floats(0, 40),
                                                             st.floats(1, 30), st.floats(1, 30)), min_size=1, max_size=3),
       st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_cell_coverage_is_the_weight_score_grid_puts_on_the_map(h, w, boxes, seed):
    from saliency_r1.scoring.metrics import cell_coverage

    xyxy = [[x, y, min(x + bw, 60.0), min(y + bh, 40.0)] for x, y, bw, bh in boxes]
    xyxy = [b for b in xyxy if b[2] > b[0] and b[3] > b[1]] or [[0.0, 0.0, 1.0, 1.0]]
    m = np.random.default_rng(seed).random((h, w)) + 1e-3
    cov = cell_coverage((h, w), (60, 40), xyxy)
    assert cov.shape == (h, w) and ((cov >= 0) & (cov <= 1 + 1e-12)).all()
    assert score_grid(m, (60, 40), xyxy) == pytest.approx(float((m * cov).sum() / m.sum()), abs=1e-12)
