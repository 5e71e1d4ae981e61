"""Run configs: every field type- and range-checked (one line naming the key, the value and the fix), the
shared SFT/GRPO sections with per-stage defaults, data sources (and the older one-path keys), the shipped
configs (the authors' GRPO settings), packaged configs found from an installed wheel."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from saliency_r1.config_io import (check_value, find_config, from_dict, help_text, leaf_fields, packaged_config,
                                   packaged_names, read_config)
from saliency_r1.errors import InputError
from saliency_r1.training import grpo, sft
from saliency_r1.training.grpo_config import GRPORunConfig, load_run_config
from saliency_r1.training.run_config import (DataSection, LoraSection, check_report_to, data_sources, load_samples,
                                             lora_config)
from saliency_r1.training.sft_config import SFTRunConfig

ROOT = Path(__file__).resolve().parents[2]
AUTHORS_SYSTEM_PROMPT = (  # trl/grpo_vlm.py of github.com/peterant330/Saliency_R1 (commit 640e3ba)
    "A conversation between user and assistant. The user asks a question, and the assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think></think> tags, "
    "i.e., <think>\nThis is my reasoning.\n</think>\nThis is my answer.")


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _load(stage: str, path: Path, **over):
    return (sft.load_config if stage == "sft" else load_run_config)(path, **over)


def _error(stage: str, tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as e:
        _load(stage, _write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg and ";" in msg, msg  # one line: the problem; the fix
    return msg


# ---------------------------------------------------------------- types and ranges
BAD = [  # (stage, yaml, what the line must name)
    ("grpo", "grpo: {learning_rate: -1.0e-5}", ["grpo.learning_rate", "-1e-05", "> 0"]),
    ("grpo", "grpo: {learning_rate: .nan}", ["grpo.learning_rate", "nan", "finite"]),
    ("grpo", "grpo: {learning_rate: .inf}", ["grpo.learning_rate", "inf", "finite"]),
    ("grpo", "grpo: {learning_rate: 0}", ["grpo.learning_rate", "0", "> 0"]),
    ("sft", "train: {learning_rate: fast}", ["train.learning_rate", "'fast'", "number"]),
    ("sft", "train: {learning_rate: 'nan'}", ["train.learning_rate", "'nan'", "number"]),
    ("sft", "train: {per_device_train_batch_size: 0}", ["train.per_device_train_batch_size", "0", ">= 1"]),
    ("grpo", "grpo: {per_device_train_batch_size: 0}", ["grpo.per_device_train_batch_size", ">= 1"]),
    ("grpo", "grpo: {gradient_accumulation_steps: 0}", ["grpo.gradient_accumulation_steps", ">= 1"]),
    ("grpo", "grpo: {num_generations: 0}", ["grpo.num_generations", "0", ">= 2"]),
    ("grpo", "grpo: {num_generations: 1}", ["grpo.num_generations", ">= 2"]),
    ("sft", "train: {save_steps: 0}", ["train.save_steps", ">= 1"]),
    ("grpo", "grpo: {save_steps: 0}", ["grpo.save_steps", ">= 1"]),
    ("grpo", "grpo: {max_steps: 0}", ["grpo.max_steps", "other than 0"]),
    ("grpo", "grpo: {max_completion_length: 0}", ["grpo.max_completion_length", ">= 1"]),
    ("sft", "train: {max_length: 0}", ["train.max_length", ">= 1"]),
    ("sft", "train: {max_steps: 2.5}", ["train.max_steps", "2.5", "integer"]),
    ("sft", "train: {max_steps: '10'}", ["train.max_steps", "'10'", "integer"]),
    ("grpo", "rewards: {judge: {timeout_s: 0}}", ["rewards.judge.timeout_s", "> 0"]),
    ("grpo", "rewards: {judge: {timeout_s: -2}}", ["rewards.judge.timeout_s", "-2"]),
    ("grpo", "rewards: {judge: {max_retries: -1}}", ["rewards.judge.max_retries", ">= 0"]),
    ("grpo", "rewards: {saliency: -1}", ["rewards.saliency", ">= 0"]),
    ("grpo", "rewards: {variant: holistic}", ["rewards.variant", "'holistic'", "full, think, answer, attn"]),
    ("sft", "lora: {enabled: 'no'}", ["lora.enabled", "'no'", "true or false"]),
    ("sft", "lora: {enabled: 'yes'}", ["lora.enabled", "'yes'"]),
    ("grpo", "lora: {enabled: 0}", ["lora.enabled", "0", "true or false"]),
    ("grpo", "lora: {enabled: 1}", ["lora.enabled", "1"]),
    ("grpo", "lora: {r: 0}", ["lora.r", ">= 1"]),
    ("grpo", "lora: {target_modules: q_proj}", ["lora.target_modules", "'q_proj'", "list"]),
    ("grpo", "lora: {target_modules: [q_proj, 3]}", ["lora.target_modules[1]", "3", "string"]),
    ("grpo", "resume: 'no'", ["resume", "'no'"]),
    ("grpo", "model: {dtype: fp8}", ["model.dtype", "'fp8'", "bfloat16"]),
    ("grpo", "model: [a, b]", ["model", "mapping"]),
    ("sft", "data: {shapes: {small_size: [1, 2, 3]}}", ["data.shapes.small_size", "2 values"]),
    ("sft", "data: {shapes: {families: {attribute: high}}}", ["data.shapes.families.attribute", "'high'"]),
    ("sft", "data: {sources: [rows.jsonl]}", ["data.sources[0]", "'rows.jsonl'", "mapping"]),
    ("sft", "data: {sources: [{format: llava}]}", ["data.sources[0].path", "missing"]),
    ("sft", "data: {sources: {path: a, format: llava}}", ["data.sources", "list"]),
    ("grpo", "grpo: {report_to: 3}", ["grpo.report_to", "3"]),
    ("grpo", "grpo: {lerning_rate: 0.1}", ["grpo.lerning_rate", "did you mean grpo.learning_rate"]),
    ("sft", "trian: {max_steps: 3}", ["trian", "did you mean train"]),
    ("grpo", "extends: 3", ["extends", "3"]),
]


@pytest.mark.parametrize("stage,text,needles", BAD, ids=[f"{s}:{t}" for s, t, _ in BAD])
def test_bad_value_is_one_line_naming_key_value_and_fix(tmp_path, stage, text, needles):
    msg = _error(stage, tmp_path, text + "\n")
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_empty_and_non_mapping_files_are_errors(tmp_path):
    for stage in ("sft", "grpo"):
        assert "empty" in _error(stage, tmp_path, "")
        assert "empty" in _error(stage, tmp_path, "# only a comment\n")
        assert "not a mapping" in _error(stage, tmp_path, "- a\n- b\n")
        assert "not a mapping" in _error(stage, tmp_path, "just text\n")
        assert "not valid YAML" in _error(stage, tmp_path, "a: [1, 2\n")


def test_yaml_scientific_notation_and_plain_bools_are_accepted(tmp_path):
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"  # why: PyYAML reads 1e-3 (no dot) as a string
    cfg = sft.load_config(_write(tmp_path, "train: {learning_rate: 1e-3, weight_decay: 1E-2}\nlora: {enabled: no}\n"))
    assert cfg.train.learning_rate == 0.001 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.weight_decay == 0.01 and cfg.lora.enabled is False  # unquoted `no` is YAML's false
    g = load_run_config(_write(tmp_path, "grpo: {learning_rate: 2e-5, beta: 0}\nrewards: {judge: {timeout_s: '2'}}\n"))
    assert g.grpo.learning_rate == 2e-5 and g.grpo.beta == 0.0 and isinstance(g.grpo.beta, float)
    assert g.rewards.judge.timeout_s == 2.0 and g.rewards.judge.max_retries == 3  # "2" seconds, not a failing str


def test_check_value_types():
    from typing import Literal, Optional, Union

    assert check_value(Optional[int], None, "k") is None
    assert check_value(tuple[float, ...], [1, "2e0"], "k") == (1.0, 2.0)
    assert check_value(dict[str, float], {"a": 1}, "k") == {"a": 1.0}
    assert check_value(Union[str, list[str]], ["a"], "k") == ["a"]
    assert check_value(Literal["a", "b"], "b", "k") == "b"
    with pytest.raises(InputError, match="one of a, b"):
        check_value(Literal["a", "b"], "c", "k")
    with pytest.raises(InputError, match=r"k = True is not an integer"):
        check_value(int, True, "k")  # bools are not numbers either
    assert math.isclose(check_value(float, "-.5e+1", "k"), -5.0)


def test_every_field_has_help_and_each_section_once():
    for cls in (SFTRunConfig, GRPORunConfig):
        for name, _, md in leaf_fields(cls):
            assert md.get("help"), f"{cls.__name__}.{name} has no help text"
    sft_fields = {f.name: f.type for f in dataclasses.fields(SFTRunConfig)}
    grpo_fields = {f.name: f.type for f in dataclasses.fields(GRPORunConfig)}
    for name in ("model", "data", "lora"):  # the same class in both run configs
        assert sft_fields[name] == grpo_fields[name]
    assert sft.lora_config is grpo.lora_config is lora_config  # one LoRA builder
    assert sft.load_samples is load_samples
    src = ROOT / "src" / "saliency_r1"
    assert not [p for p in src.rglob("*.py") if "def _h(" in p.read_text()]  # the help helper exists once


# ---------------------------------------------------------------- per-stage defaults
def test_stage_defaults_differ_without_duplicate_classes(tmp_path):
    s, g = SFTRunConfig(), GRPORunConfig()
    assert type(s.lora) is type(g.lora) is LoraSection
    assert (s.lora.enabled, s.lora.r, len(s.lora.target_modules)) == (False, 128, 7)
    assert (g.lora.enabled, g.lora.r, g.lora.alpha, g.lora.target_modules) == (True, 16, 32, ["q_proj", "v_proj"])
    assert (s.model.path, g.model.path) == (None, "runs/sft_shapes/final") and (s.data.n, g.data.n) == (2000, 256)
    # a partial section keeps the stage's other defaults
    g8 = load_run_config(_write(tmp_path, "lora: {r: 8}\n"))
    assert (g8.lora.enabled, g8.lora.r, g8.lora.alpha, g8.lora.target_modules) == (True, 8, 32, ["q_proj", "v_proj"])
    assert sft.load_config(_write(tmp_path, "lora: {r: 8}\n")).lora.enabled is False
    assert lora_config(g8.lora).target_modules == {"q_proj", "v_proj"} and lora_config(s.lora) is None
    assert lora_config(from_dict(LoraSection, {"enabled": True})).exclude_modules == ".*visual.*"


def test_fields_of_the_other_stage_are_refused(tmp_path):
    msg = _error("sft", tmp_path, "data: {system_prompt: Think first.}\n")
    assert "data.system_prompt" in msg and "GRPO only" in msg
    assert "model.freeze_vision" in _error("grpo", tmp_path, "model: {freeze_vision: true}\n")
    assert "model.build_tiny" in _error("sft", tmp_path, "model: {build_tiny: true}\n")
    assert "model.path is null" in _error("grpo", tmp_path, "model: {path: null}\n")


# ---------------------------------------------------------------- data sources
@pytest.fixture(scope="module")
def shapes_dirs(tmp_path_factory):
    from saliency_r1.data import export, generate

    d = tmp_path_factory.mktemp("sources")
    return export(generate(None, 4, seed=1), d / "a"), export(generate(None, 6, seed=2), d / "b")


def test_sources_mix_and_the_old_single_path_keys(tmp_path, shapes_dirs):
    a, b = shapes_dirs
    mixed = from_dict(DataSection, {"sources": [{"path": str(a), "format": "shapes"},
                                                {"path": str(b), "format": "shapes", "weight": 0.5}]})
    assert len(load_samples(mixed)) == 4 + 3
    old = sft.load_config(_write(tmp_path, f"data: {{path: {a}, format: shapes, limit: 3}}\n"))
    (src,) = data_sources(old.data)
    assert (src.path, src.format, src.limit) == (str(a), "shapes", 3) and len(load_samples(old.data)) == 3
    grpo_old = load_run_config(_write(tmp_path, f"data: {{source: file, path: {a}, format: shapes}}\n"))
    assert len(load_samples(grpo_old.data)) == 4
    assert data_sources(DataSection()) is None and len(load_samples(DataSection(n=2))) == 2
    for text, needle in ((f"data: {{path: {a}, sources: [{{path: {b}, format: shapes}}]}}", "both set"),
                         ("data: {source: file}", "source is file"),
                         ("data: {image_root: imgs}", "apply to data.path"),
                         (f"data: {{source: shapes, path: {a}}}", "source is shapes")):
        with pytest.raises(InputError, match=needle):
            data_sources(sft.load_config(_write(tmp_path, text + "\n")).data)


# ---------------------------------------------------------------- shipped configs
def test_grpo_configs_match_the_authors():
    for name in ("grpo_qwen2_5_vl_3b.yaml", "grpo_qwen2_5_vl_7b_zero3.yaml", "grpo_qwen2_5_vl_7b_vllm.yaml"):
        c = load_run_config(ROOT / "configs" / name)
        assert (c.grpo.learning_rate, c.grpo.beta, c.grpo.num_generations, c.grpo.max_completion_length,
                c.grpo.temperature, c.grpo.repetition_penalty) == (1e-5, 0.001, 8, 512, 1.0, 1.05), name
        assert (c.lora.enabled, c.lora.r, c.lora.target_modules) == (True, 16, ["q_proj", "v_proj"]), name
        assert c.data.system_prompt == AUTHORS_SYSTEM_PROMPT, name
        assert [(s.path, s.format) for s in c.data.sources] == [("peterant330/saliency-r1-8k", "saliency_r1_8k")]
    assert "3b" in load_run_config(ROOT / "configs" / "grpo_qwen2_5_vl_3b.yaml").model.path


def test_sft_configs_mix_the_two_cold_start_files():
    for size in ("3b", "7b"):
        c = sft.load_config(ROOT / "configs" / f"sft_qwen2_5_vl_{size}.yaml")
        names = [Path(s.path).name for s in c.data.sources]
        assert names == ["saliency_r1_llava_cot_full.json", "saliency_r1_mulberry_sft_full.json"]
        assert {s.format for s in c.data.sources} == {"llava"} and c.lora.r == 128 and c.train.report_to


def test_every_shipped_config_loads():
    for name in packaged_names():
        (sft.load_config if name.startswith("sft") else load_run_config)(packaged_config(name))
    for p in (ROOT / "configs").glob("*.yaml"):
        (sft.load_config if p.name.startswith("sft") else load_run_config)(p)
    assert not (ROOT / "configs" / "sft_shapes.yaml").exists()  # each file exists once


def test_packaged_configs_by_relative_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository
    assert find_config("configs/grpo_shapes.yaml") == packaged_config("grpo_shapes.yaml")
    assert read_config("variants/pure.yaml")["rewards"]["saliency"] == 1.0  # extends ../grpo_shapes.yaml inside
    with pytest.raises(InputError, match="does not exist.*packaged"):
        find_config("configs/nope.yaml")
    with pytest.raises(InputError, match="no packaged config"):
        packaged_config("nope.yaml")


@pytest.mark.slow
def test_packaged_config_works_from_an_installed_wheel(tmp_path):
    """Build the wheel (setuptools, offline), unpack it as site-packages, import from there only."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp_path / "dist"), str(project)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        assert {f"saliency_r1/configs/{n}" for n in packaged_names()} <= set(z.namelist())
        z.extractall(site)
    code = ("import saliency_r1.config_io as c, saliency_r1.training.grpo_config as g;"
            "print(c.packaged_config('variants/zero.yaml'));"
            "print(g.load_run_config('configs/variants/zero.yaml').model.path)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    path, model = out.stdout.split()
    assert Path(path).is_relative_to(site) and model == "runs/sft_shapes/base"


# ---------------------------------------------------------------- report_to
def test_report_to_missing_backend_is_one_line(monkeypatch):
    from transformers.integrations import integration_utils as iu

    monkeypatch.setattr(iu, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(InputError, match=r"tensorboard is not installed; pip install 'saliency-r1\[logging\]'"):
        check_report_to("tensorboard", "grpo.report_to")
    with pytest.raises(InputError, match="wandb is not installed; pip install wandb"):
        check_report_to(["wandb"], "train.report_to")
    with pytest.raises(InputError, match="not a logging backend"):
        check_report_to("tensorbord", "train.report_to")
    assert check_report_to("none", "x") == [] and check_report_to("all", "x") == "all"


def test_report_to_is_one_field_in_both_stages(tmp_path):
    import importlib.util

    assert SFTRunConfig().train.report_to == GRPORunConfig().grpo.report_to == "none"
    args = sft.sft_args(SFTRunConfig().train, tmp_path)
    assert args.report_to in ([], "none", ["none"])
    if importlib.util.find_spec("tensorboard") is None:  # the real missing backend, no monkeypatch
        with pytest.raises(InputError, match=r"saliency-r1\[logging\]"):
            sft.sft_args(from_dict(SFTRunConfig, {"train": {"report_to": "tensorboard"}}).train, tmp_path)


def test_help_text_recurses_into_sections():
    text = help_text(GRPORunConfig)
    assert "  lora.r (int, default 16, >= 1): LoRA rank" in text
    assert "  rewards.judge.timeout_s (float, default 30.0, > 0)" in text  # an optional section, recursed
    assert "  data.sources[].path (str, required)" in text
    assert "  train.learning_rate (float, default 5e-05, > 0): peak learning rate" in help_text(SFTRunConfig)
