"""ShapesWorld question families: scene constraints, question, answer, evidence, focused trace.

Each builder takes ``(cfg, rng)`` and returns a :class:`Built`, or None when the random draw did
not work out (no room, an ambiguous spatial relation); the caller draws again from the same rng,
so the result stays a pure function of the sample's seed.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import numpy as np

from ._geometry import LABEL_SHAPES, PLURALS, Obj, fit_label, place

if TYPE_CHECKING:  # pragma: no cover
    from .shapes import ShapesWorldConfig

SPATIAL_FORMS: tuple[str, ...] = ("left_yesno", "above_yesno", "left_right", "above_below", "which_left", "which_above")


@dataclass
class Built:
    """One family's output before rendering; ``evidence`` indexes ``objs``."""

    objs: list[Obj]
    question: str
    answer: str
    evidence: list[int]
    focused: str
    variant: str


# ---------------------------------------------------------------- sampling helpers
def pick(rng: np.random.Generator, items: Iterable, weights: Optional[Iterable[float]] = None):
    """One item, uniformly or by (unnormalised) weights."""
    items = list(items)
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(list(weights), dtype=float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def _shape(cfg: ShapesWorldConfig, rng: np.random.Generator, exclude: Iterable[str] = ()) -> str:
    pool = [(s, w) for s, w in zip(cfg.shapes, cfg.shape_weights) if s not in set(exclude)]
    return pick(rng, [s for s, _ in pool], [w for _, w in pool])


def _colour(cfg: ShapesWorldConfig, rng: np.random.Generator, exclude: Iterable[str] = ()) -> str:
    pool = [(c, w) for c, w in zip(cfg.colours, cfg.colour_weights) if c not in set(exclude)]
    return pick(rng, [c for c, _ in pool], [w for _, w in pool])


def _size(cfg: ShapesWorldConfig, rng: np.random.Generator, large: Optional[bool] = None) -> int:
    if large is None:
        large = bool(rng.random() < cfg.large_frac)
    lo, hi = cfg.large_size if large else cfg.small_size
    return int(rng.integers(lo, hi + 1))


def _n(cfg: ShapesWorldConfig, rng: np.random.Generator, least: int = 1) -> int:
    return max(least, int(rng.integers(cfg.min_objects, cfg.max_objects + 1)))


def _placed(objs: list[Obj], cfg: ShapesWorldConfig, rng: np.random.Generator) -> bool:
    return place(objs, cfg.width, cfg.height, cfg.min_gap, rng, cell=cfg.cell_layout)


def _label_text(cfg: ShapesWorldConfig, rng: np.random.Generator) -> str:
    k = int(rng.integers(cfg.label_len[0], cfg.label_len[1] + 1))
    return "".join(pick(rng, cfg.label_alphabet) for _ in range(k))


def _add_labels(objs: list[Obj], cfg: ShapesWorldConfig, rng: np.random.Generator) -> None:
    """Label eligible objects (large, roomy shape) with probability ``label_prob``."""
    for obj in objs:
        if obj.label is None and obj.shape in LABEL_SHAPES and obj.size >= cfg.large_size[0]:
            if rng.random() < cfg.label_prob:
                obj.label = fit_label(obj, _label_text(cfg, rng), cfg.label_scale)


# ---------------------------------------------------------------- text helpers
def where(obj: Obj, width: int, height: int) -> str:
    """Position phrase from the canvas thirds: 'at the top left', 'on the right', 'in the centre'."""
    cx, cy = obj.centre
    col = ("left", "centre", "right")[min(2, int(3 * cx / width))]
    row = ("top", "middle", "bottom")[min(2, int(3 * cy / height))]
    if row == "middle" and col == "centre":
        return "in the centre"
    if row == "middle":
        return f"on the {col}"
    if col == "centre":
        return f"at the {row}"
    return f"at the {row} {col}"


def grounded(cfg: ShapesWorldConfig) -> bool:
    """Whether the traces name every object with its colour, shape and position (``trace_style``)."""
    return cfg.trace_style != "plain"


def cell_name(obj: Obj, width: int, height: int) -> str:
    """Two words from the canvas thirds, row then column: 'top left', 'middle centre', 'bottom right'."""
    cx, cy = obj.centre
    return (f"{('top', 'middle', 'bottom')[min(2, int(3 * cy / height))]} "
            f"{('left', 'centre', 'right')[min(2, int(3 * cx / width))]}")


def name(o: Obj, cfg: ShapesWorldConfig) -> str:
    """One object with its colour, shape and position: with ``trace_style='grounded'`` 'a red square top
    left' (every word after the article depends on the object, so each token that names it must look at it
    to predict the next), otherwise (``grounded_phrase``, and the plain traces' 'There is a red square at the
    top.') 'a red square at the top left'."""
    if cfg.trace_style == "grounded":
        return f"{a(o.colour + ' ' + o.shape)} {cell_name(o, cfg.width, cfg.height)}"
    return f"{a(o.colour + ' ' + o.shape)} {where(o, cfg.width, cfg.height)}"


def a(word: str) -> str:
    """'a red circle', 'an orange square'."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


def join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe_group(objs: list[Obj]) -> str:
    """'a blue square, 2 red circles and a green cross' (identical objects grouped, first-seen order)."""
    groups: dict[tuple[str, str], int] = {}
    for o in objs:
        groups[(o.colour, o.shape)] = groups.get((o.colour, o.shape), 0) + 1
    return join([a(f"{c} {s}") if k == 1 else f"{k} {c} {PLURALS[s]}" for (c, s), k in groups.items()])


def distract(b: Built, cfg: ShapesWorldConfig, rng: np.random.Generator) -> str:
    """The distracted trace: the focused one plus a sentence about irrelevant objects."""
    others = sorted((o for i, o in enumerate(b.objs) if i not in b.evidence), key=lambda o: o.centre[0])
    if not others:
        return f"I look at the whole image first. {b.focused}"
    shown = others[: cfg.max_distractors]
    seen = join([name(o, cfg) for o in shown]) if grounded(cfg) else describe_group(shown)
    where = cfg.distracted_where
    if where == "start" or (where == "either" and rng.random() < 0.5):
        return f"I see {seen}. {b.focused}"
    return f"{b.focused} I also see {seen}."


_DISTRACTED = re.compile(r"I look at the whole image first\.|^\s*I see (?!no\b)|I also see ")


def is_distracted(trace: str) -> bool:
    """Whether a reasoning trace (or a whole response) has one of :func:`distract`'s sentences about
    irrelevant objects: ShapesWorld's marker of unfocused reasoning (paper Fig. 1).

    >>> is_distracted("<think>I see a red circle. The square is blue.</think>blue")
    True
    >>> is_distracted("<think>I see no cross and no red object. So no.</think>no")
    False
    """
    return bool(_DISTRACTED.search(str(trace).replace("<think>", "", 1)))


def _left_to_right(objs: list[Obj], idx: list[int]) -> list[int]:
    return sorted(idx, key=lambda i: objs[i].centre[0])


# ---------------------------------------------------------------- families
def attribute(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """'What color is the circle?' (unique shape) or 'What shape is the red object?' (unique colour);
    ``answer_share``: each other object takes the asked one's answer value with that probability."""
    n = _n(cfg, rng)
    by_colour = bool(rng.random() < 0.5)
    if by_colour:
        shape = _shape(cfg, rng)
        objs = [Obj(shape, _colour(cfg, rng), _size(cfg, rng))]
        objs += [Obj(_shape(cfg, rng, {shape}), _colour(cfg, rng), _size(cfg, rng)) for _ in range(n - 1)]
    else:
        colour = _colour(cfg, rng)
        objs = [Obj(_shape(cfg, rng), colour, _size(cfg, rng))]
        objs += [Obj(_shape(cfg, rng), _colour(cfg, rng, {colour}), _size(cfg, rng)) for _ in range(n - 1)]
    if cfg.answer_share > 0:  # binding scenes; no draw at 0, so older datasets stay identical
        for o in objs[1:]:
            if rng.random() < cfg.answer_share:
                o.colour, o.shape = (objs[0].colour, o.shape) if by_colour else (o.colour, objs[0].shape)
    _add_labels(objs, cfg, rng)
    if not _placed(objs, cfg, rng):
        return None
    t, pos = objs[0], where(objs[0], cfg.width, cfg.height)
    q = f"What color is the {t.shape}?" if by_colour else f"What shape is the {t.colour} object?"
    ans, said = (t.colour, t.colour) if by_colour else (t.shape, a(t.shape))
    asked = f"the {t.shape}" if by_colour else f"the {t.colour} object"
    if cfg.trace_style == "grounded":
        trace = f"There is {name(t, cfg)}."
    elif cfg.trace_style == "grounded_phrase":
        trace = f"There is {name(t, cfg)}. So {asked} is {said}."
    else:
        trace = f"{asked[0].upper() + asked[1:]} is {pos}. It is {said}."
    return Built(objs, q, ans, [0], trace, "colour" if by_colour else "shape")


def _negative(strategy: str, objs: list[Obj], cfg: ShapesWorldConfig, rng: np.random.Generator) -> tuple[str, str]:
    """An absent (colour, shape) pair, POPE-style: random, popular (top-k prior) or adversarial."""
    present = {(o.colour, o.shape) for o in objs}
    absent = [(c, s) for s in cfg.shapes for c in cfg.colours if (c, s) not in present]
    if strategy == "adversarial":
        shape = pick(rng, sorted({o.shape for o in objs}, key=cfg.shapes.index))
        options = [(c, s) for c, s in absent if s == shape]
        if options:
            return pick(rng, options)
    if strategy == "popular":
        prior = {s: w for s, w in zip(cfg.shapes, cfg.shape_weights)}
        prior_c = {c: w for c, w in zip(cfg.colours, cfg.colour_weights)}
        ranked = sorted(absent, key=lambda cs: (-prior_c[cs[0]] * prior[cs[1]], cfg.shapes.index(cs[1]),
                                                cfg.colours.index(cs[0])))
        return pick(rng, ranked[: cfg.pope_top_k])
    return pick(rng, absent)


def _no_trace(objs: list[Obj], colour: str, shape: str, cfg: ShapesWorldConfig) -> tuple[list[int], str]:
    """Evidence and trace of a 'no': the same-shape objects, else the same-colour ones, else none."""
    same_shape = _left_to_right(objs, [i for i, o in enumerate(objs) if o.shape == shape])
    same_colour = _left_to_right(objs, [i for i, o in enumerate(objs) if o.colour == colour])
    end = f"There is no {colour} {shape}."
    if grounded(cfg) and (same_shape or same_colour):
        ev = same_shape or same_colour
        return ev, f"There is {join([name(objs[i], cfg) for i in ev])}. {end}"
    if len(same_shape) == 1:
        o = objs[same_shape[0]]
        return same_shape, f"The {shape} {where(o, cfg.width, cfg.height)} is {o.colour}. {end}"
    if same_shape:
        return same_shape, f"The {PLURALS[shape]} are {join([objs[i].colour for i in same_shape])}. {end}"
    if len(same_colour) == 1:
        o = objs[same_colour[0]]
        return same_colour, f"The {colour} object {where(o, cfg.width, cfg.height)} is a {o.shape}. {end}"
    if same_colour:
        shapes = join([a(objs[i].shape) for i in same_colour])
        return same_colour, f"The {colour} objects are {shapes}. {end}"
    return [], f"I see no {shape} and no {colour} object. {end}"


def existence(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """POPE-style 'Is there a red circle in the image?' with yes/no and a sampling strategy."""
    n = _n(cfg, rng)
    objs = [Obj(_shape(cfg, rng), _colour(cfg, rng), _size(cfg, rng)) for _ in range(n)]
    _add_labels(objs, cfg, rng)
    if not _placed(objs, cfg, rng):
        return None
    strategy = pick(rng, list(cfg.pope_strategies), list(cfg.pope_strategies.values()))
    if rng.random() < cfg.existence_yes_frac:
        t = objs[int(rng.integers(n))]
        colour, shape = t.colour, t.shape
        ev = _left_to_right(objs, [i for i, o in enumerate(objs) if (o.colour, o.shape) == (colour, shape)])
        if len(ev) == 1 or grounded(cfg):
            focused = f"There is {join([name(objs[i], cfg) for i in ev])}."
        else:
            focused = f"There are {len(ev)} {colour} {PLURALS[shape]}."
        answer = "yes"
    else:
        colour, shape = _negative(strategy, objs, cfg, rng)
        ev, focused = _no_trace(objs, colour, shape, cfg)
        answer = "no"
    return Built(objs, f"Is there {a(colour)} {shape} in the image?", answer, ev, focused, strategy)


def spatial(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """Relation of two objects with unique shapes: 'Is the circle left of the square?' and kin."""
    n = _n(cfg, rng, least=2) if len(cfg.shapes) > 2 else 2
    sa = _shape(cfg, rng)
    sb = _shape(cfg, rng, {sa})
    objs = [Obj(sa, _colour(cfg, rng), _size(cfg, rng)), Obj(sb, _colour(cfg, rng), _size(cfg, rng))]
    objs += [Obj(_shape(cfg, rng, {sa, sb}), _colour(cfg, rng), _size(cfg, rng)) for _ in range(n - 2)]
    _add_labels(objs, cfg, rng)
    if not _placed(objs, cfg, rng):
        return None
    form = pick(rng, SPATIAL_FORMS)
    horizontal = "left" in form
    axis = 0 if horizontal else 1
    oa, ob = objs[0], objs[1]
    if abs(oa.centre[axis] - ob.centre[axis]) < cfg.spatial_margin:
        return None
    first = oa.centre[axis] < ob.centre[axis]  # oa is left of / above ob
    rel = ("left of" if first else "right of") if horizontal else ("above" if first else "below")
    q, ans = {
        "left_yesno": (f"Is the {sa} left of the {sb}?", "yes" if first else "no"),
        "above_yesno": (f"Is the {sa} above the {sb}?", "yes" if first else "no"),
        "left_right": (f"Is the {sa} left or right of the {sb}?", "left" if first else "right"),
        "above_below": (f"Is the {sa} above or below the {sb}?", "above" if first else "below"),
        "which_left": (f"Which is further left, the {sa} or the {sb}?", sa if first else sb),
        "which_above": (f"Which is higher, the {sa} or the {sb}?", sa if first else sb),
    }[form]
    pa, pb = where(oa, cfg.width, cfg.height), where(ob, cfg.width, cfg.height)
    if form.startswith("which"):
        conclusion = f"So the {ans} is {'further left' if horizontal else 'higher'}."
    else:
        conclusion = f"So the {sa} is {rel} the {sb}."
    focused = f"The {sa} is {pa}. The {sb} is {pb}. {conclusion}"
    if grounded(cfg):
        focused = f"There is {name(oa, cfg)}. There is {name(ob, cfg)}. {conclusion}"
    return Built(objs, q, ans, [0, 1], focused, form)


def counting(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """'How many red objects are there?' / 'How many circles are there?' (the count is at least 1)."""
    n = _n(cfg, rng)
    k = int(rng.integers(1, min(n, cfg.max_count) + 1))
    by_colour = bool(rng.random() < 0.5)
    if by_colour:
        v = _colour(cfg, rng)
        objs = [Obj(_shape(cfg, rng), v, _size(cfg, rng)) for _ in range(k)]
        objs += [Obj(_shape(cfg, rng), _colour(cfg, rng, {v}), _size(cfg, rng)) for _ in range(n - k)]
    else:
        v = _shape(cfg, rng)
        objs = [Obj(v, _colour(cfg, rng), _size(cfg, rng)) for _ in range(k)]
        objs += [Obj(_shape(cfg, rng, {v}), _colour(cfg, rng), _size(cfg, rng)) for _ in range(n - k)]
    _add_labels(objs, cfg, rng)
    if not _placed(objs, cfg, rng):
        return None
    ev = _left_to_right(objs, list(range(k)))
    if grounded(cfg):
        items = join([name(objs[i], cfg) for i in ev])
        q = f"How many {v} objects are there?" if by_colour else f"How many {PLURALS[v]} are there?"
        focused = f"I count the {v + ' objects' if by_colour else PLURALS[v]}: {items}. That makes {k}."
    elif by_colour:
        items = join([a(objs[i].shape) for i in ev])
        q, focused = f"How many {v} objects are there?", f"I count the {v} objects: {items}. That makes {k}."
    else:
        items = join([a(f"{objs[i].colour} one") for i in ev])
        q, focused = f"How many {PLURALS[v]} are there?", f"I count the {PLURALS[v]}: {items}. That makes {k}."
    return Built(objs, q, str(k), ev, focused, "colour" if by_colour else "shape")


def odd_one_out(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """SalBench-P3-like: identical objects but one that differs in colour or in shape."""
    n = _n(cfg, rng, least=3)
    by_colour = bool(rng.random() < 0.5)
    shape, colour, size = _shape(cfg, rng), _colour(cfg, rng), _size(cfg, rng)
    odd = Obj(shape, _colour(cfg, rng, {colour}), size) if by_colour else Obj(_shape(cfg, rng, {shape}), colour, size)
    objs = [odd] + [Obj(shape, colour, size) for _ in range(n - 1)]
    if not _placed(objs, cfg, rng):
        return None
    if by_colour:
        q, ans = "One object has a different color. What color is it?", odd.colour
    else:
        q, ans = "One object has a different shape. What shape is it?", odd.shape
    focused = f"The odd one is {where(odd, cfg.width, cfg.height)}. It is {a(odd.colour)} {odd.shape}."
    if grounded(cfg):
        focused = f"The odd one is {name(odd, cfg)}."
    return Built(objs, q, ans, [0], focused, "colour" if by_colour else "shape")


def reading(cfg: ShapesWorldConfig, rng: np.random.Generator) -> Optional[Built]:
    """'What does the label on the square say?' (a large, uniquely shaped, labelled object)."""
    roomy = [s for s in cfg.shapes if s in LABEL_SHAPES]
    n = _n(cfg, rng)
    shape = pick(rng, roomy, [cfg.shape_weights[cfg.shapes.index(s)] for s in roomy])
    target = Obj(shape, _colour(cfg, rng), _size(cfg, rng, large=True))
    target.label = fit_label(target, _label_text(cfg, rng), cfg.label_scale)
    if target.label is None:
        return None
    objs = [target] + [Obj(_shape(cfg, rng, {shape}), _colour(cfg, rng), _size(cfg, rng)) for _ in range(n - 1)]
    _add_labels(objs, cfg, rng)
    if not _placed(objs, cfg, rng):
        return None
    focused = f"The {shape} is {where(target, cfg.width, cfg.height)}. Its label says {target.label}."
    if grounded(cfg):
        focused = f"There is {name(target, cfg)}. Its label says {target.label}."
    return Built(objs, f"What does the label on the {shape} say?", target.label, [0], focused, "label")


BUILDERS: dict[str, Callable[..., Optional[Built]]] = {
    "attribute": attribute, "existence": existence, "spatial": spatial,
    "counting": counting, "odd_one_out": odd_one_out, "reading": reading,
}

__all__: list[str] = []
