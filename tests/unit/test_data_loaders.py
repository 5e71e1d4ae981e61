"""Loaders: small fixtures in the real formats, every bad-row rule, and the box conventions."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from saliency_r1.data import FORMATS, LoadResult, load
from saliency_r1.data._boxes import pixels_to_square_padded, square_padded_to_pixels
from saliency_r1.errors import InputError

PROMPT = " Please provide the bounding box coordinate of the region that can help you answer the question better."


def _img(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def _vcot_norm(box, w, h) -> str:
    """What Visual-CoT's converter writes in the first gpt turn (square padding, 3 decimals)."""
    x1, y1, x2, y2 = box
    if w > h:
        y1, y2 = y1 + (w - h) // 2, y2 + (w - h) // 2
    else:
        x1, x2 = x1 + (h - w) // 2, x2 + (h - w) // 2
    s = max(w, h)
    return "[%0.3f, %0.3f, %0.3f, %0.3f]" % (x1 / s, y1 / s, x2 / s, y2 / s)


def _vcot_row(rel, question, answer, pixel_box=None, norm=None, qid=0, dataset="gqa"):
    image = [rel] + ([f"{rel}###[{', '.join(str(v) for v in pixel_box)}]"] if pixel_box is not None else [])
    return {"dataset": dataset, "split": "train", "question_id": qid, "image": image, "conversations": [
        {"from": "human", "value": "<image>\n" + question + PROMPT},
        {"from": "gpt", "value": norm or "[0.100, 0.100, 0.200, 0.200]"},
        {"from": "human", "value": "<image>"},
        {"from": "gpt", "value": answer}]}


@pytest.fixture
def vcot(tmp_path):
    _img(tmp_path / "cot/gqa/wide.jpg", (200, 100))
    _img(tmp_path / "cot/gqa/tall.jpg", (100, 160))
    _img(tmp_path / "outside.jpg", (10, 10))
    rows = [
        _vcot_row("cot/gqa/wide.jpg", "What is red?", "the car", [20, 10, 120, 60], _vcot_norm([20, 10, 120, 60], 200, 100), 1),
        _vcot_row("cot/gqa/wide.jpg", "No pixel box?", "fallback", None, _vcot_norm([20, 10, 120, 60], 200, 100), 2),
        _vcot_row("cot/gqa/tall.jpg", "Tall?", "yes", None, _vcot_norm([5, 40, 60, 150], 100, 160), 3),
        _vcot_row("../outside.jpg", "Escape?", "no", [1, 1, 5, 5], None, 4),
        _vcot_row("cot/gqa/missing.jpg", "Missing?", "no", [1, 1, 5, 5], None, 5),
        _vcot_row("cot/gqa/wide.jpg", "Outside?", "no", [300, 10, 400, 60], None, 6),
        _vcot_row("cot/gqa/wide.jpg", "Clipped?", "ok", [150, 50, 260, 130], None, 7),
        _vcot_row("cot/gqa/wide.jpg", "Inverted?", "no", [120, 10, 20, 60], None, 8),
        _vcot_row("cot/gqa/wide.jpg", "Text box?", "no", ["a", 10, 20, 60], None, 9),
        _vcot_row("cot/gqa/wide.jpg", "Empty answer?", "  ", [20, 10, 120, 60], None, 10),
        _vcot_row("cot/gqa/wide.jpg", "Zero area?", "no", [20, 10, 20, 60], None, 11),
    ]
    (tmp_path / "viscot_train.json").write_text(json.dumps(rows, indent=4))
    return tmp_path / "viscot_train.json"


def test_visual_cot(vcot, caplog):
    with caplog.at_level(logging.WARNING):
        res = load(vcot, format="visual_cot")
    by_q = {s["question"]: s for s in res.samples}
    assert set(by_q) == {"What is red?", "No pixel box?", "Tall?", "Clipped?"}
    s = by_q["What is red?"]
    assert s["answer"] == "the car" and s["boxes"] == [[20.0, 10.0, 120.0, 60.0]]
    assert (s["width"], s["height"], s["source"], s["id"]) == (200, 100, "visual_cot/gqa", "1")
    assert s["image"] == str(vcot.parent / "cot/gqa/wide.jpg") and s["masks"] is None and s["reasoning"] is None
    # the square-padded normalised box of the gpt turn, converted back with the image header
    assert by_q["No pixel box?"]["boxes"][0] == pytest.approx([20, 10, 120, 60], abs=0.2)
    assert by_q["Tall?"]["boxes"][0] == pytest.approx([5, 40, 60, 150], abs=0.2)
    assert by_q["Clipped?"]["boxes"] == [[150.0, 50.0, 200.0, 100.0]] and res.clipped == 1
    skipped = {row: (field, reason) for row, field, reason in res.skipped}
    assert skipped.keys() == {4, 5, 6, 8, 9, 10, 11}
    assert skipped[4][0] == "image" and "escapes" in skipped[4][1]
    assert skipped[5][0] == "image" and "not found" in skipped[5][1]
    assert "outside" in skipped[6][1] and "inverted" in skipped[8][1] and "non-numeric" in skipped[9][1]
    assert skipped[10] == ("answer", "empty") and "zero-area" in skipped[11][1]
    assert sum("row 4 skipped" in r.message for r in caplog.records) == 1
    assert res.summary().startswith("visual_cot: 4 samples") and "7 skipped" in res.summary()


def test_visual_cot_jsonl_with_malformed_line(tmp_path):
    _img(tmp_path / "a.png", (64, 48))
    good = json.dumps(_vcot_row("a.png", "Q?", "A", [1, 2, 30, 40]))
    (tmp_path / "d.jsonl").write_text(good + "\n{not json\n\n" + good + "\n[1, 2]\n")
    res = load(tmp_path / "d.jsonl", format="visual_cot")
    assert len(res.samples) == 2 and res.rows == 4
    assert [(r, f) for r, f, _ in res.skipped] == [(2, "json"), (5, "json")]


def test_visual_cot_meta(tmp_path):
    _img(tmp_path / "cot/flickr30k/x.jpg", (120, 90))
    _img(tmp_path / "cot/textvqa/t.jpg", (50, 50))
    rows = [
        {"question": "Where?", "answer": "left", "bboxs": [[0, 0, 10, 10], [20, 20, 60, 80]], "image": "x.jpg",
         "width": 120, "height": 90, "dataset": "flickr30k", "split": "train"},
        {"question": "Size?", "answer": "big", "bboxs": [[0, 0, 10, 10]], "image": "x.jpg",
         "width": 240, "height": 180, "dataset": "flickr30k"},
        {"question": "Text?", "answer": "stop", "bboxs": [[5, 5, 20, 20]], "image": "t.jpg",
         "width": 50, "height": 50, "dataset": "textcap"},
        {"question": "None?", "answer": "x", "bboxs": [], "image": "x.jpg", "dataset": "flickr30k"},
    ]
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    res = load(tmp_path / "meta.jsonl", format="visual_cot_meta")
    assert [s["question"] for s in res.samples] == ["Where?", "Text?"]
    assert res.samples[0]["boxes"] == [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 60.0, 80.0]]
    assert res.samples[1]["source"] == "visual_cot/textcap"
    assert [(r, f) for r, f, _ in res.skipped] == [(2, "width/height"), (4, "bboxs")]
    assert len(load(tmp_path / "meta.jsonl", format="visual_cot_meta", check_size=False).samples) == 3


def test_saliency_r1_8k(tmp_path):
    _img(tmp_path / "img/a.jpg", (200, 100))
    rows = [
        {"problem": "<image>What brand?", "solution": "<answer> Nike </answer>", "image": "img/a.jpg",
         "bbox": "[0.1, 0.2, 0.5, 0.6]"},
        {"problem": "Plain?", "solution": "blue", "image": "img/a.jpg", "bbox": "[0.0, 0.0, 1.0, 1.0]",
         "width": 200, "height": 100},
        {"problem": "Think?", "solution": "<think>look left</think><answer>3</answer>", "image": "img/a.jpg",
         "bbox": [0.125, 0.375, 0.5, 0.625], "box_format": "square_padded"},
        {"problem": "Pixels given as normalised?", "solution": "x", "image": "img/a.jpg", "bbox": "[20, 10, 120, 60]"},
        {"problem": "No answer?", "solution": "<answer></answer>", "image": "img/a.jpg", "bbox": "[0.1, 0.1, 0.2, 0.2]"},
    ]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    res = load(tmp_path / "train.json", format="saliency_r1_8k")
    a, b, c = res.samples
    assert (a["question"], a["answer"], a["boxes"]) == ("What brand?", "Nike", [[20.0, 20.0, 100.0, 60.0]])
    assert b["answer"] == "blue" and b["boxes"] == [[0.0, 0.0, 200.0, 100.0]]
    assert (c["reasoning"], c["answer"], c["boxes"]) == ("look left", "3", [[25.0, 25.0, 100.0, 75.0]])
    assert [(r, f) for r, f, _ in res.skipped] == [(4, "bbox"), (5, "answer")]
    # the option changes the default convention; a row's own box_format still wins
    pixels = load(tmp_path / "train.json", format="saliency_r1_8k", box_format="pixels", limit=4)
    assert pixels.rows == 4 and not pixels.skipped
    assert pixels.samples[2]["boxes"] == c["boxes"] and pixels.samples[3]["boxes"] == [[20.0, 10.0, 120.0, 60.0]]


def test_saliency_r1_8k_parquet_with_embedded_image(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    Image.new("RGB", (40, 20)).save(buf, format="PNG")
    table = pa.Table.from_pylist([{"problem": "Q?", "solution": "A", "bbox": "[0.5, 0.5, 1.0, 1.0]",
                                   "image": {"bytes": buf.getvalue(), "path": "x.png"}}])
    pq.write_table(table, tmp_path / "d.parquet")
    (s,) = load(tmp_path / "d.parquet", format="saliency_r1_8k").samples
    assert s["image"].size == (40, 20) and s["boxes"] == [[20.0, 10.0, 40.0, 20.0]]


def test_llava(tmp_path):
    _img(tmp_path / "i.jpg", (30, 30))
    long = " ".join(["word"] * 250)
    rows = [
        {"id": "r1", "image": "i.jpg", "conversations": [
            {"from": "human", "value": "<image>\nFirst?"}, {"from": "gpt", "value": "<think>hmm</think>one"},
            {"from": "human", "value": "Second?"}, {"from": "gpt", "value": long},
            {"from": "human", "value": "Third?"}, {"from": "gpt", "value": "<SUMMARY>s</SUMMARY> <REASONING>r</REASONING>"
                                                                             " <CONCLUSION>three</CONCLUSION>"}]},
        {"id": "r2", "image": "i.jpg", "conversations": [{"role": "user", "content": "Q?"},
                                                          {"role": "assistant", "content": "A"}]},
        {"id": "r3", "conversations": [{"from": "human", "value": "text only"}, {"from": "gpt", "value": "x"}]},
        {"id": "r4", "image": "i.jpg", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
    ]
    (tmp_path / "cold.json").write_text(json.dumps(rows))
    res = load(tmp_path / "cold.json", format="llava")
    assert [(s["id"], s["question"], s["answer"], s["reasoning"]) for s in res.samples] == [
        ("r1-0", "First?", "one", "hmm"), ("r1-2", "Third?", "three", "s r"), ("r2", "Q?", "A", None)]
    assert all(s["boxes"] == [] and s["source"] == "llava" for s in res.samples)
    assert res.filtered == 1 and "1 responses filtered" in res.summary()
    assert [(r, f) for r, f, _ in res.skipped] == [(3, "image"), (4, "conversations")]
    assert len(load(tmp_path / "cold.json", format="llava", max_response_words=None).samples) == 4


def test_shapes_rows_are_checked(tmp_path):
    _img(tmp_path / "images/a.png", (20, 20))
    row = {"image": "images/a.png", "question": "Q?", "answer": "a", "boxes": [[1, 1, 5, 5]], "width": 20,
           "height": 20, "masks": [[[1, 1], [4, 1], [4, 4]]], "reasoning": None, "source": "shapes", "id": "x"}
    bad_mask = dict(row, masks=[[[1, 1], [2, "b"]]])
    escape = dict(row, image="../../etc/passwd")
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in (row, bad_mask, escape)))
    res = load(tmp_path, format="shapes")
    assert len(res.samples) == 1 and res.samples[0]["masks"] == [[[1.0, 1.0], [4.0, 1.0], [4.0, 4.0]]]
    assert [(r, f) for r, f, _ in res.skipped] == [(2, "masks"), (3, "image")]


def test_image_root_and_file_errors(tmp_path):
    _img(tmp_path / "imgs/a.png", (10, 10))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann/d.jsonl").write_text(json.dumps(_vcot_row("a.png", "Q?", "A", [1, 1, 5, 5])))
    assert load(tmp_path / "ann/d.jsonl", format="visual_cot").skipped[0][1] == "image"
    assert len(load(tmp_path / "ann/d.jsonl", format="visual_cot", image_root=tmp_path / "imgs").samples) == 1
    with pytest.raises(InputError, match="visual_cot_meta"):
        load(tmp_path / "ann/d.jsonl", format="coco")
    with pytest.raises(InputError, match="accepted"):
        load(tmp_path / "ann/d.jsonl", format="visual_cot", box_format="pixels")
    with pytest.raises(InputError, match="not found"):
        load(tmp_path / "nope.json", format="llava")
    (tmp_path / "broken.json").write_text('[{"a": 1},')
    with pytest.raises(InputError, match="not valid JSON"):
        load(tmp_path / "broken.json", format="llava")
    assert set(FORMATS) == {"visual_cot", "visual_cot_det", "visual_cot_meta", "saliency_r1_8k", "llava", "shapes"}
    assert isinstance(load(tmp_path / "ann/d.jsonl", format="visual_cot", limit=0), LoadResult)


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 3000), h=st.integers(1, 3000), data=st.data())
def test_square_padding_round_trip(w, h, data):
    x1 = data.draw(st.floats(0, w - 0.5))
    y1 = data.draw(st.floats(0, h - 0.5))
    box = [x1, y1, data.draw(st.floats(x1 + 0.5, w)), data.draw(st.floats(y1 + 0.5, h))]
    norm = pixels_to_square_padded(box, w, h)
    assert all(0 <= v <= 1 for v in norm)
    assert square_padded_to_pixels(norm, w, h) == pytest.approx(box, abs=1e-6)


def test_json_layouts_and_hf_export_of_loaded_samples(tmp_path):
    from saliency_r1.data import to_hf_dataset

    _img(tmp_path / "i.jpg", (30, 20))
    row = {"id": "r", "image": "i.jpg", "conversations": [{"from": "human", "value": "Q?"},
                                                          {"from": "gpt", "value": "A"}]}
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [row, row]}, indent=2))
    (tmp_path / "single.json").write_text(json.dumps(row, indent=2))
    (tmp_path / "bom.jsonl").write_text("\ufeff" + json.dumps(row) + "\n" + json.dumps(row), encoding="utf-8")
    assert [len(load(tmp_path / n, format="llava")) for n in ("wrapped.json", "single.json", "bom.jsonl")] == [2, 1, 2]
    ds = to_hf_dataset(load(tmp_path / "wrapped.json", format="llava").samples)
    assert ds[0]["image"].size == (30, 20) and ds[0]["masks"] is None and ds[0]["boxes"] == []
