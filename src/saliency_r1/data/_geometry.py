"""ShapesWorld geometry: shape polygons, placement and rendering (private to ``data/``).

Every shape is drawn as ONE polygon with integer vertices through ``PIL.ImageDraw.polygon`` (no
anti-aliasing), and that same vertex list is the sample's mask, so rasterising the mask with PIL
reproduces the object's pixels exactly. PIL fills the pixel of each vertex, hence the tight box of
an object is ``[min x, min y, max x + 1, max y + 1]`` of its vertices (pixel ``i`` spans ``[i, i+1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles",
                           "cross": "crosses", "diamond": "diamonds"}
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (20, 150, 40), "blue": (30, 70, 220),
    "yellow": (235, 195, 0), "purple": (140, 40, 180), "orange": (245, 120, 0),
}
_DARK_TEXT = {"yellow", "orange"}  # labels are black on these, white on the others
LABEL_SHAPES: tuple[str, ...] = ("circle", "square", "diamond")  # roomy enough for a label


@dataclass
class Obj:
    """One object of a scene; ``x0, y0`` is the top-left pixel, ``size`` the side of its box."""

    shape: str
    colour: str
    size: int
    x0: int = 0
    y0: int = 0
    label: str | None = None

    @property
    def box(self) -> list[float]:
        """Tight pixel box of the drawn polygon (exclusive right/bottom edge)."""
        pts = self.polygon()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return [float(min(xs)), float(min(ys)), float(max(xs) + 1), float(max(ys) + 1)]

    @property
    def centre(self) -> tuple[float, float]:
        """Centre of the tight box."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2

    def polygon(self) -> list[tuple[int, int]]:
        """Integer vertices of the shape inside ``[x0, x0 + size) x [y0, y0 + size)``."""
        return [(self.x0 + x, self.y0 + y) for x, y in _unit_polygon(self.shape, self.size)]

    def mask(self) -> list[list[float]]:
        """The polygon as ``[[x, y], ...]`` floats (the schema's mask)."""
        return [[float(x), float(y)] for x, y in self.polygon()]


@lru_cache(maxsize=512)
def _unit_polygon(shape: str, size: int) -> tuple[tuple[int, int], ...]:
    """Vertices of ``shape`` in a ``size`` x ``size`` box at the origin (last pixel ``size - 1``)."""
    m = size - 1
    c = m / 2
    if shape == "square":
        pts = [(0, 0), (m, 0), (m, m), (0, m)]
    elif shape == "circle":
        pts = [(c + c * math.cos(2 * math.pi * k / 32), c + c * math.sin(2 * math.pi * k / 32)) for k in range(32)]
    elif shape == "triangle":
        pts = [(c, 0), (m, m), (0, m)]
    elif shape == "diamond":
        pts = [(c, 0), (m, c), (c, m), (0, c)]
    elif shape == "cross":
        a, b = round(m / 3), round(2 * m / 3)
        pts = [(a, 0), (b, 0), (b, a), (m, a), (m, b), (b, b), (b, m), (a, m), (a, b), (0, b), (0, a), (a, a)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return tuple((int(round(x)), int(round(y))) for x, y in pts)


def place(objs: list[Obj], width: int, height: int, gap: int, rng: np.random.Generator, tries: int = 60,
          cell: int = 0) -> bool:
    """Give each object a position; boxes stay ``gap`` pixels apart and 2 pixels off the border.

    ``cell > 0``: each object lies inside its own ``cell`` x ``cell`` square of the canvas (distinct cells
    drawn at random, the object jittered inside, 1 pixel off the cell's edges; ``gap`` is not used).
    Returns False when some object found no room (the caller resamples the scene).
    """
    if cell > 0:
        return _place_in_cells(objs, width, height, cell, rng)
    placed: list[list[float]] = []
    for obj in objs:
        for _ in range(tries):
            obj.x0 = int(rng.integers(2, max(3, width - obj.size - 1)))
            obj.y0 = int(rng.integers(2, max(3, height - obj.size - 1)))
            b = obj.box
            if b[2] > width - 2 or b[3] > height - 2:
                continue
            if all(b[0] >= q[2] + gap or q[0] >= b[2] + gap or b[1] >= q[3] + gap or q[1] >= b[3] + gap
                   for q in placed):
                placed.append(b)
                break
        else:
            return False
    return True


def _place_in_cells(objs: list[Obj], width: int, height: int, cell: int, rng: np.random.Generator) -> bool:
    cols, rows = width // cell, height // cell
    if len(objs) > cols * rows or any(o.size > cell - 2 for o in objs):
        return False
    for obj, k in zip(objs, rng.permutation(cols * rows)[: len(objs)]):
        r, c = divmod(int(k), cols)
        obj.x0 = c * cell + 1 + int(rng.integers(0, cell - obj.size - 1))
        obj.y0 = r * cell + 1 + int(rng.integers(0, cell - obj.size - 1))
    return True


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font (offline, identical on every machine)."""
    return ImageFont.load_default_imagefont()


@lru_cache(maxsize=2048)
def _label_bitmap(text: str, scale: int) -> np.ndarray:
    """Boolean ``(h, w)`` bitmap of ``text`` at integer ``scale`` (nearest-neighbour)."""
    left, top, right, bottom = _font().getbbox(text)
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=_font())
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    return np.asarray(canvas) > 127


def _shape_mask(obj: Obj) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the shape in its own box."""
    canvas = Image.new("L", (obj.size, obj.size), 0)
    ImageDraw.Draw(canvas).polygon(list(_unit_polygon(obj.shape, obj.size)), fill=1)
    return np.asarray(canvas) > 0


def _label_offset(obj: Obj, text: str, scale: int) -> tuple[int, int] | None:
    """Top-left of the centred label in the object's box, or None when it does not fit inside."""
    bmp = _label_bitmap(text, scale)
    h, w = bmp.shape
    oy, ox = (obj.size - h) // 2, (obj.size - w) // 2
    if ox < 1 or oy < 1:
        return None
    inside = _shape_mask(obj)[oy:oy + h, ox:ox + w]
    return (ox, oy) if bool(np.all(inside[bmp])) else None


def fit_label(obj: Obj, text: str, scale: int) -> str | None:
    """``text`` or its longest prefix that fits inside the shape, None when even one letter does not."""
    for k in range(len(text), 0, -1):
        if _label_offset(obj, text[:k], scale) is not None:
            return text[:k]
    return None


def render(objs: list[Obj], width: int, height: int, background: tuple[int, int, int],
           noise_std: float, rng: np.random.Generator, label_scale: int) -> Image.Image:
    """Draw the scene: noisy light background, flat-coloured polygons, labels inside their shapes."""
    base = np.asarray(background, dtype=np.float32)
    noise = rng.normal(0.0, noise_std, size=(height, width, 1)).astype(np.float32) if noise_std > 0 else 0.0
    arr = np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(arr, (height, width, 3))), "RGB")
    draw = ImageDraw.Draw(img)
    for obj in objs:
        draw.polygon(obj.polygon(), fill=PALETTE[obj.colour])
    out = np.array(img)
    for obj in objs:
        if obj.label:
            off = _label_offset(obj, obj.label, label_scale)
            if off is None:
                continue
            bmp = _label_bitmap(obj.label, label_scale)
            ys, xs = np.nonzero(bmp)
            ink = (20, 20, 20) if obj.colour in _DARK_TEXT else (250, 250, 250)
            out[ys + obj.y0 + off[1], xs + obj.x0 + off[0]] = ink
    return Image.fromarray(out, "RGB")


__all__: list[str] = []
