"""One self-contained, offline, interactive HTML report of a :class:`SaliencyResult`.

How maps are shown: the numbers travel as data, not as pictures. Each image's per-token maps are
quantised to 8 bits (each map on its own ``[min(0, lo), hi]`` range, kept beside it) and embedded
as base64 in a ``<script type="application/json">`` block; the page script paints the chosen map
into a ``<canvas>`` of the grid's own size (one canvas pixel per merged cell), coloured with
viridis and stretched over the image by CSS (``image-rendering: pixelated``: nearest, one flat
block per cell; a "smooth" switch gives bilinear). 512 tokens on a 32x32 grid cost about 0.7 MB.
Images are inlined as PNG data URIs (long side at most ``max_image_side`` pixels); CSS and JS
come from ``viz/assets`` and are inlined; a Content-Security-Policy allows nothing but the page's
own script (by hash), inline styles and ``data:`` images, so the file works offline and fetches
nothing. All user/model text is HTML-escaped; embedded JSON escapes ``< > &`` and U+2028/9.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from ._common import Box, atomic_write, boxes_for_image, span_kind, token_mass
from ._payload import display_image_uri, lut_payload, ramp_css, script_json, section_payload

Boxes = Sequence[Box] | Mapping[int, Sequence[Box]]
_VIEW_TITLES = {"holistic": "Holistic", "think": "Thinking", "answer": "Answer",
                "attn": "Attention"}
_KIND_LABELS = {"think": "thinking", "answer": "answer"}
_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{hash}'; "
        "base-uri 'none'; form-action 'none'")
_NOTE = (
    "Each token map shows, for one response token, how much every image region (one merged patch "
    "of the model's grid) adds to the logit of that token: the direct logit contributions c of "
    "method.md §1, after ReLU. The holistic map (method.md §2) sums the evidence of the whole "
    "response; the thinking / answer variants use only those tokens, attention is the attention-"
    "based variant. Colours: dark = no contribution, yellow = the map's maximum (or the largest "
    "token map of the image, with \u201cshared scale\u201d). Token shading: how much each token "
    "draws on the image(s), the sum of its map relative to the strongest token.")


def _asset(name: str) -> str:
    return resources.files("saliency_r1.viz").joinpath("assets", name).read_text(encoding="utf-8")


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return escape(str(value)) if value is not None else "\u2014"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, str):
        return escape(value)
    return escape(json.dumps(value, default=str, ensure_ascii=False))


def _boxes_html(result: Any, image: int, boxes: Boxes | None) -> str:
    width, height = result.image_sizes[image]
    parts = []
    for n, (x0, y0, x1, y1) in enumerate(boxes_for_image(boxes, image)):
        left, top = max(0.0, x0 / width * 100), max(0.0, y0 / height * 100)
        right, bottom = min(100.0, x1 / width * 100), min(100.0, y1 / height * 100)
        parts.append(
            f'<div class="sr-box" style="left:{left:.3f}%;top:{top:.3f}%;'
            f'width:{max(0.0, right - left):.3f}%;height:{max(0.0, bottom - top):.3f}%">'
            f'<span class="sr-box-tag">evidence {n + 1}</span></div>')
    return "".join(parts)


def _figure_html(result: Any, image: int, boxes: Boxes | None, max_side: int, ramp: str) -> str:
    width, height = result.image_sizes[image]
    h, w = tuple(result.token_maps[image].shape[-2:])
    uri = display_image_uri(result, image, max_side)
    many = len(result.token_maps) > 1
    name = f"Image {image + 1}" if many else "Image"
    placeholder = "" if result.images is not None else " (not stored: grey stand-in)"
    return (
        f'<figure class="sr-figure" data-image="{image}">'
        f'<div class="sr-stage" style="aspect-ratio:{width} / {height}">'
        f'<img class="sr-img" src="{uri}" alt="{escape(name)}">'
        f'<canvas class="sr-heat" width="{w}" height="{h}" aria-hidden="true"></canvas>'
        f'{_boxes_html(result, image, boxes)}</div>'
        f'<figcaption><span>{escape(name)}{placeholder} \u00b7 {width}\u00d7{height} px \u00b7 '
        f'grid {h}\u00d7{w}</span><span class="sr-legend" aria-label="colour scale">'
        f'<span class="sr-lo">0</span><span class="sr-ramp" style="background:{ramp}"></span>'
        f'<span class="sr-hi">\u2013</span></span></figcaption></figure>')


def _toolbar_html(result: Any, payload: dict[str, Any]) -> str:
    views = payload["images"][0]["views"] if payload["images"] else {}
    buttons = "".join(
        f'<button type="button" class="sr-view" data-view="{v}" aria-pressed="false">'
        f'{_VIEW_TITLES[v]}</button>' for v in _VIEW_TITLES if v in views)
    group = f'<div class="sr-views">{buttons}</div>' if buttons else "<div></div>"
    note = ""
    if result.holistic is None:
        reason = result.holistic_reason or "not computed"
        note = f'<p class="sr-warn" role="note">No holistic map: {escape(reason)}</p>'
    return (
        f'<div class="sr-toolbar" role="toolbar" aria-label="map controls">'
        f'{group}'
        f'<div class="sr-controls">'
        f'<label><input type="checkbox" class="sr-shared"> shared scale</label>'
        f'<label><input type="checkbox" class="sr-smooth"> smooth</label>'
        f'<label>opacity <input type="range" class="sr-opacity" min="0" max="100" value="75" '
        f'aria-label="heat map opacity"></label></div></div>{note}')


def _token_span(result: Any, k: int, mass: float, tab: bool) -> str:
    tok = result.tokens[k]
    cls = "sr-tok"
    if "\n" in tok and tok.strip() == "":
        cls += " sr-nl"
    if tok.startswith("<") and tok.endswith(">") and len(tok) > 2:
        cls += " sr-special"
    return (f'<span class="{cls}" role="button" tabindex="{0 if tab else -1}" data-k="{k}" '
            f'style="--m:{mass:.3f}" title="token {k} \u00b7 image share {mass:.2f}">'
            f'{escape(tok)}</span>')


def _tokens_html(result: Any) -> str:
    mass = token_mass(result.token_maps)
    groups: list[tuple[str, list[str]]] = []
    for k in range(len(result.tokens)):
        kind = span_kind(result, k)
        if not groups or groups[-1][0] != kind:
            groups.append((kind, []))
        groups[-1][1].append(_token_span(result, k, float(mass[k]) if len(mass) else 0.0, k == 0))
    parts = []
    for kind, spans in groups:
        body = "".join(spans)
        if kind in _KIND_LABELS:
            parts.append(f'<div class="sr-seg sr-seg-{kind}"><span class="sr-seg-label">'
                         f'{_KIND_LABELS[kind]}</span>{body}</div>')
        else:
            parts.append(f'<span class="sr-seg sr-seg-other">{body}</span>')
    return "".join(parts) or '<p class="sr-muted">(empty response)</p>'


def _scores_html(scores: Mapping[str, Any] | None) -> str:
    if not scores:
        return ""
    rows = []
    for name, value in scores.items():
        bar = ""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            bar = f'<span class="sr-bar"><span style="width:{100 * value:.1f}%"></span></span>'
        rows.append(f"<tr><th>{escape(str(name))}</th><td>{_num(value)}</td><td>{bar}</td></tr>")
    return f'<h3>Scores</h3><table class="sr-scores">{"".join(rows)}</table>'


def _meta_html(result: Any) -> str:
    rows = [("tokens", len(result.tokens)), ("images", len(result.token_maps)),
            ("image sizes", result.image_sizes), ("resized sizes", result.resized_sizes),
            ("patch pixels", result.patch_pixels)]
    for key, value in (result.meta or {}).items():
        if isinstance(value, Mapping):
            rows.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            rows.append((key, value))
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{_num(v)}</td></tr>" for k, v in rows)
    return f'<details class="sr-meta"><summary>Details</summary><table>{body}</table></details>'


def _section_html(result: Any, boxes: Boxes | None, scores: Mapping[str, Any] | None,
                  label: str | None, index: int, max_side: int) -> str:
    payload = section_payload(result, label)
    ramp = ramp_css()
    figures = "".join(_figure_html(result, i, boxes, max_side, ramp)
                      for i in range(len(result.token_maps)))
    head = f'<h2 class="sr-label">{escape(label)}</h2>' if label is not None else ""
    question = escape(result.question) if result.question else '<span class="sr-muted">(none)</span>'
    return (
        f'<section class="sr-report" id="sr-{index}" data-showing="">{head}'
        f'<div class="sr-cols"><div class="sr-visual">{_toolbar_html(result, payload)}'
        f'{figures}<p class="sr-caption" aria-live="polite"></p></div>'
        f'<div class="sr-text"><h3>Question</h3><p class="sr-question">{question}</p>'
        f'<h3>Response <span class="sr-hint">hover, click or use \u2190 \u2192 on a token</span>'
        f'</h3><div class="sr-tokens">{_tokens_html(result)}</div>'
        f'<div class="sr-keys"><span class="sr-key sr-key-think">thinking</span>'
        f'<span class="sr-key sr-key-answer">answer</span><span class="sr-key sr-key-mass">'
        f'shading = image share</span></div>{_scores_html(scores)}{_meta_html(result)}</div></div>'
        f'<script type="application/json" class="sr-data">{script_json(payload)}</script>'
        f'</section>')


def _page(title: str, body: str, compare: bool) -> str:
    js = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = _CSP.format(hash=f"sha256-{digest}")
    cls = "sr-main sr-compare" if compare else "sr-main"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="saliency-r1"><title>{escape(title)}</title>'
        f'<link rel="icon" href="data:,"><style>{_asset("report.css")}</style></head><body>'
        f'<header class="sr-head"><h1>{escape(title)}</h1><p>saliency map report \u00b7 '
        f'generated by saliency-r1</p></header><main class="{cls}">{body}</main>'
        f'<footer class="sr-note"><strong>What the maps mean.</strong> {escape(_NOTE)}</footer>'
        f'<script type="application/json" id="sr-lut">{script_json(lut_payload())}</script>'
        f'<script>{js}</script></body></html>\n')


def _write(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def report_html(result: Any, path: str | Path, boxes: Boxes | None = None,
                scores: Mapping[str, Any] | None = None, title: str | None = None, *,
                max_image_side: int = 768) -> Path:
    """Write one self-contained interactive HTML report of ``result`` and return its path.

    ``boxes``: pixel ``xyxy`` evidence boxes of image 0 (a list), or ``{image index: boxes}``.
    ``scores``: e.g. ``{"energy_pg": 0.41, "pg": 1.0}``, shown as a table.

    >>> import tempfile
    >>> from saliency_r1.viz import synthetic_result, synthetic_boxes
    >>> p = report_html(synthetic_result(), f"{tempfile.mkdtemp()}/r.html",
    ...                 boxes=synthetic_boxes(), scores={"energy_pg": 0.41, "pg": 1.0})
    >>> "https://" in p.read_text()
    False
    """
    body = _section_html(result, boxes, scores, None, 0, max_image_side)
    return _write(path, _page(title or "Saliency report", body, compare=False))


def comparison_html(sections: Sequence[Sequence[Any]], path: str | Path,
                    title: str | None = None, *, max_image_side: int = 640) -> Path:
    """Several results side by side in one page; each section is ``(label, result, boxes,
    scores)`` (``boxes`` and ``scores`` may be left off or None), e.g. before / after training.

    >>> import tempfile
    >>> from saliency_r1.viz import synthetic_result
    >>> p = comparison_html([("before", synthetic_result(seed=1), None, {"pg": 0.0}),
    ...                      ("after", synthetic_result(seed=2))], f"{tempfile.mkdtemp()}/c.html",
    ...                     "before / after")
    >>> p.read_text().count('class="sr-report"')
    2
    """
    parts = []
    for index, section in enumerate(sections):
        if not 2 <= len(section) <= 4:
            raise ValueError("each section must be (label, result[, boxes[, scores]])")
        label, result, boxes, scores = (*section, None, None)[:4]
        parts.append(_section_html(result, boxes, scores, str(label), index, max_image_side))
    return _write(path, _page(title or "Saliency comparison", "".join(parts), compare=True))


__all__ = ["report_html", "comparison_html"]
