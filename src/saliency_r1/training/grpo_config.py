"""The GRPO run configuration: one dataclass per concern, read from YAML, paper defaults explicit.

YAML layout (see ``configs/grpo_shapes.yaml``)::

    name: saliency-r1            # run / variant name
    extends: ../grpo_shapes.yaml # optional: deep-merge this file over another (relative to this file)
    output_dir: runs/grpo_shapes
    resume: true
    model:   {path, build_tiny, dtype, attn_implementation}
    data:    {source: shapes|file, n, seed, split, shapes: {...ShapesWorldConfig...}, path, format, ...}
    rewards: {accuracy, format, saliency (weights), variant, region, judge: {...}, ...}
    lora:    {enabled, r, alpha, dropout, target_modules}
    grpo:    {learning_rate, beta, num_generations, ...; extra: {any other GRPOConfig field}}

Paths are relative to the working directory (run from the repository root).

Paper defaults (method.md §4, paper §4.1 and appendix C.2): ``beta = 0.001`` (TRL's default is 0),
``num_generations = 8``, ``learning_rate = 1e-5``, 3 epochs, LoRA on ``q_proj`` and ``v_proj``. LoRA
rank: the paper's appendix says 8, its main text and the authors' code 16; we default to **16**
(``alpha = 32``). The loss is the original GRPO one (``loss_type = "grpo"``, TRL's default is now
``"dapo"``) with group-normalised advantages (``scale_rewards = "group"``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from ..config_io import from_dict, read_yaml
from ..errors import InputError
from ..rewards.judge import JudgeConfig


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class ModelSection:
    """The policy to start from."""

    path: str = field(default="runs/sft_shapes/final",
                      metadata=_h("checkpoint dir, or a LoRA adapter dir (merged onto its base and saved first)"))
    build_tiny: bool = field(default=False, metadata=_h("build the tiny Qwen2.5-VL at `path` when missing"))
    dtype: str = field(default="float32", metadata=_h("float32 | bfloat16 | float16 | auto"))
    attn_implementation: str | None = field(default=None, metadata=_h("sdpa (default) | eager | flash_attention_2"))


@dataclass
class DataSection:
    """GRPO prompts: ShapesWorld generated on the fly, or a file read by :func:`saliency_r1.data.load`."""

    source: str = field(default="shapes", metadata=_h("shapes | file"))
    n: int = field(default=256, metadata=_h("ShapesWorld samples"))
    seed: int = field(default=0, metadata=_h("ShapesWorld seed"))
    split: str = field(default="train", metadata=_h("ShapesWorld split name"))
    shapes: dict = field(default_factory=dict, metadata=_h("ShapesWorldConfig overrides"))
    path: str | None = field(default=None, metadata=_h("data file for source=file"))
    format: str | None = field(default=None, metadata=_h("loader format (saliency_r1.data.FORMATS)"))
    image_root: str | None = field(default=None, metadata=_h("image folder (default: the file's folder)"))
    limit: int | None = field(default=None, metadata=_h("read at most this many rows"))
    instruction: str | None = field(default=None, metadata=_h("text appended to each question"))
    system_prompt: str | None = field(default=None, metadata=_h("optional system message"))


@dataclass
class RewardSection:
    """r = w_acc · R_accuracy + w_fmt · R_format + w_sal · R_saliency."""

    accuracy: float = field(default=1.0, metadata=_h("weight of R_accuracy"))
    format: float = field(default=1.0, metadata=_h("weight of R_format"))
    saliency: float = field(default=1.0, metadata=_h("weight of R_saliency"))
    log_zero_weight: bool = field(default=False, metadata=_h(
        "also compute and log the costly rewards (saliency, judge) whose weight is 0; the cheap ones "
        "(format, exact-match accuracy) are always logged"))
    variant: str = field(default="full", metadata=_h("holistic map: full | think | answer | attn"))
    region: str = field(default="boxes", metadata=_h("score against boxes, or masks where present"))
    saliency_batch_size: int = field(default=4, metadata=_h("completions per traced forward"))
    think_query_offset: int = field(default=0, metadata=_h("-1: the authors' first-hop query position"))
    judge: JudgeConfig | None = field(default=None, metadata=_h("LLM judge for R_accuracy; None: exact match"))
    judge_shortcut_exact: bool = field(default=True, metadata=_h("exact matches score 1 without a judge call"))

    def __post_init__(self) -> None:
        if isinstance(self.judge, dict):
            self.judge = from_dict(JudgeConfig, self.judge, "rewards.judge")
        for name in ("accuracy", "format", "saliency"):
            if float(getattr(self, name)) < 0:
                raise InputError(f"rewards.{name} is {getattr(self, name)}; reward weights must be >= 0")


@dataclass
class LoraSection:
    """LoRA on the language model's attention (the vision tower stays frozen)."""

    enabled: bool = field(default=True, metadata=_h("False: full fine-tuning"))
    r: int = field(default=16, metadata=_h("rank: 16 (paper main text, authors' code); appendix says 8"))
    alpha: int = field(default=32, metadata=_h("lora_alpha"))
    dropout: float = field(default=0.05, metadata=_h("lora_dropout"))
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"],
                                      metadata=_h("module names (paper: q_proj, v_proj)"))


@dataclass
class GRPOArgs:
    """The GRPOConfig arguments we set explicitly; ``extra`` passes any other GRPOConfig field."""

    learning_rate: float = field(default=1e-5, metadata=_h("paper: 1e-5"))
    beta: float = field(default=0.001, metadata=_h("KL coefficient; paper 0.001, TRL default 0"))
    num_generations: int = field(default=8, metadata=_h("G completions per prompt (paper: 8)"))
    num_train_epochs: float = field(default=3.0, metadata=_h("paper: 3"))
    max_steps: int = field(default=-1, metadata=_h("> 0 overrides the epochs"))
    per_device_train_batch_size: int = field(default=8, metadata=_h("completions per device per step"))
    gradient_accumulation_steps: int = field(default=1, metadata=_h("accumulation steps"))
    max_completion_length: int = field(default=512, metadata=_h("max generated tokens"))
    temperature: float = field(default=1.0, metadata=_h("sampling temperature"))
    epsilon: float = field(default=0.2, metadata=_h("PPO clip ε"))
    loss_type: str = field(default="grpo", metadata=_h("original GRPO loss (TRL's default is dapo)"))
    scale_rewards: str = field(default="group", metadata=_h("advantage = (r - mean_group) / std_group"))
    logging_steps: int = field(default=10, metadata=_h("log every N steps"))
    save_steps: int = field(default=100, metadata=_h("checkpoint every N steps"))
    save_total_limit: int | None = field(default=3, metadata=_h("checkpoints kept"))
    seed: int = field(default=42, metadata=_h("seed"))
    bf16: bool = field(default=True, metadata=_h("bf16 mixed precision (False on CPU)"))
    activation_checkpointing: bool = field(default=True, metadata=_h("gradient checkpointing (False on CPU)"))
    use_cpu: bool = field(default=False, metadata=_h("train on CPU"))
    use_vllm: bool = field(default=False, metadata=_h("vLLM rollouts"))
    vllm_mode: str = field(default="colocate", metadata=_h("server | colocate"))
    report_to: str = field(default="none", metadata=_h("none | tensorboard | wandb ..."))
    log_completions: bool = field(default=False, metadata=_h("print a table of completions"))
    extra: dict = field(default_factory=dict, metadata=_h("other GRPOConfig fields, passed through"))


@dataclass
class GRPORunConfig:
    """A whole GRPO run (module docstring)."""

    name: str = field(default="saliency-r1", metadata=_h("variant name, written next to the outputs"))
    output_dir: str = field(default="runs/grpo_shapes", metadata=_h("checkpoints, adapter/ and merged/"))
    resume: bool = field(default=True, metadata=_h("resume from the last complete checkpoint-N"))
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    rewards: RewardSection = field(default_factory=RewardSection)
    lora: LoraSection = field(default_factory=LoraSection)
    grpo: GRPOArgs = field(default_factory=GRPOArgs)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_run_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """A run YAML as a dict, with ``extends:`` chains resolved (paths relative to the including file)."""
    p = Path(path).resolve()
    if p in _seen:
        raise InputError(f"config {p} extends itself through {' -> '.join(map(str, _seen))}; break the cycle")
    data = read_yaml(p)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(read_run_yaml(p.parent / parent, _seen + (p,)), data)


def apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Apply ``{"output_dir": ..., "max_steps": ..., "grpo.learning_rate": ...}`` to a config dict.

    ``max_steps`` is short for ``grpo.max_steps``; other keys are top-level fields or ``section.field``.

    >>> apply_overrides({"grpo": {"beta": 0.1}}, {"max_steps": 2, "grpo.beta": 0.0})
    {'grpo': {'beta': 0.0, 'max_steps': 2}}
    """
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        key = "grpo.max_steps" if key == "max_steps" else key
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def load_run_config(path: str | Path, **overrides: Any) -> GRPORunConfig:
    """Read a run YAML (with ``extends``), apply overrides, check keys: a :class:`GRPORunConfig`."""
    return from_dict(GRPORunConfig, apply_overrides(read_run_yaml(path), overrides), where=str(path))


def to_plain(obj: Any) -> Any:
    """A config (nested dataclasses) as plain YAML-able data."""
    return asdict(obj) if is_dataclass(obj) else obj


__all__ = ["GRPORunConfig", "ModelSection", "DataSection", "RewardSection", "LoraSection", "GRPOArgs",
           "load_run_config", "read_run_yaml", "apply_overrides", "to_plain"]
