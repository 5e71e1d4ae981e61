"""ShapesWorld's grounded toy (issue 13): one object per merged cell, traces that name each object they
mention with its colour, shape and position, distractors too."""

from __future__ import annotations

import dataclasses
import re

import pytest

from saliency_r1.data import ShapesWorldConfig, generate, scene_objects
from saliency_r1.data._families import cell_name, is_distracted
from saliency_r1.data._geometry import Obj
from saliency_r1.errors import InputError

GROUNDED = ShapesWorldConfig(width=112, height=112, min_objects=2, max_objects=3, small_size=(20, 26),
                             large_size=(20, 26), shapes=("square", "diamond"),
                             colours=("red", "green", "blue", "yellow"), cell_layout=28, trace_style="grounded",
                             families={"attribute": 0.7, "existence": 0.15, "counting": 0.05, "spatial": 0.05,
                                       "odd_one_out": 0.05})
MENTION = re.compile(r"an? (red|green|blue|yellow) (square|diamond) (top|middle|bottom) (left|centre|right)")


def test_cell_layout_puts_each_object_inside_its_own_cell():
    for s in generate(GROUNDED, 60, seed=4, split="validation"):
        cells = []
        for o in scene_objects(dataclasses.replace(GROUNDED, distracted_frac=0.0), s):
            x1, y1, x2, y2 = o["box"]
            cx, cy = int(x1) // 28, int(y1) // 28
            assert (x2 - 1) // 28 == cx and (y2 - 1) // 28 == cy, o  # inside one 28-px cell
            cells.append((cx, cy))
        assert len(set(cells)) == len(cells)


def test_grounded_traces_name_every_mentioned_object_with_colour_shape_and_position():
    cfg = dataclasses.replace(GROUNDED, families={"attribute": 1.0})
    objs_cfg = dataclasses.replace(cfg, distracted_frac=0.0)
    for s in generate(cfg, 40, seed=5, split="validation"):
        objs = scene_objects(objs_cfg, s)
        named = MENTION.findall(s["reasoning"])
        assert named, s["reasoning"]
        for colour, shape, row, col in named:  # each mention is a real object of the scene, at its place
            assert any((o["colour"], o["shape"]) == (colour, shape) and
                       cell_name(Obj(shape, colour, int(o["box"][2] - o["box"][0]), int(o["box"][0]),
                                     int(o["box"][1])), 112, 112) == f"{row} {col}" for o in objs), s
        ev = [o for o in objs if o["box"] == s["boxes"][0]][0]
        assert f"{ev['colour']} {ev['shape']}" in s["reasoning"] and s["answer"] in (ev["colour"], ev["shape"])
        assert is_distracted(s["reasoning"]) == (len(named) > 1)


def test_cell_name_is_row_then_column_of_the_canvas_thirds():
    assert cell_name(Obj("square", "red", 20, 1, 1), 112, 112) == "top left"
    assert cell_name(Obj("square", "red", 20, 45, 45), 112, 112) == "middle centre"
    assert cell_name(Obj("square", "red", 20, 85, 57), 112, 112) == "middle right"


@pytest.mark.parametrize("bad", [{"trace_style": "boxes"}, {"cell_layout": 28, "large_size": (30, 40)},
                                 {"cell_layout": -1}, {"cell_layout": 56, "max_objects": 5}])
def test_grounded_options_are_checked(bad):
    with pytest.raises(InputError):
        dataclasses.replace(GROUNDED, **bad)


CELL_NAME = re.compile(r"(circle|square|triangle|cross|diamond) (top|middle|bottom) (left|centre|right)")


@pytest.mark.parametrize("family", ["attribute", "existence", "spatial", "counting", "odd_one_out", "reading"])
def test_plain_traces_never_use_the_grounded_names(family):
    """The compact 'a red square top left' is the grounded style's only: plain traces keep 'at the top left'."""
    for style, want in (("plain", False), ("grounded_phrase", False), ("grounded", True)):
        cfg = ShapesWorldConfig(families={family: 1.0}, trace_style=style, distracted_frac=0.5)
        found = [bool(CELL_NAME.search(s["reasoning"])) for s in generate(cfg, 80, seed=2)]
        assert any(found) if want else not any(found), (family, style)


def test_plain_default_unchanged_by_the_options():
    plain = generate(ShapesWorldConfig(), 5, seed=1)
    assert all(not MENTION.search(s["reasoning"]) for s in plain)
    assert generate(ShapesWorldConfig(cell_layout=0, trace_style="plain"), 5, seed=1)[0]["reasoning"] == \
        plain[0]["reasoning"]
