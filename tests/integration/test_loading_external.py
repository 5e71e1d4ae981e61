"""Checkpoints the project did not write: saved with transformers' own functions in each layout transformers
has written (v5 nested ``processor_config.json``; the older split ``preprocessor_config.json``; chat template in
``chat_template.jinja`` / ``chat_template.json`` / the tokenizer config; with and without a video processor
config), a hub id in the local HF cache, and HF's ``dtype`` / ``device_map`` meanings."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os

import pytest
import torch

from saliency_r1 import load_model
from saliency_r1.errors import InputError
from saliency_r1.models.tiny import build_tiny

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
RESPONSE = "<think>the red one</think>red"

# What Qwen2_5_VLProcessor.save_pretrained nests for its Qwen2VLVideoProcessor (transformers 5, published
# checkpoints); written by hand only where torchvision is missing and the real video processor cannot be built.
VIDEO_PROCESSOR = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
                   "do_sample_frames": False, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711], "max_frames": 768, "merge_size": 2,
                   "min_frames": 4, "patch_size": 14, "resample": 3, "rescale_factor": 1 / 255,
                   "size": {"longest_edge": 50176, "shortest_edge": 3136}, "temporal_patch_size": 2,
                   "video_processor_type": "Qwen2VLVideoProcessor"}


@pytest.fixture(scope="module")
def tiny_objects():
    return build_tiny(seed=3)


def _save_v5(model, proc, out):
    """``model.save_pretrained`` + ``Qwen2_5_VLProcessor.save_pretrained``: processor_config.json with the
    image (and video) processor nested, chat_template.jinja, no preprocessor_config.json."""
    model.save_pretrained(out)
    if HAS_TORCHVISION:
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

        Qwen2_5_VLProcessor(image_processor=proc.image_processor, tokenizer=proc.tokenizer,
                            video_processor=Qwen2VLVideoProcessor(), chat_template=proc.chat_template
                            ).save_pretrained(out)
        return out
    proc.save_pretrained(out)  # ProcessorMixin.save_pretrained: the same writer Qwen2_5_VLProcessor uses
    cfg = json.loads((out / "processor_config.json").read_text())
    cfg.update(processor_class="Qwen2_5_VLProcessor", video_processor=VIDEO_PROCESSOR)
    (out / "processor_config.json").write_text(json.dumps(cfg, indent=2))
    return out


def _save_split(model, proc, out, template_in: str):
    """The transformers-4 layout of the published Qwen2.5-VL repos: tokenizer files, preprocessor_config.json
    (+ video_preprocessor_config.json), the chat template in chat_template.json or the tokenizer config."""
    model.save_pretrained(out)
    tok = proc.tokenizer
    tok.chat_template = proc.chat_template if template_in == "tokenizer" else None
    try:
        tok.save_pretrained(out, save_jinja_files=False)
    finally:
        tok.chat_template = proc.chat_template
    proc.image_processor.save_pretrained(out)
    pre = json.loads((out / "preprocessor_config.json").read_text())
    pre["processor_class"] = "Qwen2_5_VLProcessor"
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    (out / "video_preprocessor_config.json").write_text(json.dumps(dict(VIDEO_PROCESSOR,
                                                                        processor_class="Qwen2_5_VLProcessor")))
    if template_in == "json":
        (out / "chat_template.json").write_text(json.dumps({"chat_template": proc.chat_template}))
    return out


@pytest.fixture(scope="module")
def layouts(tiny_objects, tmp_path_factory):
    model, proc = tiny_objects
    root = tmp_path_factory.mktemp("layouts")
    return {"v5": _save_v5(model, proc, root / "v5"),
            "split_json": _save_split(model, proc, root / "split_json", "json"),
            "split_tokenizer": _save_split(model, proc, root / "split_tokenizer", "tokenizer")}


def test_layouts_are_the_ones_transformers_writes(layouts):
    v5, split = layouts["v5"], layouts["split_json"]
    assert (v5 / "processor_config.json").is_file() and not (v5 / "preprocessor_config.json").exists()
    nested = json.loads((v5 / "processor_config.json").read_text())
    assert {"image_processor", "video_processor"} <= set(nested) and (v5 / "chat_template.jinja").is_file()
    assert (split / "preprocessor_config.json").is_file() and not (split / "processor_config.json").exists()
    assert not (split / "chat_template.jinja").exists()
    tok_cfg = json.loads((layouts["split_tokenizer"] / "tokenizer_config.json").read_text())
    assert "chat_template" in tok_cfg and not (layouts["split_tokenizer"] / "chat_template.json").exists()


def test_every_layout_loads_to_the_same_maps(layouts, tiny_objects, image):
    ref = None
    for name, path in layouts.items():
        sm = load_model(path, device="cpu")
        assert hasattr(sm.processor, "image_processor"), f"{name}: bare tokenizer"
        assert sm.processor.chat_template == tiny_objects[1].chat_template, name
        res = sm.explain(image, "Which colour?", response=RESPONSE)
        if ref is None:
            ref = res
            assert res.holistic[0].abs().sum() > 0
            continue
        assert torch.allclose(res.contributions, ref.contributions, atol=1e-6), name
        assert torch.allclose(res.holistic[0], ref.holistic[0], atol=1e-7), name


def test_project_checkpoint_resolves_through_autoprocessor(tiny_dir, layouts, monkeypatch):
    """``AutoProcessor`` picks the class from the saved configs; instantiating it needs torchvision, so the
    class it would build is captured instead (its ``from_pretrained`` returns the class)."""
    from transformers import AutoProcessor, Qwen2_5_VLProcessor

    cfg = json.loads((tiny_dir / "processor_config.json").read_text())
    assert cfg["processor_class"] == "Qwen2_5_VLProcessor" and "image_processor" in cfg
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        assert json.loads((tiny_dir / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    monkeypatch.setattr(Qwen2_5_VLProcessor, "from_pretrained", classmethod(lambda cls, *a, **k: cls))
    for path in (tiny_dir, *layouts.values()):
        assert AutoProcessor.from_pretrained(str(path)) is Qwen2_5_VLProcessor, path


def test_unresolvable_processor_class_is_never_a_silent_tokenizer(tiny_dir, tmp_path, caplog):
    import shutil

    old = shutil.copytree(tiny_dir, tmp_path / "old")  # what earlier project versions wrote
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        cfg = json.loads((old / name).read_text())
        cfg["processor_class"] = "ImageOnlyQwenVLProcessor"
        (old / name).write_text(json.dumps(cfg))
    from transformers import AutoProcessor, PreTrainedTokenizerBase

    assert isinstance(AutoProcessor.from_pretrained(str(old)), PreTrainedTokenizerBase)  # the trap
    with caplog.at_level("WARNING"):
        sm = load_model(old, device="cpu")
    assert hasattr(sm.processor, "image_processor")
    assert "no image processor" in caplog.text


def test_missing_processor_files_is_one_line(tiny_dir, tmp_path):
    import shutil

    bare = shutil.copytree(tiny_dir, tmp_path / "bare")
    (bare / "processor_config.json").unlink()
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(InputError, match="neither processor_config.json nor preprocessor_config.json"):
        load_model(bare, device="cpu")


def _fake_hub_cache(hf_home, repo_id, src):
    """``HF_HOME/hub/models--org--name`` as huggingface_hub lays it: blobs by sha256, a snapshot of symlinks
    to them, and refs/main naming the snapshot."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    sha = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / sha
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in src.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snap


def test_hub_id_resolves_from_the_local_cache(layouts, tmp_path, monkeypatch, image):
    snap = _fake_hub_cache(tmp_path / "hf", "someorg/Tiny-VL", layouts["v5"])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    sm = load_model("someorg/Tiny-VL", device="cpu")
    direct = load_model(snap, device="cpu")
    a = sm.explain(image, "Which colour?", response=RESPONSE)
    b = direct.explain(image, "Which colour?", response=RESPONSE)
    assert torch.equal(a.holistic[0], b.holistic[0]) and sm.name == "someorg/Tiny-VL"
    with pytest.raises(InputError, match="nor in the Hugging Face cache.*hf download someorg/Absent"):
        load_model("someorg/Absent", device="cpu")
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "nowhere" / "x" / "y"), device="cpu")


def test_training_takes_a_hub_id_from_the_local_cache(layouts, tmp_path, monkeypatch):
    """SFT's and GRPO's ``model.path`` accept a hub id as load_model does (its snapshot in the local cache)."""
    from saliency_r1.config_io import from_dict
    from saliency_r1.training.grpo import prepare_model_dir
    from saliency_r1.training.grpo_config import GRPORunConfig
    from saliency_r1.training.run_config import ModelSection
    from saliency_r1.training.sft import prepare_model

    snap = _fake_hub_cache(tmp_path / "hf", "someorg/Tiny-VL", layouts["v5"])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    _, _, base = prepare_model(ModelSection(path="someorg/Tiny-VL"), tmp_path / "sft", [])
    assert base == snap.resolve()
    config = from_dict(GRPORunConfig, {"model": {"path": "someorg/Tiny-VL"}})
    assert prepare_model_dir(config) == snap.resolve()
    with pytest.raises(InputError, match="hf download someorg/Absent"):
        prepare_model(ModelSection(path="someorg/Absent"), tmp_path / "sft", [])


def test_dtype_auto_and_device_map_mean_what_they_mean_to_hf(tiny_objects, tmp_path, monkeypatch):
    import copy

    import transformers

    from saliency_r1.models.tiny import save_checkpoint

    model, proc = tiny_objects
    bf16 = save_checkpoint(copy.deepcopy(model).to(torch.bfloat16), proc, tmp_path / "bf16")
    assert load_model(bf16, device="cpu").hf.dtype == torch.bfloat16  # "auto": the checkpoint's dtype
    assert load_model(bf16, dtype=None, device="cpu").hf.dtype == torch.float32  # torch's default
    assert load_model(bf16, dtype="fp16", device="cpu").hf.dtype == torch.float16
    cls = transformers.Qwen2_5_VLForConditionalGeneration
    seen, real = [], cls.from_pretrained.__func__
    monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, *a, **k: seen.append(k) or real(c, *a, **k)))
    placed = load_model(bf16, device_map={"": "cpu"}, attn_implementation="eager")
    assert placed.device.type == "cpu" and seen[-1]["device_map"] == {"": "cpu"}
    assert seen[-1]["dtype"] == "auto" and seen[-1]["attn_implementation"] == "eager"
    with pytest.raises(InputError, match="device_map"):
        load_model(bf16, device="cpu", device_map="cpu")
