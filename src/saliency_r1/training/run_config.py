"""The sections SFT and GRPO share: the model, the data, LoRA, logging; one sample loader and one LoRA builder.

Each run config (:class:`~.sft_config.SFTRunConfig`, :class:`~.grpo_config.GRPORunConfig`) holds one
:class:`ModelSection`, one :class:`DataSection` and one :class:`LoraSection`, each with its stage's defaults
(:func:`saliency_r1.config_io.section`): SFT full fine-tuning (LoRA, when on, rank 128 on every linear layer
of the language model, the paper's cold start), GRPO LoRA rank 16 on ``q_proj``/``v_proj`` (the authors' code;
the paper's appendix says rank 8). Fields one stage does not use say so (``only``) and are refused there.

>>> from saliency_r1.config_io import from_dict
>>> from_dict(DataSection, {"path": "rows.jsonl", "format": "llava"}).path
'rows.jsonl'
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..config_io import meta, one_line
from ..data.shapes import ShapesWorldConfig
from ..data.sources import DataSource
from ..errors import InputError
from ..models.tiny import TinyConfig

logger = logging.getLogger(__name__)

LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class ModelSection:
    """The model to train: a checkpoint directory, or the tiny Qwen2.5-VL built for the run."""

    path: Optional[str] = field(default=None, metadata=meta(
        "checkpoint directory (or, for GRPO, a LoRA adapter directory, merged onto its base first); "
        "SFT with null: build the tiny model into output_dir/base"))
    build_tiny: bool = field(default=False, metadata=meta(
        "build the tiny Qwen2.5-VL (model.tiny) at `path` when it holds no checkpoint", only="grpo"))
    tiny: TinyConfig = field(default_factory=TinyConfig, metadata=meta("sizes of the tiny model, when one is built"))
    tokenizer_corpus: int = field(default=2000, metadata=meta(
        "training texts the tiny model's tokenizer is trained on (SFT with path null)", min=1, only="sft"))
    tiny_seed: int = field(default=0, metadata=meta("initialisation seed of the tiny model"))
    dtype: str = field(default="float32", metadata=meta("weights dtype when loading", choices=DTYPES))
    attn_implementation: Optional[str] = field(default=None, metadata=meta(
        "attention kernel: sdpa, eager, flash_attention_2; null: the transformers default"))
    image_min_pixels: Optional[int] = field(default=None, metadata=meta(
        "processor min_pixels (resized image area floor); null: the checkpoint's", min=1))
    image_max_pixels: Optional[int] = field(default=None, metadata=meta(
        "processor max_pixels (caps the image tokens: pixels / 784 per image); null: the checkpoint's", min=1))
    freeze_vision: bool = field(default=False, metadata=meta(
        "freeze the vision tower in full fine-tuning (LoRA never targets it: lora.exclude_modules)", only="sft"))


@dataclass
class DataSection:
    """Training data: ShapesWorld generated on the fly, or ``sources`` read by :func:`saliency_r1.data.load_sources`.

    ``path``/``format``/``image_root``/``limit``/``loader_options`` are the older one-source form (kept: they
    become one source).
    """

    sources: list[DataSource] = field(default_factory=list, metadata=meta(
        "datasets to mix: [{path, format, image_root, limit, weight, options}, ...]; empty: ShapesWorld"))
    path: Optional[str] = field(default=None, metadata=meta("one data source (older form of sources)"))
    format: str = field(default="shapes", metadata=meta("loader format of path (saliency_r1.data.FORMATS)"))
    image_root: Optional[str] = field(default=None, metadata=meta("folder the image paths of path are relative to"))
    limit: Optional[int] = field(default=None, metadata=meta("read at most this many rows of path", min=1))
    loader_options: dict = field(default_factory=dict, metadata=meta(
        "extra options of saliency_r1.data.load for path, e.g. {max_response_words: 800}"))
    source: Optional[str] = field(default=None, metadata=meta(
        "older GRPO switch: shapes or file; null: file when sources/path are set", choices=("shapes", "file")))
    shapes: ShapesWorldConfig = field(default_factory=ShapesWorldConfig, metadata=meta(
        "ShapesWorld generator config (no sources); evaluate on the same config with another seed"))
    n: int = field(default=2000, metadata=meta("ShapesWorld samples", min=1))
    seed: int = field(default=0, metadata=meta("ShapesWorld seed, and the seed of the weighted source mixing"))
    split: str = field(default="train", metadata=meta("ShapesWorld split name (its own seed stream)"))
    instruction: Optional[str] = field(default=None, metadata=meta("text appended to each question", only="grpo"))
    system_prompt: Optional[str] = field(default=None, metadata=meta(
        "system message of each prompt (SFT prompts use the chat template's default one)", only="grpo"))


@dataclass
class LoraSection:
    """LoRA (peft) on the language model's linear layers; ``enabled: false``: full fine-tuning."""

    enabled: bool = field(default=False, metadata=meta("train a LoRA adapter instead of all weights"))
    r: int = field(default=128, metadata=meta("LoRA rank (paper SFT: 128; GRPO: 16, the appendix says 8)", min=1))
    alpha: int = field(default=256, metadata=meta("lora_alpha (scale alpha / r)", min=1))
    dropout: float = field(default=0.05, metadata=meta("lora_dropout", min=0, lt=1))
    target_modules: list[str] = field(default_factory=lambda: list(LANGUAGE_LINEAR), metadata=meta(
        "module name suffixes to adapt"))
    exclude_modules: Optional[str] = field(default=r".*visual.*", metadata=meta(
        "regex of modules never adapted (default: the vision tower); null: none excluded"))


SFT_LORA: dict[str, Any] = {}  # the class defaults: rank 128 on every linear layer, off
GRPO_LORA = {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
REPORT_TO_HELP = "logging backends: none, all, tensorboard, wandb, ... (a name or a list); " \
                 "tensorboard: pip install 'saliency-r1[logging]'"
ReportTo = Union[str, list[str]]


def check_stage(config: Any, stage: str) -> None:
    """Refuse a field marked ``only`` for the other stage when it differs from its default (it would do nothing).

    >>> from saliency_r1.training.sft_config import SFTRunConfig
    >>> check_stage(SFTRunConfig(data=DataSection(system_prompt="Think.")), "sft")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: data.system_prompt applies to GRPO only (SFT ignores it); remove it from the SFT config
    """
    defaults = type(config)()
    for name in ("model", "data", "lora"):
        sec, ref = getattr(config, name), getattr(defaults, name)
        for f in dataclasses.fields(sec):
            only = f.metadata.get("only")
            if only and only != stage and getattr(sec, f.name) != getattr(ref, f.name):
                raise InputError(f"{name}.{f.name} applies to {only.upper()} only ({stage.upper()} ignores it); "
                                 f"remove it from the {stage.upper()} config")


# ---------------------------------------------------------------- data
def data_sources(data: DataSection) -> list[DataSource] | None:
    """The sources a data section names (``path`` becomes one source), or None for ShapesWorld.

    >>> data_sources(DataSection()) is None, data_sources(DataSection(path="d", format="llava"))[0].format
    (True, 'llava')
    """
    one = data.path is not None
    if data.sources and one:
        raise InputError("data.sources and data.path are both set; move path/format/image_root/limit into one "
                         "entry of data.sources")
    if not one and (data.image_root is not None or data.limit is not None or data.loader_options):
        raise InputError("data.image_root/limit/loader_options apply to data.path, which is not set; with "
                         "data.sources use each source's image_root, limit and options")
    if data.source == "shapes" and (one or data.sources):
        raise InputError("data.source is shapes but data.sources/path is set; remove one of them")
    if data.source == "file" and not (one or data.sources):
        raise InputError("data.source is file but no data.sources (or data.path and data.format) is set")
    if one:
        return [DataSource(data.path, data.format, image_root=data.image_root, limit=data.limit,
                           options=dict(data.loader_options))]
    return list(data.sources) or None


def load_samples(data: DataSection) -> list[dict]:
    """The training samples of a data section: ShapesWorld (``shapes``, ``n``, ``seed``, ``split``) or its
    sources mixed by weight (:func:`saliency_r1.data.load_sources`, seeded by ``seed``).

    >>> len(load_samples(DataSection(n=3)))
    3
    """
    from ..data import generate, load_sources

    sources = data_sources(data)
    if sources is None:
        return generate(data.shapes, data.n, seed=data.seed, split=data.split)
    samples = load_sources(sources, seed=data.seed)
    logger.info("%d training samples from %d source(s)", len(samples), len(sources))
    return samples


# ---------------------------------------------------------------- LoRA, trainer arguments, logging
def lora_config(lora: LoraSection):
    """A ``peft.LoraConfig`` from a :class:`LoraSection`, or None when LoRA is off.

    >>> lora_config(LoraSection(enabled=True, r=8)).r
    8
    """
    if not lora.enabled:
        return None
    from peft import LoraConfig

    if lora.r < 1:
        raise InputError(f"lora.r must be >= 1, got {lora.r}")
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                      target_modules=list(lora.target_modules), exclude_modules=lora.exclude_modules,
                      task_type="CAUSAL_LM")


def report_backends(report_to: ReportTo) -> list[str] | str:
    """``report_to`` as transformers takes it: a list of backend names, or ``"all"``.

    >>> report_backends("none"), report_backends("tensorboard,wandb"), report_backends(["none"])
    ([], ['tensorboard', 'wandb'], [])
    """
    names = report_to.split(",") if isinstance(report_to, str) else list(report_to)
    names = [n.strip() for n in names if n.strip() and n.strip() != "none"]
    return "all" if "all" in names else names


def check_report_to(report_to: ReportTo, where: str) -> list[str] | str:
    """The backends of ``report_to``, each known to transformers and installed; otherwise one line naming what
    to install (checked before training starts: a missing backend never crashes a run midway).

    >>> check_report_to("none", "grpo.report_to")
    []
    """
    from transformers.integrations import integration_utils as iu

    backends = report_backends(report_to)
    if backends == "all":
        return backends
    available = set(iu.get_available_reporting_integrations())
    for name in backends:
        if name not in iu.INTEGRATION_TO_CALLBACK:
            raise InputError(f"{where} = {name!r} is not a logging backend; use none, all or one of "
                             f"{', '.join(iu.INTEGRATION_TO_CALLBACK)}")
        if name not in available:
            extra = "pip install 'saliency-r1[logging]'" if name == "tensorboard" else f"pip install {name}"
            raise InputError(f"{where} = {name!r} but {name} is not installed; {extra}, or set {where}: none")
    return backends


def trainer_args(cls: type, kwargs: dict[str, Any], where: str):
    """``cls(**kwargs)`` (TRL's ``SFTConfig`` / ``GRPOConfig``); a value TRL refuses is one line.

    >>> from trl import GRPOConfig
    >>> trainer_args(GRPOConfig, {"output_dir": "x", "no_such_field": 1}, "grpo")
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: invalid grpo settings: GRPOConfig.__init__() got an unexpected keyword argument 'no_such_field'; fix the grpo section of the config
    """
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"invalid {where} settings: {one_line(e)}; fix the {where} section of the config") from None


__all__ = ["ModelSection", "DataSection", "LoraSection", "LANGUAGE_LINEAR", "GRPO_LORA", "SFT_LORA", "DTYPES",
           "check_stage", "data_sources", "load_samples", "lora_config", "report_backends", "check_report_to",
           "trainer_args", "REPORT_TO_HELP", "ReportTo"]
