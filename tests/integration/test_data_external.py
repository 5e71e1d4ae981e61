"""The published datasets' layouts, written by ``datasets`` itself, load through ``saliency_r1.data.load``.

Every fixture is written with ``datasets``' own save functions (``save_to_disk``, ``to_parquet``,
``to_json``) in the schemas the datasets publish (rows of the Visual-CoT files are copied verbatim
from deepcs233/Visual-CoT's ``viscot_benchmark/``); images are blank files of the real sizes or
``datasets.Image`` columns. The hub caches are laid out where huggingface_hub / datasets look for
them offline: see ``docs/datasets.md``.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil

import datasets
import pytest
from datasets import Dataset, DatasetDict, Features, Image as HFImage, Value
from PIL import Image

from saliency_r1.data import DataSource, load, load_sources
from saliency_r1.errors import InputError

datasets.disable_progress_bars()


@pytest.fixture(autouse=True)
def _own_hf_home(tmp_path, monkeypatch):
    """datasets' lock files (and any cache lookup) go to a fresh HF_HOME, not the user's."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(var, raising=False)

# ------------------------------------------------------------------ saliency-r1-8k (peterant330/saliency-r1-8k)
R1_8K = Features({"dataset": Value("string"), "split": Value("string"), "question_id": Value("int64"),
                  "problem": Value("string"), "solution": Value("string"), "bbox": Value("string"),
                  "image": HFImage()})


def _r1_8k(n: int, start: int = 0, bad: tuple[int, ...] = ()) -> Dataset:
    """``n`` rows of the saliency-r1-8k schema; a 40x20 image, bbox normalised; rows in ``bad`` get
    an inverted box."""
    rows = {k: [] for k in R1_8K}
    for i in range(start, start + n):
        rows["dataset"].append("gqa" if i % 2 else "CUB")
        rows["split"].append("train")
        rows["question_id"].append(i)
        rows["problem"].append(f"Question {i}?")
        rows["solution"].append(f"answer {i}")
        rows["bbox"].append("[0.5, 0.5, 0.25, 1.0]" if i in bad else "[0.25, 0.5, 0.75, 1.0]")
        rows["image"].append(Image.new("RGB", (40, 20), (i, 0, 0)))
    return Dataset.from_dict(rows, features=R1_8K)


def _check_8k(samples, ids):
    assert [s["id"] for s in samples] == [str(i) for i in ids]
    for s in samples:
        assert s["image"].size == (40, 20) and (s["width"], s["height"]) == (40, 20)
        assert s["boxes"] == [[10.0, 10.0, 30.0, 20.0]]
        assert s["question"] == f"Question {s['id']}?" and s["answer"] == f"answer {s['id']}"
        assert s["source"] == ("saliency_r1_8k/gqa" if int(s["id"]) % 2 else "saliency_r1_8k/CUB")
        assert s["image"].getpixel((0, 0)) == (int(s["id"]), 0, 0)


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    _r1_8k(3).save_to_disk(tmp_path / "ds")
    _check_8k(load(tmp_path / "ds", format="saliency_r1_8k").samples, [0, 1, 2])
    DatasetDict({"train": _r1_8k(3), "test": _r1_8k(2, start=10)}).save_to_disk(tmp_path / "dd")
    _check_8k(load(tmp_path / "dd", format="saliency_r1_8k").samples, [0, 1, 2])
    _check_8k(load(tmp_path / "dd", format="saliency_r1_8k", split="test").samples, [10, 11])
    with pytest.raises(InputError, match=r"no split 'validation' \(splits: train, test\)"):
        load(tmp_path / "dd", format="saliency_r1_8k", split="validation")


def test_hub_shard_folder_and_glob_with_row_numbers_across_shards(tmp_path, caplog):
    (tmp_path / "data").mkdir()
    _r1_8k(3).to_parquet(tmp_path / "data/train-00000-of-00002.parquet")
    _r1_8k(3, start=3, bad=(4,)).to_parquet(tmp_path / "data/train-00001-of-00002.parquet")
    _r1_8k(2, start=10).to_parquet(tmp_path / "data/test-00000-of-00001.parquet")
    with caplog.at_level(logging.WARNING):
        res = load(tmp_path, format="saliency_r1_8k")
    _check_8k(res.samples, [0, 1, 2, 3, 5])
    assert res.rows == 6 and [(r, f) for r, f, _ in res.skipped] == [(5, "bbox")]
    assert res.locate(5) == (str(tmp_path / "data/train-00001-of-00002.parquet"), 2)
    assert any("train-00001-of-00002.parquet row 2 skipped" in r.message for r in caplog.records)
    _check_8k(load(tmp_path, format="saliency_r1_8k", split="test").samples, [10, 11])
    _check_8k(load(str(tmp_path / "data/train-*.parquet"), format="saliency_r1_8k", limit=4).samples, [0, 1, 2, 3])
    _check_8k(load(tmp_path, format="saliency_r1_8k", data_files="data/test-*").samples, [10, 11])
    with pytest.raises(InputError, match="no split 'validation'"):
        load(tmp_path, format="saliency_r1_8k", split="validation")
    with pytest.raises(InputError, match="matches no"):
        load(str(tmp_path / "nothing/*.parquet"), format="saliency_r1_8k")
    (tmp_path / "pictures").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "pictures/a.png")  # an image folder is no data folder
    with pytest.raises(InputError, match="no .parquet/.arrow/.json/.jsonl file"):
        load(tmp_path / "pictures", format="saliency_r1_8k")


def test_image_column_with_paths_and_columns_mapping(tmp_path, monkeypatch):
    """A datasets.Image column holding relative paths (not bytes), and a rename of other column names."""
    monkeypatch.chdir(tmp_path)  # datasets sizes path-only images relative to the working folder
    Image.new("RGB", (64, 32)).save(tmp_path / "a.png")
    ds = Dataset.from_dict({"question": ["Where?"], "gt": ["left"], "box": ["[0, 0, 0.5, 0.5]"], "image": ["a.png"]},
                           features=Features({"question": Value("string"), "gt": Value("string"),
                                              "box": Value("string"), "image": HFImage()}))
    ds.to_parquet(tmp_path / "train.parquet")
    (s,) = load(tmp_path / "train.parquet", format="saliency_r1_8k", columns={"gt": "solution", "box": "bbox"}).samples
    assert s["image"] == str(tmp_path / "a.png") and s["boxes"] == [[0.0, 0.0, 32.0, 16.0]] and s["answer"] == "left"
    with pytest.raises(InputError, match="columns must map"):
        load(tmp_path / "train.parquet", format="saliency_r1_8k", columns={"gt": 3})


def _hub_snapshot(home, repo_id: str, sha: str = "0123456789abcdef0123456789abcdef01234567"):
    """The snapshot folder huggingface_hub's cache uses for a dataset (refs/main names the snapshot)."""
    repo = home / "hub" / ("datasets--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    return snap


def test_hub_id_from_the_hub_snapshot_cache(tmp_path):
    snap = _hub_snapshot(tmp_path / "home", "peterant330/saliency-r1-8k")
    (snap / "data").mkdir()
    _r1_8k(4).to_parquet(snap / "data/train-00000-of-00001.parquet")
    (snap / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                    "    path: data/train-*\n---\n# saliency-r1-8k\n")
    res = load("peterant330/saliency-r1-8k", format="saliency_r1_8k")
    _check_8k(res.samples, [0, 1, 2, 3])
    sha = snap.name
    assert load("peterant330/saliency-r1-8k", format="saliency_r1_8k", revision=sha).rows == 4
    # `hf download --local-dir` writes a plain folder plus its .cache/huggingface/ metadata
    local = tmp_path / "local"
    shutil.copytree(snap, local)
    (local / ".cache/huggingface/download/data").mkdir(parents=True)
    (local / ".cache/huggingface/download/data/train-00000-of-00001.parquet.metadata").write_text("sha\netag\n1\n")
    _check_8k(load(local, format="saliency_r1_8k").samples, [0, 1, 2, 3])
    assert res.path.endswith("train-00000-of-00001.parquet")
    # the same id through DataSource / load_sources (the GRPO config's sources: entry)
    assert len(load_sources([DataSource("peterant330/saliency-r1-8k", "saliency_r1_8k")])) == 4


def test_hub_id_from_the_datasets_arrow_cache(tmp_path):
    """The cache an online ``load_dataset("org/name")`` leaves: written here by datasets' Parquet
    builder, in the folder datasets names it (``org___name/default/0.0.0/<hash>``)."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet

    _r1_8k(3).to_parquet(tmp_path / "train.parquet")
    _r1_8k(2, start=10).to_parquet(tmp_path / "test.parquet")
    cache = tmp_path / "home" / "datasets"
    files = DataFilesDict.from_patterns({"train": ["train.parquet"], "test": ["test.parquet"]}, base_path=str(tmp_path))
    Parquet(cache_dir=str(cache), dataset_name="saliency-r1-8k", data_files=files, hash="0" * 16).download_and_prepare()
    (config,) = glob.glob(str(cache / "saliency-r1-8k" / "default*"))
    (cache / "peterant330___saliency-r1-8k").mkdir()
    shutil.move(config, cache / "peterant330___saliency-r1-8k" / "default")
    _check_8k(load("peterant330/saliency-r1-8k", format="saliency_r1_8k").samples, [0, 1, 2])
    _check_8k(load("peterant330/saliency-r1-8k", format="saliency_r1_8k", split="test").samples, [10, 11])
    with pytest.raises(InputError, match="no split 'dev'"):
        load("peterant330/saliency-r1-8k", format="saliency_r1_8k", split="dev")


def test_hub_id_not_cached_is_one_line_naming_the_download():
    with pytest.raises(InputError) as e:
        load("org/missing-set", format="saliency_r1_8k")
    msg = str(e.value)
    assert "\n" not in msg and "org/missing-set" in msg
    assert "hf download --repo-type dataset org/missing-set" in msg  # huggingface_hub >= 1.0 (installed: hf)
    assert "huggingface-cli download --repo-type dataset org/missing-set" in msg


# ------------------------------------------------------------------ Visual-CoT (deepcs233/Visual-CoT, viscot_benchmark/)
PROMPT = " Please provide the bounding box coordinate of the region that can help you answer the question better."
DET = [  # viscot_benchmark/benchmark_det/gqa.jsonl, first two rows, verbatim
    {"img_path": "cot/gqa/2316539.jpg", "expression": "What are the tree branches in front of?",
     "bbox": [217, 343, 242, 393], "height": 500, "width": 391, "question_id": 7, "split": "val"},
    {"img_path": "cot/gqa/2414389.jpg", "expression": "What vegetable is above the cooked carrot in the salad?",
     "bbox": [227, 68, 391, 173], "height": 374, "width": 500, "question_id": 8, "split": "val"},
]


def _bench_row(qid, rel, box, norm, question, answer, dataset="gqa"):
    """A viscot_benchmark/benchmark/{name}.json row (the LLaVA conversion of Visual-CoT)."""
    return {"dataset": dataset, "split": "val", "question_id": qid,
            "image": [rel, f"{rel}###[{', '.join(map(str, box))}]"],
            "conversations": [{"from": "human", "value": "<image>\n" + question + PROMPT},
                              {"from": "gpt", "value": norm}, {"from": "human", "value": "<image>"},
                              {"from": "gpt", "value": answer}]}


BENCH = [  # viscot_benchmark/benchmark/gqa.json, first two rows, verbatim
    _bench_row(7, "cot/gqa/2316539.jpg", [217, 343, 242, 393], "[0.542, 0.686, 0.592, 0.786]",
               "What are the tree branches in front of?", "window"),
    _bench_row(8, "cot/gqa/2414389.jpg", [227, 68, 391, 173], "[0.454, 0.262, 0.782, 0.472]",
               "What vegetable is above the cooked carrot in the salad?", "lettuce"),
]


@pytest.fixture
def viscot(tmp_path):
    """The published tree: viscot_benchmark/{benchmark,benchmark_det}/ and the images under cot/."""
    for row in DET:
        Image.new("RGB", (row["width"], row["height"])).save(_mkparent(tmp_path / row["img_path"]))
    Image.new("RGB", (500, 375)).save(_mkparent(tmp_path / "cot/v7w/v7w_2359399.jpg"))
    bench = tmp_path / "viscot_benchmark"
    (bench / "benchmark").mkdir(parents=True)
    (bench / "benchmark_det").mkdir()
    Dataset.from_list(DET).to_json(bench / "benchmark_det/gqa.jsonl")  # JSON Lines, as published
    Dataset.from_list(BENCH).to_json(bench / "benchmark/gqa.json", lines=False, indent=4)  # a JSON list
    v7w_det = {"img_path": "cot/visual7w/v7w_2359399.jpg", "expression": "What is behind the bench?",
               "bbox": [2, 0, 390, 282], "height": 375, "width": 500, "question_id": 0, "split": "val"}
    Dataset.from_list([v7w_det]).to_json(bench / "benchmark_det/visual7w.jsonl")
    Dataset.from_list([_bench_row(0, "cot/v7w/v7w_2359399.jpg", [2, 0, 390, 282], "[0.004, 0.124, 0.780, 0.688]",
                                  "What is behind the bench?", "Foliage.", "v7w")]).to_json(
        bench / "benchmark/visual7w.json", lines=False)
    return tmp_path


def _mkparent(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_visual_cot_benchmark_det(viscot):
    det = viscot / "viscot_benchmark/benchmark_det"
    res = load(det / "gqa.jsonl", format="visual_cot_det", image_root=viscot)
    assert [(s["id"], s["question"], s["answer"], s["boxes"]) for s in res.samples] == [
        ("7", "What are the tree branches in front of?", "window", [[217.0, 343.0, 242.0, 393.0]]),
        ("8", "What vegetable is above the cooked carrot in the salad?", "lettuce", [[227.0, 68.0, 391.0, 173.0]])]
    assert {s["source"] for s in res.samples} == {"visual_cot/gqa"} and not res.skipped
    # the whole folder of per-dataset files; visual7w's det rows name cot/visual7w/, its images are in cot/v7w/
    res = load(det, format="visual_cot_det", image_root=viscot)
    assert [(s["source"], s["answer"]) for s in res.samples][-1] == ("visual_cot/visual7w", "Foliage.")
    assert len(res.samples) == 3 and [label.rsplit("/", 1)[1] for label, _ in res.parts] == ["gqa.jsonl",
                                                                                            "visual7w.jsonl"]


def test_visual_cot_det_answers_option_and_missing_answers(viscot, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(viscot / "viscot_benchmark/benchmark_det", elsewhere)
    with pytest.raises(InputError, match=r"benchmark_det rows carry no answer.*answers"):
        load(elsewhere / "gqa.jsonl", format="visual_cot_det", image_root=viscot)
    res = load(elsewhere / "gqa.jsonl", format="visual_cot_det", image_root=viscot,
               answers=str(viscot / "viscot_benchmark/benchmark"))
    assert [s["answer"] for s in res.samples] == ["window", "lettuce"]
    Dataset.from_list([BENCH[0]]).to_json(tmp_path / "only7.json", lines=False)
    res = load(elsewhere / "gqa.jsonl", format="visual_cot_det", image_root=viscot, answers=str(tmp_path / "only7.json"))
    assert len(res.samples) == 1 and res.skipped == [(2, "answer", "question_id 8 not in only7.json")]


def test_visual_cot_llava_conversion_matches_benchmark_det(viscot):
    """The existing ``visual_cot`` format on the real benchmark rows: the ``###`` pixel box, and the
    square-padded normalised box of the first gpt turn, both give the benchmark_det box."""
    bench = viscot / "viscot_benchmark/benchmark/gqa.json"
    res = load(bench, format="visual_cot", image_root=viscot)
    assert [(s["answer"], s["boxes"]) for s in res.samples] == [
        ("window", [[217.0, 343.0, 242.0, 393.0]]), ("lettuce", [[227.0, 68.0, 391.0, 173.0]])]
    rows = json.loads(bench.read_text())
    for row in rows:
        row["image"] = row["image"][:1]  # no '###' box: the normalised gpt box is converted instead
    (viscot / "nobox.json").write_text(json.dumps(rows))
    for s, det in zip(load(viscot / "nobox.json", format="visual_cot").samples, DET):
        assert s["boxes"][0] == pytest.approx(det["bbox"], abs=0.5)


def test_visual_cot_metadata_folder_of_jsonl(tmp_path):
    """viscot_dataset/{name}_cot_train.jsonl (Visual-CoT metadata), a folder of JSONL shards."""
    Image.new("RGB", (500, 336)).save(_mkparent(
        tmp_path / "cot/cub/001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg"))
    Image.new("RGB", (640, 640)).save(_mkparent(tmp_path / "cot/vsr/000000068878.jpg"))
    meta = tmp_path / "viscot_dataset"
    meta.mkdir()
    Dataset.from_list([{"question": "Does the bird in the picture have grey forehead and grey throat?",
                        "answer": "Yes", "image": "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
                        "width": 500, "height": 336, "bboxs": [[139.0, 30.0, 292.0, 294.0]], "dataset": "cub",
                        "split": "train"}]).to_json(meta / "cub_cot_train.jsonl")
    Dataset.from_list([{"question": "Is the car over the cat?", "answer": "No", "image": "000000068878.jpg",
                        "width": 640, "height": 640, "bboxs": [[34.41, 379.87, 608.3399999999999, 615.23]],
                        "dataset": "vsr", "split": "train"}]).to_json(meta / "vsr_cot_train.jsonl")
    res = load(meta, format="visual_cot_meta", image_root=tmp_path)
    assert [(s["source"], s["answer"]) for s in res.samples] == [("visual_cot/cub", "Yes"), ("visual_cot/vsr", "No")]
    assert res.samples[1]["boxes"][0] == pytest.approx([34.41, 379.87, 608.34, 615.23])


# ------------------------------------------------------------------ Saliency-R1-cold (peterant330/Saliency-R1-cold)
def _cold(root):
    """The two LLaMA-Factory ShareGPT files of Saliency-R1-cold (= Vision-R1-cold's columns): LLaVA-CoT
    rows ``{id, image, conversations: [{from: human|gpt, value}]}`` and Mulberry rows ``{images,
    conversations: [{from: user|assistant, value}]}``; images relative to the files' folder."""
    Image.new("RGB", (48, 32)).save(_mkparent(root / "llava_cot_images/coco/train2017/000000000009.jpg"))
    Image.new("RGB", (30, 60)).save(_mkparent(root / "mulberry_images/AI2D/1.png"))
    llava = [{"id": f"l{i}", "image": "llava_cot_images/coco/train2017/000000000009.jpg", "conversations": [
        {"from": "human", "value": f"<image>\nHow many plates? ({i})"},
        {"from": "gpt", "value": f"<think>\nI count the plates.\n</think>\n{i}"}]} for i in range(4)]
    mulberry = [{"images": ["mulberry_images/AI2D/1.png"], "conversations": [
        {"from": "user", "value": f"<image>Which stage is shown? ({i})"},
        {"from": "assistant", "value": f"<think>\nThe diagram shows the larva.\n</think>\nlarva {i}"}]}
        for i in range(6)]
    Dataset.from_list(llava).to_json(root / "saliency_r1_llava_cot_full.json", lines=False, indent=2)
    Dataset.from_list(mulberry).to_json(root / "saliency_r1_mulberry_sft_full.json", lines=False, indent=2)
    return root


def test_saliency_r1_cold_files(tmp_path):
    cold = _cold(tmp_path)
    llava = load(cold / "saliency_r1_llava_cot_full.json", format="llava")
    assert [(s["id"], s["answer"], s["reasoning"]) for s in llava.samples][:2] == [
        ("l0", "0", "I count the plates."), ("l1", "1", "I count the plates.")]
    assert llava.samples[0]["question"] == "How many plates? (0)" and llava.samples[0]["width"] == 48
    mulberry = load(cold / "saliency_r1_mulberry_sft_full.json", format="llava")
    assert len(mulberry) == 6 and not mulberry.skipped
    s = mulberry.samples[0]
    assert (s["question"], s["answer"], s["reasoning"]) == ("Which stage is shown? (0)", "larva 0",
                                                           "The diagram shows the larva.")
    assert s["image"] == str(cold / "mulberry_images/AI2D/1.png") and s["id"] == "saliency_r1_mulberry_sft_full-1"


def test_llava_cot_100k_stages(tmp_path):
    """Xkev/LLaVA-CoT-100k train.jsonl: the four tagged stages; CONCLUSION is the answer."""
    Image.new("RGB", (20, 20)).save(_mkparent(tmp_path / "sqa/train/1/image.png"))
    Dataset.from_list([{"id": "x1", "image": "sqa/train/1/image.png", "conversations": [
        {"from": "human", "value": "Which is larger?"},
        {"from": "gpt", "value": "<SUMMARY> I compare them. </SUMMARY>\n\n<CAPTION> Two boxes. </CAPTION>\n\n"
                                 "<REASONING> The left is wider. </REASONING>\n\n<CONCLUSION> left </CONCLUSION>"}]}
                       ]).to_json(tmp_path / "train.jsonl")
    (s,) = load(tmp_path / "train.jsonl", format="llava").samples
    assert s["answer"] == "left" and s["reasoning"] == "I compare them. Two boxes. The left is wider."


def test_load_sources_mixes_the_two_cold_files_with_weights(tmp_path):
    """The SFT sources: entry, with the two files read from a hub snapshot (data_files picks each)."""
    snap = _cold(_hub_snapshot(tmp_path / "home", "peterant330/Saliency-R1-cold"))
    (snap / "data").mkdir()
    Dataset.from_dict({"text": ["unrelated"]}).to_parquet(snap / "data/train-00000-of-00001.parquet")
    sources = [DataSource("peterant330/Saliency-R1-cold", "llava", data_files=["saliency_r1_llava_cot_full.json"]),
               DataSource("peterant330/Saliency-R1-cold", "llava", data_files="saliency_r1_mulberry_sft_full.json",
                          weight=0.5)]
    mixed = load_sources(sources, seed=3)
    ids = [s["id"] for s in mixed]
    assert ids[:4] == ["l0", "l1", "l2", "l3"] and len(ids) == 4 + 3
    assert all(i.startswith("saliency_r1_mulberry_sft_full-") for i in ids[4:]) and len(set(ids[4:])) == 3
    assert [s["id"] for s in load_sources(sources, seed=3)] == ids  # deterministic in the seed
    doubled = load_sources([DataSource(str(snap / "saliency_r1_llava_cot_full.json"), "llava", weight=2.0)])
    assert sorted(s["id"] for s in doubled) == sorted(ids[:4] * 2)


# ------------------------------------------------------------------ image safety
def test_every_image_open_goes_through_one_function_and_bombs_are_skipped(tmp_path, monkeypatch):
    import pathlib
    import re

    import saliency_r1.data as data_pkg

    opens = {p.name: len(re.findall(r"Image\.open\(", p.read_text()))
             for p in pathlib.Path(data_pkg.__file__).parent.glob("*.py")}
    assert {k: v for k, v in opens.items() if v} == {}  # every open goes through saliency_r1._images
    _r1_8k(2).save_to_disk(tmp_path / "ds")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40x20 = 800 pixels > 2 x limit: a "bomb"
    res = load(tmp_path / "ds", format="saliency_r1_8k")
    assert not res.samples and [f for _, f, _ in res.skipped] == ["image", "image"]


def test_the_sources_entries_in_docs_datasets_md_are_valid():
    """Every ``sources:`` YAML block of docs/datasets.md builds DataSources with known formats."""
    import pathlib
    import re

    import yaml

    from saliency_r1.config_io import from_dict
    from saliency_r1.data import FORMATS

    text = (pathlib.Path(__file__).parents[2] / "docs" / "datasets.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "<format>" not in b]
    entries = [src for b in blocks for src in yaml.safe_load(b)["data"]["sources"]]
    assert len(entries) >= 8
    for src in entries:
        ds = from_dict(DataSource, src, "data.sources[]")
        assert ds.format in FORMATS and ds.weight >= 0
