"""ShapesWorld: a seeded, deterministic generator of grounded VQA for a tiny vision-language model.

A scene is a light, mildly noisy canvas (default 168 x 168: a 6 x 6 grid of 28-pixel merged patches)
with 3-5 non-overlapping flat-coloured shapes, some carrying a 1-3 letter label drawn with PIL's
built-in bitmap font (offline, identical on every machine). Each sample asks one question of a
family that mirrors the paper's benchmarks:

================  ==================================================================================
``attribute``     'What color is the circle?' / 'What shape is the red object?' (the named object is
                  unique); evidence: that object
``existence``     POPE-style 'Is there a red circle in the image?'; negatives sampled ``random``,
                  ``popular`` (one of the ``pope_top_k`` absent pairs with the highest prior
                  frequency ``shape_weights x colour_weights``) or ``adversarial`` (a shape that IS
                  present, in a colour it does not have). Every existence sample carries a strategy
                  (yes-questions too, as in POPE, so per-strategy F1 can be computed). Evidence of a
                  'yes': every matching object. Evidence of a 'no': the near misses one must look at
                  to rule it out: the objects of the asked shape; if none, those of the asked colour;
                  if none, no box (``boxes == []``)
``spatial``       'Is the circle left of the square?', '... left or right of ...', '... above ...',
                  '... above or below ...', 'Which is further left / higher, the X or the Y?' (both
                  shapes unique, centres at least ``spatial_margin`` px apart); evidence: both
``counting``      'How many red objects / circles are there?' (1..``max_count``); evidence: the counted
``odd_one_out``   SalBench-P3-like: identical objects but one that differs in colour or shape;
                  evidence: the odd one
``reading``       'What does the label on the square say?'; evidence: the labelled object
================  ==================================================================================

Traces: *focused* speaks only of the evidence ('The circle is at the top left. It is red.');
*distracted* adds a sentence on up to ``max_distractors`` other objects, before or after
('I see a blue square and a green triangle. The circle is at the top left. It is red.').
With ``trace_style="grounded"`` every object a trace mentions is named by colour, shape and position
('There is a red circle top left.'; distractors: 'I see a blue square bottom right. ...'), and
``cell_layout=28`` puts each object in its own merged patch (the grounded toy of issue 13, BENCHMARKS.md).
``source`` is ``shapes/{family}/{variant}/{focused|distracted}`` where the variant is the POPE
strategy, the spatial form, or which attribute was asked.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .._images import read_image
from .._io import atomic_write_text
from ..config_io import meta as _h
from ..errors import InputError
from . import _families as fam
from ._geometry import LABEL_SHAPES, PALETTE, SHAPES, Obj, render
from .schema import SAMPLE_KEYS, Sample, format_response

FAMILIES: tuple[str, ...] = tuple(fam.BUILDERS)
SHAPE_PRIOR: dict[str, float] = {"circle": 2.0, "square": 1.5, "triangle": 1.25, "cross": 1.0, "diamond": 1.0}
COLOUR_PRIOR: dict[str, float] = {"red": 2.0, "green": 1.5, "blue": 1.25, "yellow": 1.0, "purple": 1.0, "orange": 1.0}
POPE_STRATEGIES: tuple[str, ...] = ("random", "popular", "adversarial")


@dataclass
class ShapesWorldConfig:
    """Everything that shapes a ShapesWorld dataset (see the module docstring for the families).

    >>> ShapesWorldConfig(width=224, height=224).width
    224
    """

    width: int = field(default=168, metadata=_h("canvas width in pixels"))
    height: int = field(default=168, metadata=_h("canvas height in pixels"))
    min_objects: int = field(default=3, metadata=_h("fewest objects per scene (odd_one_out uses at least 3)"))
    max_objects: int = field(default=5, metadata=_h("most objects per scene"))
    shapes: tuple[str, ...] = field(default=SHAPES, metadata=_h(f"shapes to draw, a subset of {SHAPES}"))
    colours: tuple[str, ...] = field(default=tuple(PALETTE), metadata=_h(f"colours, a subset of {tuple(PALETTE)}"))
    shape_weights: Optional[tuple[float, ...]] = field(
        default=None,
        metadata=_h(f"sampling weight per shape, aligned with `shapes`; None: the mild built-in skew "
                    f"{SHAPE_PRIOR} that gives POPE's 'popular' negatives a meaning"))
    colour_weights: Optional[tuple[float, ...]] = field(
        default=None, metadata=_h(f"sampling weight per colour, aligned with `colours`; None: {COLOUR_PRIOR}"))
    small_size: tuple[int, int] = field(default=(22, 30), metadata=_h("side range (px) of small objects"))
    large_size: tuple[int, int] = field(default=(36, 46), metadata=_h("side range (px) of large objects"))
    large_frac: float = field(default=0.5, metadata=_h("probability that an object is large"))
    min_gap: int = field(default=4, metadata=_h("minimum pixels between object boxes"))
    background: tuple[int, int, int] = field(default=(236, 236, 232), metadata=_h("background RGB"))
    noise_std: float = field(default=4.0, metadata=_h("std of the grey Gaussian noise on the background"))
    label_prob: float = field(default=0.25, metadata=_h("probability that an eligible object carries a label"))
    label_len: tuple[int, int] = field(default=(1, 3), metadata=_h("label length range in letters"))
    label_scale: int = field(default=2, metadata=_h("integer upscale of the 6x11 px bitmap font"))
    label_alphabet: str = field(default="ABCDEFGHJKLMNPRSTUVWXYZ", metadata=_h("letters used in labels"))
    families: dict[str, float] = field(
        default_factory=lambda: {"attribute": 0.3, "existence": 0.3, "spatial": 0.1, "counting": 0.1,
                                 "odd_one_out": 0.1, "reading": 0.1},
        metadata=_h(f"question-family weights over {FAMILIES} (missing: 0)"))
    pope_strategies: dict[str, float] = field(
        default_factory=lambda: {s: 1.0 for s in POPE_STRATEGIES},
        metadata=_h(f"weights of the existence sampling strategies {POPE_STRATEGIES}"))
    pope_top_k: int = field(default=3, metadata=_h("'popular' negatives come from the k most frequent absent pairs"))
    existence_yes_frac: float = field(default=0.5, metadata=_h("fraction of existence questions answered yes"))
    spatial_margin: float = field(default=12.0, metadata=_h("min centre distance (px) on the asked axis"))
    max_count: int = field(default=4, metadata=_h("largest count asked by counting questions"))
    distracted_frac: float = field(default=0.5, metadata=_h("fraction of distracted reasoning traces"))
    max_distractors: int = field(default=3, metadata=_h("most irrelevant objects a distracted trace mentions"))
    cell_layout: int = field(default=0, metadata=_h(
        "0: objects anywhere (min_gap apart); N > 0: each object inside its own N x N pixel cell, jittered "
        "(28 = one merged patch of Qwen2.5-VL: one object per visual token); objects must be <= N - 2 px"))
    trace_style: str = field(default="plain", metadata=_h(
        "plain: 'The circle is at the top left. It is red.'; grounded: every object the reasoning names is "
        "named with its colour, shape and position ('There is a red circle at the top left. So the circle is "
        "red.'), distractors too, as Visual-CoT traces name their evidence box"))
    answer_share: float = field(default=0.0, metadata=_h(
        "attribute scenes: probability that each other object shares the asked object's answer (its colour when "
        "the colour is asked, its shape when the shape is asked): binding scenes, where the answer cannot be read "
        "off the image without finding the named object, and a look at another object sees the answer's value"))
    distracted_where: str = field(default="either", metadata=_h(
        "where a distracted trace puts its sentence on irrelevant objects: start, end, or either (at random)"))

    def __post_init__(self) -> None:
        self.shapes, self.colours = tuple(self.shapes), tuple(self.colours)
        _check_names(self)
        self.shape_weights = _weights(self.shape_weights, self.shapes, SHAPE_PRIOR, "shape_weights")
        self.colour_weights = _weights(self.colour_weights, self.colours, COLOUR_PRIOR, "colour_weights")
        self.families = {k: float(v) for k, v in self.families.items()}
        self.pope_strategies = {k: float(v) for k, v in self.pope_strategies.items()}
        _check_config(self)


def _weights(w: Optional[tuple[float, ...]], names: tuple[str, ...], prior: dict[str, float],
             what: str) -> tuple[float, ...]:
    if w is None:
        return tuple(prior[k] for k in names)
    w = tuple(float(x) for x in w)
    if len(w) != len(names) or any(x <= 0 for x in w):
        raise InputError(f"{what} needs {len(names)} positive weights (one per entry), got {w}")
    return w


def _check_names(c: ShapesWorldConfig) -> None:
    """Shapes and colours: known, distinct, at least two of each."""
    for what, names, known in (("shapes", c.shapes, SHAPES), ("colours", c.colours, tuple(PALETTE))):
        if any(x not in known for x in names) or len(set(names)) != len(names) or len(names) < 2:
            raise InputError(f"{what} must be at least 2 distinct names from {known}, got {names}")


def _check_config(c: ShapesWorldConfig) -> None:
    """Raise InputError naming the first bad field."""
    if not 2 <= c.min_objects <= c.max_objects:
        raise InputError(f"need 2 <= min_objects <= max_objects, got {c.min_objects}, {c.max_objects}")
    for name, table, known in (("families", c.families, FAMILIES), ("pope_strategies", c.pope_strategies,
                                                                     POPE_STRATEGIES)):
        if set(table) - set(known) or any(v < 0 for v in table.values()) or sum(table.values()) <= 0:
            raise InputError(f"{name} must map names from {known} to weights >= 0 with a positive sum, got {table}")
    if c.families.get("reading", 0) > 0 and not set(c.shapes) & set(LABEL_SHAPES):
        raise InputError(f"the reading family needs one of {LABEL_SHAPES} in shapes")
    for name in ("small_size", "large_size", "label_len"):
        lo, hi = getattr(c, name)
        if not 1 <= lo <= hi:
            raise InputError(f"{name} must be a range (lo, hi) with 1 <= lo <= hi, got {(lo, hi)}")
    if c.large_size[1] + 4 > min(c.width, c.height):
        raise InputError(f"a {c.width}x{c.height} canvas cannot hold objects of {c.large_size[1]} px")
    for name in ("large_frac", "label_prob", "existence_yes_frac", "distracted_frac", "answer_share"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise InputError(f"{name} must be in [0, 1], got {getattr(c, name)}")
    if c.trace_style not in ("plain", "grounded", "grounded_phrase"):
        raise InputError(f"trace_style must be plain, grounded or grounded_phrase, got {c.trace_style!r}")
    if c.cell_layout < 0 or (c.cell_layout and (c.large_size[1] > c.cell_layout - 2 or c.small_size[1] >
                                                 c.cell_layout - 2)):
        raise InputError(f"cell_layout {c.cell_layout} needs objects of at most {c.cell_layout - 2} px "
                         f"(small_size, large_size), or 0 for free placement")
    if c.cell_layout and c.max_objects > (c.width // c.cell_layout) * (c.height // c.cell_layout):
        raise InputError(f"a {c.width}x{c.height} canvas has fewer {c.cell_layout}-px cells than max_objects")
    if c.distracted_where not in ("start", "end", "either"):
        raise InputError(f"distracted_where must be start, end or either, got {c.distracted_where!r}")
    if c.max_count < 1 or c.pope_top_k < 1 or c.max_distractors < 1 or c.label_scale < 1 or not c.label_alphabet:
        raise InputError("max_count, pope_top_k, max_distractors and label_scale must be >= 1, "
                         "label_alphabet non-empty")


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent stream per (seed, split, index); splits differ through a CRC of their name."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), index]))


def _build_one(cfg: ShapesWorldConfig, seed: int, split: str, index: int,
               draw: bool = True) -> tuple[list[Obj], Sample]:
    """The scene objects and the sample at ``index`` (``draw=False`` skips the pixels; text is equal)."""
    rng = _rng(seed, split, index)
    family = fam.pick(rng, list(cfg.families), list(cfg.families.values()))
    for _ in range(200):
        built = fam.BUILDERS[family](cfg, rng)
        if built is not None:
            break
    else:
        raise InputError(f"could not lay out a {family} scene on {cfg.width}x{cfg.height}; "
                         "use fewer or smaller objects, or a larger canvas")
    distracted = bool(rng.random() < cfg.distracted_frac)
    reasoning = fam.distract(built, cfg, rng) if distracted else built.focused
    image = render(built.objs, cfg.width, cfg.height, cfg.background, cfg.noise_std, rng,
                   cfg.label_scale) if draw else None
    ev = [built.objs[i] for i in built.evidence]
    sample: Sample = {
        "image": image, "question": built.question, "answer": built.answer,
        "boxes": [o.box for o in ev], "masks": [o.mask() for o in ev], "reasoning": reasoning,
        "source": f"shapes/{family}/{built.variant}/{'distracted' if distracted else 'focused'}",
        "id": f"shapes-{split}-{seed}-{index:06d}", "width": cfg.width, "height": cfg.height,
    }
    return built.objs, sample


def generate(config: Optional[ShapesWorldConfig], n: int, seed: int = 0, split: str = "train") -> list[Sample]:
    """``n`` samples; sample ``i`` is a pure function of ``(config, seed, split, i)``.

    Splits draw from different seed streams, so 'train' and 'test' with the same seed differ.
    Images are PIL images in memory (use :func:`export` to write them).

    >>> s = generate(ShapesWorldConfig(), 2, seed=0)
    >>> len(s), s[0]["image"].size, s[0]["answer"] != ""
    (2, (168, 168), True)
    """
    cfg = config or ShapesWorldConfig()
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    return [_build_one(cfg, seed, split, i)[1] for i in range(n)]


def corpus(n: int = 2000, config: Optional[ShapesWorldConfig] = None, seed: int = 0,
           split: str = "train") -> list[str]:
    """Texts to train a tokenizer on: ``question + "\\n" + format_response(reasoning, answer)``.

    Identical to the text of :func:`generate` with the same arguments, without drawing any image.

    >>> corpus(1)[0].count("<think>")
    1
    """
    cfg = config or ShapesWorldConfig()
    out = []
    for i in range(n):
        s = _build_one(cfg, seed, split, i, draw=False)[1]
        out.append(s["question"] + "\n" + format_response(s["reasoning"], s["answer"]))
    return out


def scene_objects(config: Optional[ShapesWorldConfig], sample: Sample) -> list[dict]:
    """Every object of a generated sample's scene, ``{"shape", "colour", "box"}`` (pixel xyxy), in drawing
    order, rebuilt from the sample's id (``shapes-{split}-{seed}-{index}``) without drawing; ``config`` must be
    the one that generated it. The precondition diagnostic (:mod:`saliency_r1.evaluation.precondition`) uses
    it to find which object a word of the reasoning names.

    >>> s = generate(ShapesWorldConfig(families={"attribute": 1.0}), 1, seed=3, split="validation")[0]
    >>> objs = scene_objects(ShapesWorldConfig(families={"attribute": 1.0}), s)
    >>> objs[0]["box"] == s["boxes"][0], sorted(objs[0])
    (True, ['box', 'colour', 'shape'])
    """
    m = re.fullmatch(r"shapes-(.+)-(\d+)-(\d+)", str(sample.get("id", "")))
    if m is None:
        raise InputError(f"sample id {sample.get('id')!r} is not a ShapesWorld id (shapes-SPLIT-SEED-INDEX); "
                         "pass a sample made by saliency_r1.data.generate")
    objs, again = _build_one(config or ShapesWorldConfig(), int(m[2]), m[1], int(m[3]), draw=False)
    if (again["question"], again["answer"]) != (sample["question"], sample["answer"]):
        raise InputError(f"sample {sample['id']} was not generated with this config; pass the config that made it")
    return [{"shape": o.shape, "colour": o.colour, "box": o.box} for o in objs]


def hf_features():
    """The ``datasets.Features`` of :func:`to_hf_dataset` (image as ``datasets.Image``).

    >>> sorted(hf_features())[:3]
    ['answer', 'boxes', 'height']
    """
    import datasets as ds

    f64 = ds.Value("float64")
    return ds.Features({
        "image": ds.Image(), "question": ds.Value("string"), "answer": ds.Value("string"),
        "boxes": ds.List(ds.List(f64)), "masks": ds.List(ds.List(ds.List(f64))),
        "reasoning": ds.Value("string"), "source": ds.Value("string"), "id": ds.Value("string"),
        "width": ds.Value("int32"), "height": ds.Value("int32"),
    })


def to_hf_dataset(samples: list[Sample]):
    """A ``datasets.Dataset`` of the samples; ``image`` (path or PIL) becomes a ``datasets.Image``.

    >>> to_hf_dataset(generate(None, 2)).num_rows
    2
    """
    import datasets as ds

    rows = [{k: s.get(k) for k in hf_features()} for s in samples]
    return ds.Dataset.from_list(rows, features=hf_features())


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export(samples: list[Sample], out_dir: Union[str, Path]) -> Path:
    """Write ``images/{id}.png`` and ``data.jsonl`` (the schema; image as a relative path).

    Returns the path of ``data.jsonl``; read it back with ``load(path, format="shapes")``.

    >>> import tempfile
    >>> export(generate(None, 1), tempfile.mkdtemp()).name
    'data.jsonl'
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    lines = []
    for s in samples:
        name = _SAFE.sub("_", str(s["id"])) + ".png"
        if name in names:
            raise InputError(f"duplicate sample id {s['id']!r}: export needs unique ids")
        names.add(name)
        img = s["image"]
        if isinstance(img, (str, Path)):
            read_image(img).convert("RGB").save(out / "images" / name)
        else:
            img.save(out / "images" / name)
        row = {k: s.get(k) for k in SAMPLE_KEYS}
        row["image"] = f"images/{name}"
        lines.append(json.dumps(row) + "\n")
    atomic_write_text(out / "data.jsonl", "".join(lines))  # written last, whole: it names only saved images
    return out / "data.jsonl"


__all__ = ["ShapesWorldConfig", "FAMILIES", "POPE_STRATEGIES", "SHAPE_PRIOR", "COLOUR_PRIOR", "generate", "corpus", "to_hf_dataset",
           "hf_features", "export"]
