"""GRPO with the saliency reward (method.md §4) on TRL's ``GRPOTrainer``.

``r = w_acc · R_accuracy + w_fmt · R_format + w_sal · R_saliency``; advantages are group-normalised,
the policy ratio is clipped, the KL to the reference is weighted by ``beta`` (paper 0.001). The only
subclass, :class:`SaliencyGRPOTrainer`, binds the reward callables that need the policy
(:class:`~saliency_r1.rewards.SaliencyReward`) to the trainer; nothing of TRL is copied or patched.

Outputs under ``output_dir``: ``checkpoint-N/`` (resumable: the last *complete* one is used, see
:mod:`._checkpoints`), then at the end ``adapter/`` (the LoRA adapter + processor), ``merged/`` (base +
adapter merged, processor and chat template: ``saliency_r1.load_model(out / "merged")`` works),
``trainer_state.json`` (the log history) and ``run_config.yaml``. A first Ctrl-C / SIGTERM finishes
the current step, saves a checkpoint and stops (no export); a second Ctrl-C stops at once.

Logged every ``logging_steps`` (TRL's names): ``rewards/{accuracy,format,saliency}/mean`` (the mean
of format is the format rate), ``reward``, ``completions/mean_length``, ``kl``, and ours
``saliency/alignment``, ``saliency/pg``, ``saliency/none_rows``, ``saliency/format_broken_rows``,
``saliency/trace_seconds``, ``judge/failures``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from .._io import atomic_write, atomic_write_text
from ..errors import InputError
from ..rewards import AccuracyReward, LLMJudge, SaliencyReward, accuracy_reward, format_reward
from ..rewards.judge import check_judges
from ._checkpoints import (archive_checkpoints, last_complete_checkpoint, load_checkpoint_weights, run_guard,
                           set_aside_incomplete)
from ._distributed import check_saved_weights, process_state
from .grpo_config import GRPORunConfig, load_run_config, to_plain
from .grpo_data import build_dataset
from .run_config import check_report_to, lora_config, trainer_args

logger = logging.getLogger(__name__)


class SaliencyGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that calls ``bind(self)`` on every reward callable that has one."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for func in self.reward_funcs:
            if callable(getattr(func, "bind", None)):
                func.bind(self)


class GracefulStop(TrainerCallback):
    """First SIGINT/SIGTERM: finish the step, save a checkpoint, stop. Second SIGINT: stop now."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stop requested (signal %d): finishing this step, saving a checkpoint", signum)

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            control.should_save = True
            control.should_training_stop = True
        return control

    def _agreed(self, args) -> bool:
        """Whether any process was asked to stop (all processes must stop at the same step)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.requested = bool(flag.item())
        return self.requested


def build_rewards(cfg: Any, output_dir: Path) -> tuple[list, list[float]]:
    """Reward callables and their weights from a :class:`RewardSection`.

    Format and exact-match accuracy are cheap and always computed (weight 0: logged only); the
    judge and the saliency reward are dropped at weight 0 unless ``log_zero_weight``.
    """
    funcs: list = [format_reward]
    weights = [float(cfg.format)]
    keep = cfg.log_zero_weight
    if cfg.judge is not None and (cfg.accuracy > 0 or keep):
        judge_cfg = cfg.judge
        if judge_cfg.cache_dir is None:
            judge_cfg = dataclasses.replace(judge_cfg, cache_dir=str(output_dir / "judge_cache"))
        funcs.append(AccuracyReward(LLMJudge(judge_cfg), shortcut_exact=cfg.judge_shortcut_exact))
    else:
        funcs.append(accuracy_reward)
    weights.append(float(cfg.accuracy))
    if cfg.saliency > 0 or keep:
        funcs.append(SaliencyReward(cfg.variant, region=cfg.region, batch_size=cfg.saliency_batch_size,
                                    think_query_offset=cfg.think_query_offset, relu=cfg.relu,
                                    authors_box_bug=cfg.authors_box_bug))
        weights.append(float(cfg.saliency))
    return funcs, weights


def prepare_model_dir(config: GRPORunConfig) -> Path:
    """The policy's checkpoint directory: built (tiny) or merged (adapter) into place when needed."""
    from accelerate import PartialState

    from ..models.loading import HUB_ID, resolve_model_path

    m = config.model
    path = Path(m.path)
    if not path.exists() and not m.build_tiny and HUB_ID.match(str(m.path)):
        path = resolve_model_path(m.path)  # a hub id: its snapshot in the local HF cache (offline)
    path = path.resolve()
    found = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
    if not found and not m.build_tiny:  # every process raises alike, before any barrier
        raise InputError(f"model.path {path} holds no checkpoint; run the SFT cold start first "
                         "(saliency-r1 train sft --config configs/sft_shapes.yaml) or set model.build_tiny: true")
    state = PartialState()
    with state.main_process_first():
        if not found and state.is_main_process:
            from ..models.tiny import tiny_checkpoint

            tiny_checkpoint(path, m.tiny, seed=m.tiny_seed)
        if (path / "adapter_config.json").is_file():  # a LoRA adapter: merge onto its base once
            merged = Path(config.output_dir).resolve() / "init_model"
            if state.is_main_process and not (merged / "config.json").is_file():
                from ..models.loading import load_hf
                from ..models.tiny import save_checkpoint

                save_checkpoint(*load_hf(path, device="cpu", dtype=m.dtype), merged)
            path = merged
    return path


def grpo_args(config: GRPORunConfig, **extra: Any) -> GRPOConfig:
    """The ``GRPOConfig`` of a run (explicit fields, then ``grpo.extra``, then ``extra``); ``report_to``
    backends must be installed (one line otherwise)."""
    g = config.grpo
    kwargs = to_plain(g)
    kwargs.pop("extra")
    kwargs.update(output_dir=config.output_dir, save_strategy="steps", remove_unused_columns=False,
                  report_to=check_report_to(g.report_to, "grpo.report_to"))
    kwargs.update(g.extra)
    kwargs.update(extra)
    return trainer_args(GRPOConfig, kwargs, "grpo")


def build_trainer(config: GRPORunConfig, callbacks: list | None = None,
                  rollout_func: Any = None) -> SaliencyGRPOTrainer:
    """Model path, processor, dataset, rewards and args -> a ready :class:`SaliencyGRPOTrainer`.

    ``rollout_func``: TRL's experimental custom rollouts (e.g. :class:`.grpo_rollouts.FormatForcingRollout`).
    """
    from ..models.loading import resolve_dtype
    from ..models.processor import load_processor

    out = Path(config.output_dir)
    funcs, weights = build_rewards(config.rewards, out)
    init = {"dtype": str(resolve_dtype(config.model.dtype)).replace("torch.", "")}
    if config.model.attn_implementation:
        init["attn_implementation"] = config.model.attn_implementation
    args = grpo_args(config, reward_weights=weights, model_init_kwargs=init)
    process_state(args)  # the process group first (on CPU a bare PartialState() is single-process)
    model_path = prepare_model_dir(config)
    processor = load_processor(model_path, config.model.image_min_pixels, config.model.image_max_pixels)
    return SaliencyGRPOTrainer(model=str(model_path), reward_funcs=funcs, args=args,
                               train_dataset=build_dataset(config.data, processor.tokenizer),
                               processing_class=processor,
                               peft_config=lora_config(config.lora), callbacks=list(callbacks or []),
                               rollout_func=rollout_func)


def _resume_point(config: GRPORunConfig) -> Path | None:
    """Tidy the output dir (main process) and return the checkpoint to resume from, if any."""
    from accelerate import PartialState

    state = PartialState()
    out = Path(config.output_dir)
    if state.is_main_process and out.is_dir():
        set_aside_incomplete(out)
        if not config.resume:
            archive_checkpoints(out)
    state.wait_for_everyone()
    ckpt = last_complete_checkpoint(out) if config.resume else None
    if ckpt is not None:
        logger.info("resuming from %s", ckpt)
    return ckpt


def train_grpo(config: GRPORunConfig, callbacks: list | None = None, rollout_func: Any = None) -> Path:
    """Run (or resume) GRPO; export ``adapter/`` and ``merged/`` when it completes. Returns ``output_dir``.
    One run per ``output_dir`` (a lock); a failed checkpoint write is one line naming the file
    (:func:`._checkpoints.run_guard`)."""
    with run_guard(config.output_dir, "GRPO run"):
        return _train_grpo(config, callbacks, rollout_func)


def _train_grpo(config: GRPORunConfig, callbacks: list | None, rollout_func: Any) -> Path:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stopper = GracefulStop()
    trainer = build_trainer(config, callbacks=[stopper, *(callbacks or [])], rollout_func=rollout_func)
    if trainer.accelerator.is_main_process:  # every file once, by the main process
        atomic_write_text(out / "run_config.yaml", yaml.safe_dump(to_plain(config), sort_keys=False))
    ckpt = _resume_point(config)
    if ckpt is not None and not (ckpt / "adapter_config.json").is_file() and not (
            trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):  # full fine-tuning: see load_checkpoint_weights
        load_checkpoint_weights(trainer.model, ckpt)
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    finally:
        stopper.uninstall()
    if trainer.is_world_process_zero():
        atomic_write(out / "trainer_state.json", lambda tmp: trainer.state.save_to_json(str(tmp)))
    if stopper.requested:
        logger.warning("stopped at step %d; run the same command again to resume", trainer.state.global_step)
        return out
    export(trainer, config, prepare_model_dir(config))
    check_judges(trainer.reward_funcs)  # judge counts logged; every call failed: one line, exit 2 (after export)
    return out


def export(trainer: GRPOTrainer, config: GRPORunConfig, base: Path) -> dict[str, Path]:
    """Write ``adapter/`` (LoRA; or the full model) and ``merged/`` (loadable by ``load_model``)."""
    from ..models.loading import load_hf, model_class, resolve_dtype
    from ..models.tiny import save_checkpoint

    out = Path(config.output_dir)
    adapter = out / ("adapter" if config.lora.enabled else "full")
    trainer.save_model(str(adapter))  # collective under ZeRO-3 / FSDP: every process calls it
    trainer.accelerator.wait_for_everyone()
    merged = out / "merged"
    if trainer.accelerator.is_main_process:
        check_saved_weights(adapter)  # ZeRO-3 without 16-bit gathering saves none: one line
        processor = trainer.processing_class
        if config.lora.enabled:
            from peft import PeftModel

            model = model_class(base).from_pretrained(str(base), dtype=resolve_dtype(config.model.dtype) or "auto")
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        else:
            model, _ = load_hf(adapter, device="cpu", dtype=config.model.dtype)
        save_checkpoint(model, processor, merged)
        processor.image_processor.save_pretrained(str(adapter))  # preprocessor_config.json, as in merged/
        atomic_write_text(adapter / "chat_template.jinja", processor.chat_template)
    trainer.accelerator.wait_for_everyone()
    return {"adapter": adapter, "merged": merged}


def run_from_config(config_path: str | Path, **overrides: Any) -> Path:
    """``saliency-r1 train grpo``: read the YAML, apply the overrides (dotted names, or bare names of
    top-level and ``grpo`` fields), check the logging backends, train."""
    config = load_run_config(config_path, **overrides)
    check_report_to(config.grpo.report_to, "grpo.report_to")
    return train_grpo(config)


__all__ = ["SaliencyGRPOTrainer", "GracefulStop", "build_rewards", "build_trainer", "grpo_args", "lora_config",
           "prepare_model_dir", "train_grpo", "export", "run_from_config"]
