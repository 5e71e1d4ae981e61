"""The training commands of README.md and docs/real_models.md, run as far as a CPU allows: each referenced file
exists, each accelerate config is one of the repository's, each ``saliency-r1 train`` command line parses and
its config (with the overrides) loads and validates through the project's own loaders, the batch products hold
for the process count, and GRPO / lmms-eval start from the outputs the commands before them write."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from saliency_r1.cli.main import build_parser
from saliency_r1.cli.train import overrides_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/real_models.md")


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of the ```bash blocks, continuation lines joined, comments dropped, split like a shell.

    >>> shell_commands("```bash\\na --b \\\\\\n    c  # note\\n```\\n")
    [['a', '--b', 'c']]
    """
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                cmds.append(words)
    return cmds


def _training(doc: str) -> list[tuple[list[str], list[str]]]:
    """``(launcher words, saliency-r1 words from "train" on)`` of each training command of ``doc``."""
    found = []
    for words in shell_commands((ROOT / doc).read_text()):
        if "train" in words and words[words.index("train") - 1] in ("saliency-r1", "saliency_r1.cli.main"):
            i = words.index("train")
            found.append((words[:i], words[i:]))
    return found


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def _load(cli: list[str]):
    from saliency_r1.training.grpo_config import load_run_config
    from saliency_r1.training.sft import load_config

    args = build_parser().parse_args(cli)
    overrides = overrides_of(args)
    load = load_config if args.stage == "sft" else load_run_config
    return args.stage, load(ROOT / args.config, **overrides)


@pytest.mark.parametrize("doc", DOCS)
def test_training_commands_load_and_their_batches_hold(doc):
    commands = _training(doc)
    stages = [cli[1] for _, cli in commands]
    assert "sft" in stages and "grpo" in stages, doc
    outputs: set[str] = set()
    for launcher, cli in commands:
        processes = 1
        if launcher[:2] == ["accelerate", "launch"]:
            accel = ROOT / _option(launcher, "--config_file")
            assert accel.parent == ROOT / "configs" / "accelerate" and accel.is_file(), accel
            spec = yaml.safe_load(accel.read_text())
            assert spec["distributed_type"] in ("MULTI_GPU", "DEEPSPEED") and spec["mixed_precision"] == "bf16"
            if spec["distributed_type"] == "DEEPSPEED":
                ds = spec["deepspeed_config"]
                assert ds["zero_stage"] == 3 and ds["zero3_save_16bit_model"] is True  # gathered weights on save
            processes = int(_option(launcher, "--num_processes") or spec["num_processes"])
            assert launcher[-2:] == ["-m", "saliency_r1.cli.main"] and processes == 8
        stage, cfg = _load(cli)
        if stage == "sft":
            t = cfg.train
            assert processes * t.per_device_train_batch_size * t.gradient_accumulation_steps == 64  # paper C.1
            outputs.add(f"{t.output_dir}/final")
        else:
            g = cfg.grpo
            completions = processes * g.per_device_train_batch_size * g.gradient_accumulation_steps
            assert completions % g.num_generations == 0, (cli, completions)
            assert g.num_generations == 8 and g.max_completion_length == 512 and g.beta == 0.001
            assert cfg.model.path in outputs, f"{cfg.model.path} is written by no SFT command before it"
            outputs.add(f"{cfg.output_dir}/merged")
    for words in shell_commands((ROOT / doc).read_text()):  # lmms-eval evaluates what a command wrote
        if "lmms_eval" in words and "--model_args" in words:
            pretrained = dict(kv.split("=", 1) for kv in _option(words, "--model_args").split(","))["pretrained"]
            assert pretrained in outputs, pretrained


def test_both_sizes_in_the_docs():
    configs = {Path(cli[cli.index("--config") + 1]).name for _, cli in _training("docs/real_models.md")}
    assert configs == {"sft_qwen2_5_vl_3b.yaml", "sft_qwen2_5_vl_7b.yaml", "grpo_qwen2_5_vl_3b.yaml",
                       "grpo_qwen2_5_vl_7b_zero3.yaml"}
    readme = (ROOT / "README.md").read_text()
    for extra in ("[deepspeed]", "[vllm]", "[flash]", "[logging]"):
        assert f"`{extra}`" in readme, extra
