"""The SFT run's options: YAML sections ``model``, ``data``, ``lora`` (shared with GRPO: :mod:`.run_config`)
and ``train`` (the ``trl.SFTConfig`` arguments, like GRPO's ``grpo`` section).

>>> from saliency_r1.config_io import from_dict
>>> from_dict(SFTRunConfig, {"train": {"learning_rate": "1e-3"}, "lora": {"enabled": True}}).lora.r
128
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..config_io import meta, section
from .run_config import (LANGUAGE_LINEAR, REPORT_TO_HELP, SFT_LORA, DataSection, LoraSection, ModelSection,
                         ReportTo)

# The SFT names of the shared sections (older code and configs use them).
ModelArgs, DataArgs, LoraArgs = ModelSection, DataSection, LoraSection


@dataclass
class TrainArgs:
    """The ``trl.SFTConfig`` arguments a run sets explicitly (``extra``: any other one), and the run's switches."""

    output_dir: str = field(default="runs/sft", metadata=meta("checkpoints, final/ and logs go here"))
    learning_rate: float = field(default=5e-5, metadata=meta("peak learning rate (paper: 5e-5)", gt=0))
    num_train_epochs: float = field(default=2.0, metadata=meta("epochs over the data (paper: 2)", gt=0))
    max_steps: int = field(default=-1, metadata=meta(
        "stop after this many optimizer steps; -1: use epochs", min=-1, exclude=(0,)))
    per_device_train_batch_size: int = field(default=4, metadata=meta("examples per forward pass", min=1))
    gradient_accumulation_steps: int = field(default=1, metadata=meta(
        "forward passes per optimizer step (batch = per-device batch x accumulation x devices)", min=1))
    warmup_ratio: float = field(default=0.05, metadata=meta(
        "fraction of the steps of linear warm-up (paper: 0.05)", min=0, lt=1))
    lr_scheduler_type: str = field(default="cosine", metadata=meta("linear, cosine, constant_with_warmup, ..."))
    weight_decay: float = field(default=0.0, metadata=meta("AdamW weight decay", min=0))
    max_grad_norm: float = field(default=1.0, metadata=meta("gradient clipping norm", gt=0))
    optim: str = field(default="adamw_torch", metadata=meta("optimizer name of transformers' TrainingArguments"))
    logging_steps: int = field(default=10, metadata=meta("log the loss every this many steps", min=1))
    save_steps: int = field(default=50, metadata=meta(
        "write checkpoint-N every this many steps (resume point)", min=1))
    save_total_limit: Optional[int] = field(default=2, metadata=meta(
        "keep at most this many checkpoints; null: all", min=1))
    seed: int = field(default=0, metadata=meta("seed of the shuffling, dropout and LoRA initialisation"))
    bf16: Optional[bool] = field(default=None, metadata=meta("bfloat16 mixed precision; null: on a bf16 GPU only"))
    gradient_checkpointing: bool = field(default=False, metadata=meta(
        "recompute activations in the backward pass (saves memory; TRL's default True is turned off here)"))
    use_cpu: Optional[bool] = field(default=None, metadata=meta("train on the CPU; null: when no GPU is visible"))
    dataloader_num_workers: int = field(default=0, metadata=meta("data loader worker processes", min=0))
    max_length: Optional[int] = field(default=None, metadata=meta(
        "cut responses so prompt + response fit this many tokens; null: no cut", min=1))
    padding_side: str = field(default="right", metadata=meta("pad batches on the left or the right",
                                                              choices=("left", "right")))
    resume: bool = field(default=True, metadata=meta(
        "resume from the last complete checkpoint in output_dir; false: set its checkpoints aside, start over"))
    disable_tqdm: bool = field(default=False, metadata=meta("hide the progress bar"))
    torch_threads: Optional[int] = field(default=None, metadata=meta(
        "torch.set_num_threads for the run; null: leave it. On a shared CPU, 1 avoids OpenMP stalls", min=1))
    report_to: ReportTo = field(default="none", metadata=meta(REPORT_TO_HELP))
    extra: dict[str, object] = field(default_factory=dict, metadata=meta(
        "other trl.SFTConfig fields, passed through (they win over the fields above)"))


@dataclass
class SFTRunConfig:
    """Everything an SFT run needs; YAML sections ``model``, ``data``, ``lora``, ``train``."""

    stage_section: ClassVar[str] = "train"  # bare command-line names (--learning_rate) are fields of this section

    model: ModelSection = section(ModelSection, "the model to fine-tune")
    data: DataSection = section(DataSection, "the training data")
    lora: LoraSection = section(LoraSection, "LoRA settings (enabled: false = full fine-tuning)", **SFT_LORA)
    train: TrainArgs = section(TrainArgs, "optimisation, checkpointing and logging (trl.SFTConfig)")


__all__ = ["SFTRunConfig", "TrainArgs", "ModelSection", "DataSection", "LoraSection", "ModelArgs", "DataArgs",
           "LoraArgs", "LANGUAGE_LINEAR"]
