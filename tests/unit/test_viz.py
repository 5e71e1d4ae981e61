"""viz: PNG figures and the self-contained HTML report, on hand-built results (no model)."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency_r1.viz import (comparison_html, holistic_png, overlay_png, report_html,
                             token_grid_png)
from saliency_r1.viz._payload import script_json
from saliency_r1.viz.png import _layout

from conftest import XSS_ATTR, XSS_CLOSE, XSS_SCRIPT, hand_result  # noqa: F401  (shared with the browser test)

class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(path: Path) -> _Tags:
    p = _Tags()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def assert_self_contained(page: Path) -> _Tags:
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    tags = parse(page)
    for tag, attrs in tags.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event-handler attributes at all
            if name in ("src", "href", "action", "srcset", "poster"):
                assert value is not None and (value.startswith("data:") or value.startswith("#")), \
                    (tag, name, value[:40])
    return tags


# ---------------------------------------------------------------- PNG

def test_overlay_png_size_boxes_and_mathtext(tmp_path):
    img = Image.new("RGB", (90, 50), "white")
    for title, cbar in (("cost $5 and $x^{2", True), (None, False)):
        p = overlay_png(img, torch.rand(5, 9), tmp_path / f"o{cbar}.png", boxes=[(5, 5, 40, 30)],
                        title=title, colorbar=cbar)
        (fw, fh), _, _ = _layout(img.size, 640, 100, title is not None, cbar)
        with Image.open(p) as out:
            assert out.format == "PNG" and out.size == (round(fw * 100), round(fh * 100))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["oFalse.png", "oTrue.png"]


def test_png_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    from matplotlib.figure import Figure

    def boom(self, fname, **kw):
        Path(fname).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        overlay_png(Image.new("RGB", (20, 20)), torch.rand(2, 2), target)
    assert target.read_bytes() == b"old" and [f.name for f in tmp_path.iterdir()] == ["keep.png"]


def test_holistic_and_token_grid_png(tmp_path):
    two = hand_result(n=5, n_images=2, tokens=["$", "$x$", "a\nb", "", "\\frac{"])
    p1 = holistic_png(two, tmp_path / "h1.png", image=1, boxes=[(0, 0, 30, 30)])
    p2 = holistic_png(hand_result(holistic=False, images=False), tmp_path / "none.png")
    p3 = token_grid_png(two, tmp_path / "grid.png", image=1, max_tokens=3, cols=2)
    for p in (p1, p2, p3):
        with Image.open(p) as out:
            out.load()
            assert out.mode in ("RGBA", "RGB") and out.size[0] in (640, 1280)
    with pytest.raises(ValueError, match="out of range"):
        holistic_png(two, tmp_path / "x.png", image=2)


# ---------------------------------------------------------------- HTML

def test_script_json_cannot_break_out():
    text = script_json({"t": [XSS_CLOSE, "a&b", "\u2029"]})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"t": [XSS_CLOSE, "a&b", "\u2029"]}


def test_report_is_self_contained_and_escapes_everything(tmp_path):
    tokens = [" ok", XSS_SCRIPT, XSS_ATTR, XSS_CLOSE, "$5", " end"]
    r = hand_result(n=6, tokens=tokens, question=XSS_SCRIPT + XSS_ATTR)
    r.meta[XSS_ATTR] = XSS_SCRIPT
    page = report_html(r, tmp_path / "r.html", boxes=[(10, 10, 40, 30)],
                       scores={XSS_ATTR: 0.5, "pg": 1.0}, title=XSS_CLOSE)
    text = page.read_text(encoding="utf-8")
    assert [f.name for f in tmp_path.iterdir()] == ["r.html"]
    for raw in (XSS_SCRIPT, XSS_ATTR, XSS_CLOSE, "<img src=x"):
        assert raw not in text
    assert "&lt;script&gt;window.__pwned=1;alert(1)&lt;/script&gt;" in text
    tags = assert_self_contained(page)
    assert [t for t, _ in tags.tags].count("img") == 1       # only the inlined image
    kinds = [a.get("type") or a.get("class") for a, _ in tags.scripts]
    assert kinds == ["application/json", "application/json", None]  # data, lut, page script
    data = json.loads(tags.scripts[0][1])
    assert data["tokens"] == tokens and len(data["mass"]) == 6 and data["initial"] == "view:holistic"
    js = tags.scripts[2][1]
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in text and "default-src 'none'" in text


def test_report_marks_spans_and_maps(tmp_path):
    r = hand_result(n=8)
    text = report_html(r, tmp_path / "r.html", scores={"energy_pg": 0.41}).read_text()
    think = re.search(r'class="sr-seg sr-seg-think">(.*?)</div>', text).group(1)
    answer = re.search(r'class="sr-seg sr-seg-answer">(.*?)</div>', text).group(1)
    assert re.findall(r'data-k="(\d+)"', think) == ["1", "2", "3", "4"]   # positions 11..14
    assert re.findall(r'data-k="(\d+)"', answer) == ["6", "7"]
    assert "energy_pg" in text and "0.410" in text and 'data-view="think"' in text
    data = json.loads(parse(tmp_path / "r.html").scripts[0][1])
    q = np.frombuffer(base64.b64decode(data["images"][0]["q"]), np.uint8).reshape(8, 3, 4)
    m = r.token_maps[0].numpy()
    k = int(np.argmax(m.reshape(8, -1).max(1)))
    assert q[k].max() == 255 and np.allclose(q[k] / 255 * data["images"][0]["hi"][k], m[k],
                                             atol=m[k].max() / 255)


def test_report_two_images_no_holistic_no_images(tmp_path):
    r = hand_result(n=4, n_images=2, holistic=False, images=False)
    page = report_html(r, tmp_path / "r.html", boxes={1: [(0, 0, 10, 10)]})
    text = page.read_text()
    assert "No holistic map: no &lt;/think&gt; tag: spans unknown" in text
    assert text.count('class="sr-figure"') == 2 and text.count('class="sr-box"') == 1
    assert 'class="sr-view"' not in text
    data = json.loads(parse(page).scripts[0][1])
    assert len(data["images"]) == 2 and data["initial"].startswith("token:")
    assert_self_contained(page)


def test_report_size_512_tokens_32x32(tmp_path):
    r = hand_result(n=512, grid=(32, 32), size=(896, 896))
    page = report_html(r, tmp_path / "big.html")
    assert page.stat().st_size < 5_000_000


def test_comparison_sections(tmp_path):
    a, b = hand_result(seed=1), hand_result(seed=2, n_images=2)
    page = comparison_html([("before <b>", a, None, {"pg": 0.0}), ("after", b)],
                           tmp_path / "c.html", "before / after")
    text = page.read_text()
    assert 'id="sr-0"' in text and 'id="sr-1"' in text and "before &lt;b&gt;" in text
    assert len([s for s in parse(page).scripts if s[0].get("class") == "sr-data"]) == 2
    assert_self_contained(page)
    with pytest.raises(ValueError, match="label, result"):
        comparison_html([("only label",)], tmp_path / "bad.html")


# ---------------------------------------------------------------- hygiene

def test_doctests():
    import saliency_r1.viz as viz
    from saliency_r1.viz import _common, html, png, synthetic

    for mod in (viz, html, png, synthetic, _common):
        failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert failed == 0, mod.__name__


def test_empty_response(tmp_path):
    r = hand_result(n=0, tokens=[])
    r.think_span = r.answer_span = None
    text = report_html(r, tmp_path / "e.html").read_text()
    assert "(empty response)" in text
    with Image.open(token_grid_png(r, tmp_path / "e.png")) as out:
        assert out.size[0] == 1280
