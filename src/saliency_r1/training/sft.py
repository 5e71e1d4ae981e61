"""SFT cold start (paper §3.3, appendix C.1) on TRL's ``SFTTrainer``: ``<think>…</think>answer`` responses,
loss on the response only, LoRA or full fine-tuning, checkpoints that survive an interruption.

Layout of ``train.output_dir``::

    base/            the tiny model built for the run (only when ``model.path`` is not set)
    checkpoint-N/    the Trainer's checkpoints (every ``save_steps``); a run resumes from the last complete one
                     (``trainer_state.json`` at its step: the Trainer writes it last); a half-written one is
                     renamed ``incomplete-checkpoint-N-<time>``; ``resume=False`` moves old ones to ``previous-<time>/``
    final/           a standard HF checkpoint (merged model for LoRA, ``final/adapter/`` the adapter) with the
                     processor and chat template: ``saliency_r1.load_model(out / "final")`` works
    trainer_state.json, sft_config.json, sft_runs.jsonl (one line per invocation: resumed from, steps, wall time)

Configs (one dataclass per section; YAML keys ``model``, ``data``, ``lora``, ``train``) are in
:mod:`.sft_config` (``model``/``data``/``lora`` shared with GRPO: :mod:`.run_config`); the packaged
``sft_shapes.yaml`` and ``configs/sft_qwen2_5_vl_*.yaml`` are examples; ``saliency-r1 train sft --help`` lists
every field.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write, atomic_write_json
from ..config_io import load_run, to_dict
from ..errors import InputError
from ._checkpoints import (archive_checkpoints, is_complete, last_complete_checkpoint, load_checkpoint_weights,
                           run_guard, set_aside_incomplete)
from ._distributed import full_weights, process_state
from .collate import IndexCollator, VisionSFTCollator, response_text
from .run_config import check_report_to, check_stage, load_samples, lora_config, trainer_args
from .sft_config import DataArgs, LoraArgs, ModelArgs, SFTRunConfig, TrainArgs

logger = logging.getLogger(__name__)

SYSTEM_TEXT = "You are a helpful assistant."


# ---------------------------------------------------------------- checkpoints and resume
checkpoint_complete = is_complete
last_checkpoint = last_complete_checkpoint


def _start_over(output_dir: Path, config: SFTRunConfig) -> None:
    """``resume=False``: move the old checkpoints (and the tiny base model built for them) into
    ``previous-<time>/``; nothing is deleted."""
    target = archive_checkpoints(output_dir)
    base = output_dir / "base"
    if config.model.path is None and base.is_dir():
        if target is None:
            target = output_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
            target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(base), str(target / "base"))


def _check_same_run(output_dir: Path, config: SFTRunConfig, resume: bool) -> None:
    """Resuming with another model/data/LoRA config than the checkpoints were made with is refused."""
    saved = output_dir / "sft_config.json"
    if not resume or not saved.is_file() or last_checkpoint(output_dir) is None:
        return
    try:
        old = json.loads(saved.read_text())
    except ValueError:  # cut short by an older, non-atomic write: nothing to compare with
        logger.warning("%s does not parse; not checking that the resumed run has the same config", saved)
        return
    new = json.loads(json.dumps(to_dict(config), default=list))
    diff = [k for k in ("model", "data", "lora") if old.get(k) != new.get(k)]
    if diff:
        raise InputError(f"{output_dir} holds checkpoints of a run with another {'/'.join(diff)} config; "
                         "pass resume=False (--no-resume) to start over, or another output_dir (--out)")


# ---------------------------------------------------------------- data
def to_dataset(samples: list[dict]):
    """The Trainer's dataset: one row ``{"index": i, "id": ...}`` per sample (see :class:`.collate.IndexCollator`;
    encoding thousands of in-memory images into Arrow would cost more than the tiny model's whole SFT).

    >>> from saliency_r1.data import generate
    >>> to_dataset(generate(None, 2)).column_names
    ['index', 'id']
    """
    import datasets as ds

    for i, s in enumerate(samples):
        response_text(s)  # every sample has a target, or one clear error before training starts
    return ds.Dataset.from_dict({"index": list(range(len(samples))),
                                 "id": [str(s.get("id", i)) for i, s in enumerate(samples)]})


def tokenizer_corpus(samples: list[dict], n: int) -> list[str]:
    """Texts for the tiny model's tokenizer: the first ``n`` samples' question + response, and the system prompt
    (for ShapesWorld this is :func:`saliency_r1.data.corpus`'s text, so its words become single tokens).

    >>> tokenizer_corpus([{"question": "Q?", "answer": "a", "reasoning": None}], 5)[0]
    'Q?\\n<think></think>a'
    """
    texts = [s["question"] + "\n" + response_text(s) for s in samples[:max(n, 1)]]
    return texts + [SYSTEM_TEXT] * max(1, len(texts) // 10)


# ---------------------------------------------------------------- model
def prepare_model(model_args: ModelArgs, output_dir: Path, samples: list[dict]):
    """``(model, processor, base_dir)``: load ``model.path`` (a directory, or a hub id in the local HF cache),
    or build the tiny model into ``output_dir/base`` (reused on resume) with a tokenizer trained on the
    training texts."""
    from ..models.loading import load_hf, resolve_model_path
    from ..models.processor import load_processor
    from ..models.tiny import tiny_checkpoint

    if model_args.path is None:
        base = tiny_checkpoint(output_dir / "base", model_args.tiny,
                               corpus=tokenizer_corpus(samples, model_args.tokenizer_corpus), seed=model_args.tiny_seed)
    else:
        base = resolve_model_path(model_args.path)  # a local directory, or a hub id from the local cache
    model, processor = load_hf(base.resolve(), device="cpu", dtype=model_args.dtype,
                               attn_implementation=model_args.attn_implementation)
    if model_args.image_min_pixels is not None or model_args.image_max_pixels is not None:
        processor = load_processor(base, model_args.image_min_pixels, model_args.image_max_pixels)
    if model_args.freeze_vision:
        for name, p in model.named_parameters():
            if "visual" in name.split("."):
                p.requires_grad_(False)
    return model.train(), processor, base.resolve()


def sft_args(train: TrainArgs, output_dir: Path):
    """The TRL ``SFTConfig`` of a run (explicit fields, then ``train.extra``). On CPU: ``use_cpu``, no bf16, no
    gradient checkpointing unless asked. ``report_to`` backends must be installed (one line otherwise)."""
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    use_cpu = (not cuda) if train.use_cpu is None else train.use_cpu
    bf16 = (not use_cpu and torch.cuda.is_bf16_supported()) if train.bf16 is None else train.bf16
    if not 0 <= train.warmup_ratio < 1:
        raise InputError(f"train.warmup_ratio must be in [0, 1), got {train.warmup_ratio}")
    kwargs = dict(
        output_dir=str(output_dir), learning_rate=train.learning_rate, num_train_epochs=train.num_train_epochs,
        max_steps=train.max_steps, per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, warmup_steps=train.warmup_ratio,
        lr_scheduler_type=train.lr_scheduler_type, weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm, optim=train.optim, logging_steps=train.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=train.save_steps,
        save_total_limit=train.save_total_limit, seed=train.seed, bf16=bf16, fp16=False,
        activation_checkpointing=train.gradient_checkpointing, use_cpu=use_cpu,
        dataloader_num_workers=train.dataloader_num_workers, dataloader_pin_memory=not use_cpu,
        report_to=check_report_to(train.report_to, "train.report_to"), remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None, packing=False, disable_tqdm=train.disable_tqdm, shuffle_dataset=False)
    kwargs.update(train.extra)
    return trainer_args(SFTConfig, kwargs, "train")


# ---------------------------------------------------------------- final checkpoint
def save_final(model, processor, out: Path, run_config: SFTRunConfig | None = None) -> Path:
    """Write ``out`` as a standard HF checkpoint: the (merged, for LoRA) model, the processor and chat template,
    the LoRA adapter in ``out/adapter``; built in a sibling directory then renamed (never half-written)."""
    from peft import PeftModel

    from ..models.tiny import save_checkpoint

    partial = out.with_name(f".{out.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    adapter_tmp = out.with_name(f".{out.name}.adapter")
    if isinstance(model, PeftModel):
        if adapter_tmp.exists():
            shutil.rmtree(adapter_tmp)
        model.save_pretrained(adapter_tmp)
        model = model.merge_and_unload()
    save_checkpoint(model, processor, partial)
    if adapter_tmp.exists():
        adapter_tmp.rename(partial / "adapter")
    if run_config is not None:
        atomic_write_json(partial / "sft_config.json", to_dict(run_config), indent=1, default=list)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


# ---------------------------------------------------------------- entry points
def export_final(model, processor, out: Path, run_config: SFTRunConfig | None = None, state=None) -> Path:
    """Collective :func:`save_final`: every process calls it; under ZeRO-3 the partitioned weights are gathered
    first (:func:`._distributed.full_weights`), the main process writes ``out``, the others wait for it.
    ``state``: the run's ``accelerate.PartialState`` (:func:`._distributed.process_state`; default: the current one)."""
    if state is None:
        from accelerate import PartialState

        state = PartialState()
    with full_weights(model):
        if state.is_main_process:
            save_final(model, processor, out, run_config)
    state.wait_for_everyone()
    return out


def train_sft(config: SFTRunConfig) -> Path:
    """Run the SFT cold start described by ``config``; returns ``output_dir/final``.

    Resumes from the last complete checkpoint when ``train.resume`` (default; a half-written one is set aside as
    ``incomplete-checkpoint-N-<time>``); otherwise earlier checkpoints move to ``previous-<time>/``. Under
    ``accelerate launch`` every file is written once, by the main process (the tiny base model, the set-aside,
    ``sft_config.json``, ``final/``, ``sft_runs.jsonl``); the others wait at a barrier where they need them. One
    run per ``output_dir`` (a lock); a failed checkpoint write is one line naming the file
    (:func:`._checkpoints.run_guard`).
    """
    with run_guard(config.train.output_dir, "SFT run"):
        return _train_sft(config)


def _train_sft(config: SFTRunConfig) -> Path:
    from trl import SFTTrainer

    t0 = time.perf_counter()
    train = config.train
    if train.torch_threads is not None:
        if train.torch_threads < 1:
            raise InputError(f"train.torch_threads must be >= 1 or None, got {train.torch_threads}")
        torch.set_num_threads(train.torch_threads)
    out = Path(train.output_dir)
    args = sft_args(train, out)
    state = process_state(args)  # under accelerate launch: this process's rank in the process group
    _check_same_run(out, config, train.resume)  # every process reads the same files: all raise alike
    state.wait_for_everyone()  # nobody tidies before every process has checked
    if state.is_main_process:
        if train.resume:
            set_aside_incomplete(out)  # a checkpoint cut short while saving is renamed, never picked
        else:
            _start_over(out, config)
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    samples = load_samples(config.data)
    with state.main_process_first():  # the tiny base model is built once; the others then load it
        model, processor, base = prepare_model(config.model, out, samples)
    if state.is_main_process:
        atomic_write_json(out / "sft_config.json", to_dict(config), indent=1, default=list)
    resume_from = last_checkpoint(out) if train.resume else None
    if resume_from is not None and not (resume_from / "adapter_config.json").is_file():  # full fine-tuning
        load_checkpoint_weights(model, resume_from)
    start_step = json.loads((resume_from / "trainer_state.json").read_text())["global_step"] if resume_from else 0
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(samples),
                         processing_class=processor, peft_config=lora_config(config.lora),
                         data_collator=IndexCollator(samples, VisionSFTCollator(processor, train.max_length,
                                                                                train.padding_side)))
    if resume_from is not None:
        logger.warning("resuming from %s (step %d)", resume_from, start_step)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if state.is_main_process:
        atomic_write(out / "trainer_state.json", lambda tmp: trainer.state.save_to_json(str(tmp)))
    final = export_final(trainer.model, processor, out / "final", config, state)
    if state.is_main_process:
        _log_run(out, {"resumed_from": resume_from.name if resume_from else None, "start_step": start_step,
                       "end_step": trainer.state.global_step, "wall_s": round(time.perf_counter() - t0, 2),
                       "torch_threads": torch.get_num_threads(), "processes": state.num_processes,
                       "base": str(base), "final": str(final)})
    return final


def _log_run(out: Path, record: dict[str, Any]) -> None:
    with open(out / "sft_runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def load_config(path: str | Path, **overrides: Any) -> SFTRunConfig:
    """Read an SFT YAML (sections ``model``, ``data``, ``lora``, ``train``; ``extends`` allowed) and apply
    overrides: dotted names (``lora.r``) or bare names of ``train`` fields (``max_steps``, ``output_dir``).
    Every key, type and range is checked (:func:`saliency_r1.config_io.from_dict`).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"; _ = p.write_text("train: {learning_rate: 1e-3}\\n")
    >>> cfg = load_config(p, max_steps=5, **{"lora.r": 8})
    >>> cfg.train.max_steps, cfg.train.learning_rate, cfg.lora.r
    (5, 0.001, 8)
    """
    config = load_run(SFTRunConfig, path, overrides)
    check_stage(config, "sft")
    return config


def run_from_config(config_path: str | Path, **overrides: Any) -> Path:
    """``saliency-r1 train sft --config FILE``: :func:`load_config`, the logging backends checked, then
    :func:`train_sft`."""
    config = load_config(config_path, **overrides)
    check_report_to(config.train.report_to, "train.report_to")
    return train_sft(config)


__all__ = ["SFTRunConfig", "ModelArgs", "DataArgs", "LoraArgs", "TrainArgs", "train_sft", "run_from_config",
           "load_config", "last_checkpoint", "checkpoint_complete", "load_samples", "to_dataset", "prepare_model",
           "lora_config", "sft_args", "save_final", "export_final", "tokenizer_corpus"]
