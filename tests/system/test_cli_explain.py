"""`saliency-r1 explain`: single mode files and scores, one-line errors for each bad input class,
batch mode with good and bad rows, resuming, and HTML escaping (tiny checkpoint, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from saliency_r1.cli.main import main

RESPONSE = "<think>The circle is red.</think>red"
FILES = ("report.html", "holistic.png", "tokens.png", "result.json", "saliency/saliency.json",
         "saliency/saliency.safetensors", "saliency/image_0.png")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder of good, converted-on-load and broken image files (168 x 140 scenes)."""
    d = tmp_path_factory.mktemp("images")
    img = make_image()
    img.save(d / "good.png")
    data = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "text.png").write_text("this is not an image")
    img.convert("CMYK").save(d / "cmyk.jpg")
    img.convert("RGBA").save(d / "rgba.png")
    img.convert("L").save(d / "grey.png")
    Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257).save(d / "grey16.png")
    (d / "llama").mkdir()
    (d / "llama" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return d


def explain(tiny_dir, *args: str) -> int:
    return main(["explain", "--model", str(tiny_dir), *args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("saliency-r1: error: ")
    return lines[0]


def test_single_writes_all_files_and_scores(tiny_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    rc = explain(tiny_dir, "--image", str(images / "good.png"), "--question", "What colour is the circle?",
                 "--response", RESPONSE, "--box", "10,10,90,70", "--box", "[100, 60, 150, 120]",
                 "--out", str(out))
    assert rc == 0
    for name in FILES:
        assert (out / name).is_file(), name
    data = json.loads((out / "result.json").read_text())
    for key in ("energy_pg", "pg"):
        assert 0.0 <= data["scores"][key] <= 1.0
    assert data["boxes_xyxy"] == [[10, 10, 90, 70], [100, 60, 150, 120]]
    assert data["image_sizes"] == [[168, 140]] and data["model"] == str(tiny_dir)
    assert data["tokens"][data["think_span"][0] - 1] == "<think>"
    assert data["response_text"] == RESPONSE and {"trace_s", "load_s"} <= set(data["timings"])
    stdout = capsys.readouterr().out
    assert "energy-PG" in stdout and "PG" in stdout and str(out / "report.html") in stdout

    from saliency_r1 import SaliencyResult

    assert SaliencyResult.load(out / "saliency").tokens == data["tokens"]


def test_boxes_and_masks_cover_the_image(tiny_dir, images, tmp_path):
    """Two boxes are a union (the two halves score 1.0), and so does a polygon mask of the whole image."""
    halves = ["--box", "0,0,84,140", "--box", "[84, 0, 168, 140]"]
    poly = ["--mask", "[[0, 0], [168, 0], [168, 140], [0, 140]]", "--which", "answer"]
    for n, extra in enumerate((halves, poly)):
        out = tmp_path / str(n)
        assert explain(tiny_dir, "--image", str(images / "good.png"), "--question", "Q?", "--response", RESPONSE,
                       "--out", str(out), *extra) == 0
        scores = json.loads((out / "result.json").read_text())["scores"]
        assert scores == {"energy_pg": pytest.approx(1.0), "pg": 1.0}


def test_question_with_script_is_escaped(tiny_dir, images, tmp_path):
    question = 'Is it <script>alert("x")</script> <img src=x onerror=alert(1)> red?'
    out = tmp_path / "xss"
    assert explain(tiny_dir, "--image", str(images / "good.png"), "--question", question, "--response", RESPONSE,
                   "--out", str(out)) == 0
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert json.loads((out / "result.json").read_text())["question"] == question


def test_odd_image_modes_are_converted(tiny_dir, images, tmp_path):
    from saliency_r1.cli.explain import load_image

    for name in ("cmyk.jpg", "rgba.png", "grey.png", "grey16.png"):
        img = load_image(images / name)
        assert (img.mode, img.size) == ("RGB", (168, 140)), name
    out = tmp_path / "o"  # and one of them end to end
    assert explain(tiny_dir, "--image", str(images / "grey16.png"), "--question", "Q?", "--response", RESPONSE,
                   "--box", "10,10,90,70", "--out", str(out)) == 0
    assert json.loads((out / "result.json").read_text())["image_sizes"] == [[168, 140]]


BAD = {
    "missing image": (["--image", "{d}/nope.png"], "does not exist"),
    "truncated image": (["--image", "{d}/truncated.png"], "not a readable image"),
    "not an image": (["--image", "{d}/text.png"], "not a readable image"),
    "box outside": (["--box", "200,150,300,300"], "outside"),
    "inverted box": (["--box", "[90, 70, 10, 10]"], "inverted"),
    "zero-area box": (["--box", "10,10,10,70"], "zero area"),
    "non-numeric box": (["--box", "10,ten,90,70"], "non-numeric"),
    "three numbers": (["--box", "10,10,90"], "exactly 4"),
    "bad polygon": (["--mask", "[[1, 2]]"], "at least 3"),
    "not a VLM": (["--model", "{d}/llama"], "not a supported VLM"),
    "no config": (["--model", "{d}"], "config.json missing"),
    "empty question": (["--question", " "], "question is empty"),
    "no GPU": (["--device", "cuda:0"], "CUDA") if not __import__("torch").cuda.is_available() else
              (["--device", "nonsense"], "unknown --device"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2(tiny_dir, images, tmp_path, capsys, case):
    extra, needle = BAD[case]
    extra = [a.format(d=images) for a in extra]
    args = ["--model", str(tiny_dir), "--image", str(images / "good.png"), "--question", "Q?",
            "--response", RESPONSE, "--out", str(tmp_path / "o")]
    for k in range(0, len(extra), 2):  # later options override earlier ones
        args += extra[k:k + 2]
    assert main(["explain", *args]) == 2
    line = one_error_line(capsys)
    assert needle in line and ";" in line  # the problem, then the fix


def test_errors_in_a_real_process_have_no_traceback(tiny_dir, images, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "saliency_r1.cli.main", "explain", "--model", str(images / "llama"),
           "--image", str(images / "good.png"), "--question", "Q?"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "not a supported VLM" in proc.stderr and proc.stdout == ""


def _rows(images: Path) -> list[str]:
    good = {"image": "good.png", "question": "What colour is the circle?", "response": RESPONSE}
    shapes = {"image": str(images / "rgba.png"), "question": "Is there a circle?", "answer": "yes",
              "boxes": [[10.0, 10.0, 90.0, 70.0]], "masks": None, "reasoning": "a circle", "source": "shapes/x",
              "id": "shapes-0", "width": 168, "height": 140}  # ShapesWorld export schema, absolute path
    return [
        json.dumps({**good, "id": "good1", "boxes": [[10, 10, 90, 70]]}),
        json.dumps({**good, "id": "good2", "boxes": ["0.1,0.1,0.5,0.5"], "box_format": "norm_xyxy"}),
        json.dumps({**good, "id": "missing", "image": "nope.png"}),
        json.dumps({**good, "id": "badbox", "boxes": [[90, 70, 10, 10]]}),
        '{"id": "broken", "image": "good.png", "question": ',
        "",
        json.dumps({**good, "id": "textfile", "image": "text.png"}),
        json.dumps({**good, "id": "good1", "question": "a duplicate id"}),
        json.dumps(shapes),
    ]


def _mtimes(out: Path, ids) -> dict[str, int]:
    return {i: (out / i / "result.json").stat().st_mtime_ns for i in ids}


def _ok_records(out: Path) -> list[dict]:
    recs = [json.loads(ln) for ln in (out / "records.jsonl").read_text().splitlines() if ln.startswith("{")
            and ln.endswith("}")]
    return [r for r in recs if r["status"] == "ok"]


def test_batch_mixed_rows_then_resume(tiny_dir, images, tmp_path, capsys):
    rows = images / "rows.jsonl"
    rows.write_text("\n".join(_rows(images)) + "\n")
    out = tmp_path / "batch"
    args = ["--batch", str(rows), "--out", str(out), "--max-new-tokens", "4"]
    done = ["good1", "good2", "shapes-0"]

    assert explain(tiny_dir, *args) == 1  # finished, with skipped rows
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows"], summary["done"], summary["resumed"], summary["skipped"]) == (8, 3, 0, 5)
    assert {(r["row"], r["id"]) for r in summary["skipped_rows"]} == {
        (3, "missing"), (4, "badbox"), (5, "row-5"), (7, "textfile"), (8, "good1")}
    assert summary["scored"] == 2 and 0.0 <= summary["mean_energy_pg"] <= 1.0
    assert "mean energy-PG" in (out / "summary.md").read_text()
    assert "mean energy-PG" in capsys.readouterr().out
    for i in done:
        assert all((out / i / f).is_file() for f in FILES)
    shapes = json.loads((out / "shapes-0" / "result.json").read_text())
    assert shapes["reference_answer"] == "yes" and not shapes["response_given"]
    before = _mtimes(out, done)

    assert explain(tiny_dir, *args) == 1  # resume: nothing recomputed
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["resumed"], summary["skipped"]) == (0, 3, 5)
    assert _mtimes(out, done) == before and len(_ok_records(out)) == 3

    # a crash: good2's record lost (its folder left behind), a half-written line and a partial folder
    lines = [ln for ln in (out / "records.jsonl").read_text().splitlines() if '"good2"' not in ln]
    (out / "records.jsonl").write_text("\n".join(lines) + '\n{"id": "good3", "stat')
    (out / ".partial-good3").mkdir()
    assert explain(tiny_dir, *args) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["resumed"]) == (1, 2)
    after = _mtimes(out, done)
    assert after["good1"] == before["good1"] and after["shapes-0"] == before["shapes-0"]
    assert after["good2"] != before["good2"] and not (out / ".partial-good3").exists()
    assert sorted(r["id"] for r in _ok_records(out)) == sorted(done)


def test_batch_needs_out_and_rows(tiny_dir, images, tmp_path, capsys):
    assert explain(tiny_dir, "--batch", str(images / "rows.jsonl")) == 2
    assert "--out" in one_error_line(capsys)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert explain(tiny_dir, "--batch", str(empty), "--out", str(tmp_path / "o")) == 2
    assert "no rows" in one_error_line(capsys)
    assert explain(tiny_dir, "--batch", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")) == 2
    assert "does not exist" in one_error_line(capsys)


def test_batch_refuses_other_options_and_foreign_folders(tiny_dir, images, tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    (tmp_path / "good.png").write_bytes((images / "good.png").read_bytes())  # inside the batch file's folder
    rows.write_text(json.dumps({"id": "src", "image": "good.png", "question": "Q?",
                                "response": RESPONSE, "boxes": [[10, 10, 90, 70]]}) + "\n")
    out = tmp_path / "b"
    (out / "src").mkdir(parents=True)
    (out / "src" / "precious.txt").write_text("not ours")
    assert explain(tiny_dir, "--batch", str(rows), "--out", str(out)) == 1  # the row is skipped...
    assert (out / "src" / "precious.txt").is_file()  # ...and the foreign folder left alone
    reason = json.loads((out / "summary.json").read_text())["skipped_rows"][0]["reason"]
    assert "not an explain output folder" in reason
    capsys.readouterr()
    assert explain(tiny_dir, "--batch", str(rows), "--out", str(out), "--which", "answer") == 2
    assert "other options" in one_error_line(capsys)
