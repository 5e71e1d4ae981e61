"""The GRPO run configuration: one dataclass per concern, read from YAML, paper defaults explicit.

YAML layout (see the packaged ``grpo_shapes.yaml``: ``saliency_r1.config_io.packaged_config``)::

    name: saliency-r1            # run / variant name
    extends: ../grpo_shapes.yaml # optional: deep-merge this file over another (relative to this file)
    output_dir: runs/grpo_shapes
    resume: true
    model:   {path, build_tiny, dtype, attn_implementation, ...}       (shared with SFT: .run_config)
    data:    {sources: [{path, format, ...}], or n, seed, split, shapes: {...ShapesWorldConfig...}, ...}
    rewards: {accuracy, format, saliency (weights), variant, region, judge: {...}, ...}
    lora:    {enabled, r, alpha, dropout, target_modules, exclude_modules}
    grpo:    {learning_rate, beta, num_generations, ...; extra: {any other GRPOConfig field}}

Paths are relative to the working directory. Every field, its type, default and help:
``saliency-r1 train grpo --help``; any of them can be set on the command line (``--grpo.beta 0``).

Paper defaults (method.md §4, paper §4.1 and appendix C.2): ``beta = 0.001`` (TRL's default is 0),
``num_generations = 8``, ``learning_rate = 1e-5``, 3 epochs, LoRA on ``q_proj`` and ``v_proj``. LoRA
rank: the paper's appendix says 8, its main text and the authors' code 16; we default to **16**
(``alpha = 32``). The loss is the original GRPO one (``loss_type = "grpo"``, TRL's default is now
``"dapo"``) with group-normalised advantages (``scale_rewards = "group"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..attribution.options import RELU, THINK_QUERY_OFFSETS, VARIANTS
from ..config_io import from_dict, load_run, meta, section
from ..config_io import to_dict as to_plain
from ..errors import InputError
from ..rewards.judge import JudgeConfig
from .run_config import (GRPO_LORA, REPORT_TO_HELP, DataSection, LoraSection, ModelSection, ReportTo,
                         check_stage)



@dataclass
class RewardSection:
    """r = w_acc · R_accuracy + w_fmt · R_format + w_sal · R_saliency."""

    accuracy: float = field(default=1.0, metadata=meta("weight of R_accuracy", min=0))
    format: float = field(default=1.0, metadata=meta("weight of R_format", min=0))
    saliency: float = field(default=1.0, metadata=meta("weight of R_saliency", min=0))
    log_zero_weight: bool = field(default=False, metadata=meta(
        "also compute and log the costly rewards (saliency, judge) whose weight is 0; the cheap ones "
        "(format, exact-match accuracy) are always logged"))
    variant: str = field(default="full", metadata=meta("holistic map", choices=VARIANTS))
    region: str = field(default="boxes", metadata=meta("score against boxes, or masks where present",
                                                       choices=("boxes", "masks")))
    saliency_batch_size: int = field(default=4, metadata=meta("completions per traced forward", min=1))
    think_query_offset: int = field(default=0, metadata=meta(
        "first-hop query position: 0 the thinking token's own (paper), -1 the one predicting it (authors' code)",
        choices=THINK_QUERY_OFFSETS))
    relu: str = field(default="per_token", metadata=meta(
        "ReLU on each answer token's map before the sum (paper) or once after the sum (authors' code)",
        choices=RELU))
    authors_box_bug: bool = field(default=False, metadata=meta(
        "BUG parity: score against boxes whose y2 is scaled by the image width, as the authors' reward code does"))
    judge: Optional[JudgeConfig] = field(default=None, metadata=meta(
        "LLM judge for R_accuracy; null: exact match"))
    judge_shortcut_exact: bool = field(default=True, metadata=meta("exact matches score 1 without a judge call"))

    def __post_init__(self) -> None:
        if isinstance(self.judge, dict):
            self.judge = from_dict(JudgeConfig, self.judge, "rewards.judge")


@dataclass
class GRPOArgs:
    """The GRPOConfig arguments we set explicitly; ``extra`` passes any other GRPOConfig field."""

    learning_rate: float = field(default=1e-5, metadata=meta("paper and authors: 1e-5", gt=0))
    beta: float = field(default=0.001, metadata=meta("KL coefficient; paper 0.001, TRL default 0", min=0))
    num_generations: int = field(default=8, metadata=meta("G completions per prompt (paper: 8)", min=2))
    num_train_epochs: float = field(default=3.0, metadata=meta("paper: 3", gt=0))
    max_steps: int = field(default=-1, metadata=meta("> 0 overrides the epochs; -1: epochs", min=-1, exclude=(0,)))
    per_device_train_batch_size: int = field(default=8, metadata=meta("completions per device per step", min=1))
    gradient_accumulation_steps: int = field(default=1, metadata=meta("accumulation steps", min=1))
    max_completion_length: int = field(default=512, metadata=meta("max generated tokens (authors: 512)", min=1))
    temperature: float = field(default=1.0, metadata=meta("sampling temperature", gt=0))
    repetition_penalty: float = field(default=1.0, metadata=meta(
        "sampling repetition penalty (authors: 1.05; 1: none)", gt=0))
    epsilon: float = field(default=0.2, metadata=meta("PPO clip ε", gt=0))
    loss_type: str = field(default="grpo", metadata=meta("original GRPO loss (TRL's default is dapo)"))
    scale_rewards: str = field(default="group", metadata=meta("advantage = (r - mean_group) / std_group"))
    logging_steps: int = field(default=10, metadata=meta("log every N steps", min=1))
    save_steps: int = field(default=100, metadata=meta("checkpoint every N steps", min=1))
    save_total_limit: Optional[int] = field(default=3, metadata=meta("checkpoints kept; null: all", min=1))
    seed: int = field(default=42, metadata=meta("seed"))
    bf16: bool = field(default=True, metadata=meta("bf16 mixed precision (false on CPU)"))
    activation_checkpointing: bool = field(default=True, metadata=meta("gradient checkpointing (false on CPU)"))
    use_cpu: bool = field(default=False, metadata=meta("train on CPU"))
    use_vllm: bool = field(default=False, metadata=meta("vLLM rollouts"))
    vllm_mode: str = field(default="colocate", metadata=meta("vLLM placement", choices=("server", "colocate")))
    report_to: ReportTo = field(default="none", metadata=meta(REPORT_TO_HELP))
    log_completions: bool = field(default=False, metadata=meta("print a table of completions"))
    extra: dict[str, Any] = field(default_factory=dict, metadata=meta("other GRPOConfig fields, passed through"))


@dataclass
class GRPORunConfig:
    """A whole GRPO run (module docstring)."""

    stage_section: ClassVar[str] = "grpo"  # bare command-line names (--learning_rate) are fields of this section

    name: str = field(default="saliency-r1", metadata=meta("variant name, written next to the outputs"))
    output_dir: str = field(default="runs/grpo_shapes", metadata=meta("checkpoints, adapter/ and merged/"))
    resume: bool = field(default=True, metadata=meta("resume from the last complete checkpoint-N"))
    model: ModelSection = section(ModelSection, "the policy to start from", path="runs/sft_shapes/final")
    data: DataSection = section(DataSection, "GRPO prompts (ShapesWorld or data sources)", n=256)
    rewards: RewardSection = section(RewardSection, "reward weights and the saliency reward's settings")
    lora: LoraSection = section(LoraSection, "LoRA on the language model's attention", **GRPO_LORA)
    grpo: GRPOArgs = section(GRPOArgs, "trl.GRPOConfig arguments")


def load_run_config(path: str | Path, **overrides: Any) -> GRPORunConfig:
    """Read a run YAML (with ``extends``), apply overrides (dotted names, or bare names of top-level and
    ``grpo`` fields: ``max_steps=2``), check every key, type and range: a :class:`GRPORunConfig`.

    >>> load_run_config("configs/grpo_shapes.yaml", max_steps=2, **{"lora.r": 8}).grpo.max_steps
    2
    """
    config = load_run(GRPORunConfig, path, overrides)
    if config.model.path is None:
        raise InputError(f"{path}: model.path is null; GRPO starts from a checkpoint (the SFT cold start's "
                         "final/ or merged/), or set model.build_tiny: true with a path")
    check_stage(config, "grpo")
    return config


__all__ = ["GRPORunConfig", "ModelSection", "DataSection", "RewardSection", "LoraSection", "GRPOArgs",
           "load_run_config", "to_plain", "VARIANTS"]
