"""Data the HTML report embeds: quantised maps, inlined images, JSON safe inside ``<script>``."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np

from ._common import base_image, colormap_lut, to_numpy, token_mass

_VIEWS = ("holistic", "think", "answer", "attn")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}


def script_json(obj: Any) -> str:
    """JSON text safe to put inside ``<script>``: ``<``, ``>``, ``&``, U+2028/9 escaped as ``\\uXXXX``
    (so ``</script>`` in a token cannot close the element); NaN/inf are rejected."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, esc in _JSON_ESCAPES.items():
        text = text.replace(raw, esc)
    return text


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def quantise(maps: np.ndarray) -> tuple[str, list[float], list[float]]:
    """``(K, h, w)`` maps as base64 of uint8 ``(K*h*w)`` bytes plus each map's ``lo``/``hi``.

    Map ``k`` is stored as ``round(255 * (m - lo_k) / (hi_k - lo_k))`` with ``lo_k = min(0, min m)``
    and ``hi_k = max m``: 0 stays 0, each map keeps its own full 8-bit range.
    """
    flat = maps.reshape(maps.shape[0], int(np.prod(maps.shape[1:])))
    lo = np.minimum(flat.min(axis=1, initial=0.0), 0.0)
    hi = flat.max(axis=1, initial=0.0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.clip(np.rint((flat - lo[:, None]) / span[:, None] * 255.0), 0, 255).astype(np.uint8)
    return (base64.b64encode(q.tobytes()).decode("ascii"), [_sig(v) for v in lo],
            [_sig(v) for v in hi])


def png_data_uri(img: Any, max_side: int) -> str:
    """An RGB PIL image, shrunk to at most ``max_side`` pixels on its long side, as a PNG data URI."""
    small = img.convert("RGB")
    if max(small.size) > max_side:
        small = small.copy()
        small.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _views(result: Any, image: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name in _VIEWS:
        maps = getattr(result, name)
        if maps is not None and image < len(maps) and maps[image] is not None:
            b64, lo, hi = quantise(to_numpy(maps[image])[None])
            out[name] = {"q": b64, "lo": lo[0], "hi": hi[0]}
    return out


def image_payload(result: Any, image: int) -> dict[str, Any]:
    """Everything the page script needs to draw the maps of image ``image``."""
    maps = to_numpy(result.token_maps[image])
    if maps.ndim != 3:
        raise ValueError(f"token_maps[{image}] must be (N, h, w); got shape {maps.shape}")
    b64, lo, hi = quantise(maps)
    return {"h": int(maps.shape[1]), "w": int(maps.shape[2]), "q": b64, "lo": lo, "hi": hi,
            "views": _views(result, image)}


def section_payload(result: Any, label: str | None) -> dict[str, Any]:
    """The JSON of one report section: per-image maps, token texts and masses, the first view."""
    images = [image_payload(result, i) for i in range(len(result.token_maps))]
    mass = token_mass(result.token_maps)
    first = next((f"view:{v}" for v in _VIEWS if images and v in images[0]["views"]), None)
    if first is None:
        first = f"token:{int(np.argmax(mass))}" if len(mass) else ""
    return {"label": label, "tokens": list(result.tokens), "mass": [_sig(m) for m in mass],
            "images": images, "initial": first}


def display_image_uri(result: Any, image: int, max_side: int) -> str:
    """The image (or its grey stand-in) as a PNG data URI."""
    return png_data_uri(base_image(result, image), max_side)


def lut_payload() -> str:
    """The colour map as base64 of 256 RGB triples."""
    return base64.b64encode(colormap_lut().tobytes()).decode("ascii")


def ramp_css(stops: int = 12) -> str:
    """A CSS ``linear-gradient`` of the colour map, for the legend."""
    lut = colormap_lut()
    idx = np.linspace(0, 255, stops).round().astype(int)
    parts = [f"rgb({lut[i, 0]},{lut[i, 1]},{lut[i, 2]}) {100 * j / (stops - 1):.1f}%"
             for j, i in enumerate(idx)]
    return "linear-gradient(90deg, " + ", ".join(parts) + ")"
