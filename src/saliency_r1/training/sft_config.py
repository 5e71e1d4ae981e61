"""The SFT run's options: one dataclass per YAML section (``model``, ``data``, ``lora``, ``train``).

>>> from saliency_r1.config_io import from_dict
>>> from_dict(SFTRunConfig, {"train": {"learning_rate": 1e-3}, "lora": {"enabled": True}}).lora.r
128
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..data.shapes import ShapesWorldConfig
from ..models.tiny import TinyConfig

LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class ModelArgs:
    """The model to fine-tune: a local checkpoint, or the tiny Qwen2.5-VL built for the run."""

    path: Optional[str] = field(default=None, metadata=_h(
        "local checkpoint directory (e.g. Qwen2.5-VL-7B-Instruct); None: build the tiny model into output_dir/base"))
    tiny: TinyConfig = field(default_factory=TinyConfig, metadata=_h("sizes of the tiny model (when path is None)"))
    tokenizer_corpus: int = field(default=2000, metadata=_h(
        "training texts used to train the tiny model's tokenizer (when path is None)"))
    tiny_seed: int = field(default=0, metadata=_h("initialisation seed of the tiny model"))
    dtype: str = field(default="float32", metadata=_h("weights dtype when loading: float32, bfloat16, float16"))
    attn_implementation: Optional[str] = field(default=None, metadata=_h(
        "attention kernel: sdpa, eager, flash_attention_2; None: the transformers default"))
    image_min_pixels: Optional[int] = field(default=None, metadata=_h(
        "processor min_pixels (resized image area floor); None: the checkpoint's preprocessor_config"))
    image_max_pixels: Optional[int] = field(default=None, metadata=_h(
        "processor max_pixels (caps the image tokens: pixels / 784 per image); None: the checkpoint's"))
    freeze_vision: bool = field(default=False, metadata=_h(
        "freeze the vision tower in full fine-tuning (LoRA never targets it: see lora.exclude_modules)"))


@dataclass
class DataArgs:
    """Training data: ShapesWorld generated on the fly (``path`` unset) or a file read by ``saliency_r1.data.load``."""

    path: Optional[str] = field(default=None, metadata=_h("data file or folder; None: generate ShapesWorld"))
    format: str = field(default="shapes", metadata=_h(
        "loader format of path: visual_cot, visual_cot_meta, saliency_r1_8k, llava, shapes"))
    image_root: Optional[str] = field(default=None, metadata=_h("folder the image paths are relative to"))
    limit: Optional[int] = field(default=None, metadata=_h("read at most this many rows of path"))
    loader_options: dict = field(default_factory=dict, metadata=_h(
        "extra options of saliency_r1.data.load, e.g. {max_response_words: 800} (llava), {box_format: pixels}"))
    shapes: ShapesWorldConfig = field(default_factory=ShapesWorldConfig, metadata=_h(
        "ShapesWorld generator config (when path is None); evaluate on the same config with another seed"))
    n: int = field(default=2000, metadata=_h("number of ShapesWorld training samples"))
    seed: int = field(default=0, metadata=_h("ShapesWorld seed of the training split"))
    split: str = field(default="train", metadata=_h("ShapesWorld split name (its own seed stream)"))


@dataclass
class LoraArgs:
    """LoRA (peft) on the language model's linear layers; off: full fine-tuning."""

    enabled: bool = field(default=False, metadata=_h("train a LoRA adapter instead of all weights"))
    r: int = field(default=128, metadata=_h("LoRA rank (paper SFT: 128)"))
    alpha: int = field(default=256, metadata=_h("LoRA alpha (scale alpha / r)"))
    dropout: float = field(default=0.05, metadata=_h("LoRA dropout"))
    target_modules: list = field(default_factory=lambda: list(LANGUAGE_LINEAR), metadata=_h(
        "module name suffixes to adapt (default: every linear layer of the language model)"))
    exclude_modules: Optional[str] = field(default=r".*visual.*", metadata=_h(
        "regex of modules never adapted (default: the vision tower); None: none excluded"))


@dataclass
class TrainArgs:
    """The ``trl.SFTConfig`` arguments a run exposes, and the run's own switches."""

    output_dir: str = field(default="runs/sft", metadata=_h("checkpoints, final/ and logs go here"))
    learning_rate: float = field(default=5e-5, metadata=_h("peak learning rate (paper: 5e-5)"))
    num_train_epochs: float = field(default=2.0, metadata=_h("epochs over the data (paper: 2)"))
    max_steps: int = field(default=-1, metadata=_h("stop after this many optimizer steps; -1: use epochs"))
    per_device_train_batch_size: int = field(default=4, metadata=_h("examples per forward pass"))
    gradient_accumulation_steps: int = field(default=1, metadata=_h(
        "forward passes per optimizer step (batch = per-device batch x accumulation x devices)"))
    warmup_ratio: float = field(default=0.05, metadata=_h("fraction of the steps of linear warm-up (paper: 0.05)"))
    lr_scheduler_type: str = field(default="cosine", metadata=_h("linear, cosine, constant_with_warmup, ..."))
    weight_decay: float = field(default=0.0, metadata=_h("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping norm"))
    optim: str = field(default="adamw_torch", metadata=_h("optimizer name of transformers' TrainingArguments"))
    logging_steps: int = field(default=10, metadata=_h("log the loss every this many steps"))
    save_steps: int = field(default=50, metadata=_h("write checkpoint-N every this many steps (resume point)"))
    save_total_limit: Optional[int] = field(default=2, metadata=_h("keep at most this many checkpoints; None: all"))
    seed: int = field(default=0, metadata=_h("seed of the shuffling, dropout and LoRA initialisation"))
    bf16: Optional[bool] = field(default=None, metadata=_h("bfloat16 mixed precision; None: on a bf16 GPU only"))
    gradient_checkpointing: bool = field(default=False, metadata=_h(
        "recompute activations in the backward pass (saves memory; TRL's default True is turned off here)"))
    use_cpu: Optional[bool] = field(default=None, metadata=_h("train on the CPU; None: when no GPU is visible"))
    dataloader_num_workers: int = field(default=0, metadata=_h("data loader worker processes"))
    max_length: Optional[int] = field(default=None, metadata=_h(
        "cut responses so prompt + response fit this many tokens; None: no cut"))
    padding_side: str = field(default="right", metadata=_h("pad batches on the left or the right"))
    resume: bool = field(default=True, metadata=_h(
        "resume from the last complete checkpoint in output_dir; False: remove its checkpoints and start over"))
    disable_tqdm: bool = field(default=False, metadata=_h("hide the progress bar"))
    torch_threads: Optional[int] = field(default=None, metadata=_h(
        "torch.set_num_threads for the run; None: leave it. On a shared CPU, 1 avoids OpenMP stalls"))


@dataclass
class SFTRunConfig:
    """Everything an SFT run needs; YAML sections ``model``, ``data``, ``lora``, ``train``."""

    model: ModelArgs = field(default_factory=ModelArgs, metadata=_h("the model to fine-tune"))
    data: DataArgs = field(default_factory=DataArgs, metadata=_h("the training data"))
    lora: LoraArgs = field(default_factory=LoraArgs, metadata=_h("LoRA settings (enabled: false = full FT)"))
    train: TrainArgs = field(default_factory=TrainArgs, metadata=_h("optimisation and checkpointing"))


__all__ = ["SFTRunConfig", "ModelArgs", "DataArgs", "LoraArgs", "TrainArgs", "LANGUAGE_LINEAR"]
