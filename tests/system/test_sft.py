"""SFT cold start: response-only labels, a falling loss, a reloadable final checkpoint, resume after an
interruption, LoRA merge, config errors. Every run uses a very small tiny model and ShapesWorld on 112 px."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from saliency_r1.errors import InputError
from saliency_r1.models.tiny import TinyConfig, build_tiny
from saliency_r1.training.collate import IGNORE_INDEX, VisionSFTCollator, end_of_turn_id
from saliency_r1.training.sft import checkpoint_complete, last_checkpoint, load_config, run_from_config, train_sft
from saliency_r1.training.sft_config import DataArgs, LoraArgs, ModelArgs, SFTRunConfig, TrainArgs

SMALL = TinyConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                   vision_hidden=32, vision_depth=1, vocab_size=600)
SHAPES = {"width": 112, "height": 112, "min_objects": 2, "max_objects": 3}


def small_config(out, lora: bool = False, n: int = 8, **train) -> SFTRunConfig:
    from saliency_r1.config_io import from_dict

    train = {"output_dir": str(out), "per_device_train_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
             "lr_scheduler_type": "constant",
             "logging_steps": 1, "save_steps": 100, "save_total_limit": None, "disable_tqdm": True, **train}
    return SFTRunConfig(model=ModelArgs(tiny=SMALL, tokenizer_corpus=200),
                        data=from_dict(DataArgs, {"n": n, "seed": 3, "shapes": SHAPES}),
                        lora=LoraArgs(enabled=lora, r=4, alpha=8, dropout=0.0), train=TrainArgs(**train))


def losses(state_file) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads(state_file.read_text())["log_history"] if "loss" in h}


# ---------------------------------------------------------------- collator
@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_labels_only_the_response(side):
    _, proc = build_tiny(SMALL)
    tok = proc.tokenizer
    exs = [{"image": Image.new("RGB", (84, 56), (200, 30, 30)), "question": "What color is it?",
            "reasoning": "It is red.", "answer": "red"},
           {"image": Image.new("RGB", (56, 56)), "question": "Is there a long question here, or not?",
            "response": "<think>a</think>no"}]
    batch = VisionSFTCollator(proc, padding_side=side)(exs)
    end = end_of_turn_id(tok)
    for i, want in enumerate(["<think>It is red.</think>red", "<think>a</think>no"]):
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        keep = labels != IGNORE_INDEX
        assert torch.equal(labels[keep], ids[keep])
        assert tok.decode(labels[keep]) == want + "<|im_end|>"
        assert labels[keep][-1] == end
        pos = keep.nonzero().flatten()
        assert torch.equal(pos, torch.arange(pos[0], pos[0] + len(pos)))  # one contiguous span
        real = batch["attention_mask"][i].bool()
        if side == "right":
            assert pos[-1] == real.nonzero().max()  # the response ends the real tokens
        else:
            assert pos[-1] == len(ids) - 1
        image_tok = ids == proc.image_token_id
        assert torch.equal(batch["mm_token_type_ids"][i].bool(), image_tok)  # 1 on image tokens only
        assert not keep[image_tok].any() and not keep[~real].any()
    n_cells = int(batch["image_grid_thw"].prod(-1).sum())
    assert batch["pixel_values"].shape[0] == n_cells
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == n_cells // 4  # merged 2x2


def test_collator_cuts_the_response_not_the_prompt():
    _, proc = build_tiny(SMALL)
    ex = {"image": Image.new("RGB", (56, 56)), "question": "Q?", "response": "<think>" + "red " * 50 + "</think>red"}
    full = VisionSFTCollator(proc)([ex])["input_ids"].shape[1]
    cut = VisionSFTCollator(proc, max_length=full - 10)([ex])
    assert cut["input_ids"].shape[1] == full - 10
    assert int((cut["input_ids"] == proc.image_token_id).sum()) == 4
    with pytest.raises(InputError, match="max_length"):
        VisionSFTCollator(proc, max_length=5)([ex])


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Steps 1-2 (a checkpoint per step), a half-written checkpoint-3, then a rerun to step 4 via the YAML path."""
    out = tmp_path_factory.mktemp("sft") / "run"
    train_sft(small_config(out, max_steps=2, save_steps=1))
    first = {s: (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns for s in (1, 2)}
    half = out / "checkpoint-3"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert last_checkpoint(out) == out / "checkpoint-2"
    yaml_path = out.parent / "sft.yaml"
    cfg = small_config(out)
    import yaml

    from saliency_r1.config_io import to_dict

    yaml_path.write_text(yaml.safe_dump(json.loads(json.dumps(to_dict(cfg), default=list))))
    final = run_from_config(yaml_path, max_steps=4, save_steps=1)
    return out, final, first


def test_resume_continues_from_the_last_complete_checkpoint(resumed_run):
    out, final, first = resumed_run
    runs = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]
    assert [(r["resumed_from"], r["start_step"], r["end_step"]) for r in runs] == [
        (None, 0, 2), ("checkpoint-2", 2, 4)]
    for s in (1, 2):  # steps 1-2 were not trained again
        assert (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns == first[s]
    assert len(list(out.glob("incomplete-checkpoint-3-*"))) == 1  # the half-written one was set aside
    for s in (3, 4):
        assert checkpoint_complete(out / f"checkpoint-{s}")
        assert json.loads((out / f"checkpoint-{s}" / "trainer_state.json").read_text())["global_step"] == s
    assert sorted(losses(out / "trainer_state.json")) == [1, 2, 3, 4]  # no finished step lost or repeated


def test_loss_falls_and_final_checkpoint_generates(resumed_run):
    from saliency_r1 import load_model

    out, final, _ = resumed_run
    loss = losses(out / "trainer_state.json")
    assert loss[4] < loss[1] - 0.5, loss
    model = load_model(final)
    res = model.explain(Image.new("RGB", (112, 112), (230, 230, 230)), "What color is the circle?",
                        max_new_tokens=8, do_sample=False)
    assert len(res.response_ids) >= 1 and isinstance(res.response_text, str)
    assert (final / "chat_template.jinja").is_file() and (final / "preprocessor_config.json").is_file()
    assert json.loads((final / "sft_config.json").read_text())["train"]["max_steps"] == 4


def test_lora_run_saves_merged_model_and_adapter(tmp_path):
    from saliency_r1 import load_model

    final = train_sft(small_config(tmp_path / "lora", lora=True, n=4, max_steps=1))
    assert (final / "model.safetensors").is_file() and (final / "adapter" / "adapter_config.json").is_file()
    base = json.loads((final / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str((tmp_path / "lora" / "base").resolve())
    merged, adapter = load_model(final), load_model(final / "adapter")
    x = {"input_ids": torch.tensor([[5, 6, 7]])}
    with torch.no_grad():
        assert torch.allclose(merged.hf(**x).logits, adapter.hf(**x).logits, atol=1e-4)


def test_no_resume_starts_over(tmp_path):
    out = tmp_path / "run"
    train_sft(small_config(out, n=4, max_steps=1, save_steps=1))
    cfg = small_config(out, n=4, max_steps=1, save_steps=1, resume=False)
    train_sft(cfg)
    runs = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]
    assert runs[-1]["resumed_from"] is None and runs[-1]["end_step"] == 1
    (old,) = out.glob("previous-*")  # the first run is kept aside, not deleted
    assert (old / "checkpoint-1" / "trainer_state.json").is_file() and (old / "base" / "config.json").is_file()


# ---------------------------------------------------------------- configs and checkpoints
def test_unknown_yaml_key_is_one_line_input_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  learning_rate: 0.001\n  lerning_rate: 0.1\n")
    with pytest.raises(InputError) as e:
        load_config(p)
    assert "lerning_rate" in str(e.value) and "\n" not in str(e.value)
    p.write_text("trian:\n  max_steps: 3\n")
    with pytest.raises(InputError, match="trian"):
        load_config(p)
    ok = tmp_path / "ok.yaml"
    ok.write_text("train: {max_steps: 3}\n")
    assert load_config(ok, max_steps=5).train.max_steps == 5
    with pytest.raises(InputError, match="unknown override"):
        load_config(ok, max_stepz=3)


def test_resuming_another_run_config_is_refused(resumed_run, tmp_path):
    out, _, _ = resumed_run
    cfg = small_config(out, n=9)
    with pytest.raises(InputError, match="another data config"):
        train_sft(cfg)


def test_shipped_configs_parse():
    from pathlib import Path

    from saliency_r1.config_io import packaged_config

    root = Path(__file__).resolve().parents[2] / "configs"
    for path in (packaged_config("sft_shapes.yaml"), root / "sft_qwen2_5_vl_7b.yaml", root / "sft_qwen2_5_vl_3b.yaml"):
        cfg = load_config(path)
        assert cfg.train.learning_rate > 0
    big = load_config(root / "sft_qwen2_5_vl_7b.yaml")
    assert big.lora.enabled and big.lora.r == 128 and big.train.bf16 and big.train.gradient_checkpointing
    assert big.train.per_device_train_batch_size * big.train.gradient_accumulation_steps == 64


def test_checkpoint_completeness(tmp_path):
    d = tmp_path / "checkpoint-7"
    d.mkdir()
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt"):
        (d / f).write_bytes(b"x")
    assert not checkpoint_complete(d)
    (d / "trainer_state.json").write_text('{"global_step": 7')  # cut short while writing
    assert not checkpoint_complete(d)
    (d / "trainer_state.json").write_text('{"global_step": 7}')
    assert checkpoint_complete(d) and last_checkpoint(tmp_path) == d
