"""The demo's stages: ShapesWorld -> SFT cold start -> evaluate -> GRPO with and without the saliency
reward from the same start -> evaluate both on a held-out split -> counterfactual test -> report.

Each stage writes its output, then a ``.done`` marker; a re-run skips finished stages (resume).
The held-out split has its own seed stream and is never used for training or selection.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..config_io import from_dict, packaged_config, read_yaml
from ..errors import InputError


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo run."""

    sft_steps: int = field(default=1800, metadata={"help": "SFT optimizer steps (configs/sft_shapes.yaml: 1800)"})
    grpo_steps: int = field(default=128, metadata={"help": "GRPO steps per arm (one prompt x 8 rollouts each)"})
    grpo_n: int = field(default=128, metadata={"help": "ShapesWorld prompts for GRPO"})
    n_test: int = field(default=100, metadata={"help": "held-out samples evaluated"})
    n_counterfactual: int = field(default=24, metadata={"help": "held-out samples in the noise test"})
    n_focus: int = field(default=40, metadata={"help": "held-out scenes in the focused-vs-distracted reward test"})
    n_precondition: int = field(default=100, metadata={
        "help": "validation scenes (focused/distracted pairs) in the precondition diagnostic on the SFT start "
                "(saliency_r1.evaluation.precondition; 100 pairs: about 25 s of CPU)"})
    world: dict = field(default_factory=lambda: {"distracted_frac": 0.6, "distracted_where": "start"}, metadata={
        "help": "ShapesWorld overrides over configs/sft_shapes.yaml's data.shapes for every stage: the cold start "
                "reasons about irrelevant objects first in most traces, so its greedy answers do too and the "
                "question of the paper's Fig. 1 (does GRPO make the reasoning focused?) is real"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "seeds (full: several)"})
    variants: tuple[str, ...] = field(default=(), metadata={"help": "ablation variants (configs/variants)"})


PRESETS = {
    "quick": Preset(),
    "full": Preset(sft_steps=1800, grpo_steps=300, grpo_n=320, n_test=300, n_counterfactual=60, n_focus=100,
                   seeds=(0, 1, 2), variants=("pure", "attn", "think", "answer", "zero", "authors")),
}

ARMS = ("sft", "vision-r1", "saliency-r1")


def _done(path: Path) -> bool:
    return (path / ".done").is_file()


def _mark(path: Path, record: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / ".done", json.dumps(record or {}, indent=1, default=str))


def config_path(name: str) -> Path:
    """A config shipped with the package (:func:`saliency_r1.config_io.packaged_config`)."""
    return packaged_config(name)


def world(preset: Preset | None = None) -> dict[str, Any]:
    """The ShapesWorld distribution of the demo: ``data.shapes`` of ``configs/sft_shapes.yaml`` with the preset's
    ``world`` overrides, shared by the cold start, every GRPO arm and the held-out split (only seeds differ)."""
    from ..data import ShapesWorldConfig
    from ..training.sft import load_config

    base = asdict(load_config(config_path("sft_shapes.yaml")).data.shapes) | dict(preset.world if preset else {})
    return json.loads(json.dumps(asdict(ShapesWorldConfig(**base))))  # checked, and lists rather than tuples


def held_out(preset: Preset, seed: int, n: int) -> list[dict]:
    """The held-out test split: the demo's ShapesWorld distribution, its own seed stream."""
    from ..data import ShapesWorldConfig, generate

    return generate(ShapesWorldConfig(**world(preset)), n, seed=10_000 + seed, split="test")


def run_sft(out: Path, preset: Preset, seed: int) -> Path:
    """The cold start, from ``configs/sft_shapes.yaml`` with the demo's steps and seed."""
    from ..training.sft import load_config, train_sft

    stage = out / "sft"
    if not _done(stage):
        from ..data import ShapesWorldConfig

        cfg = load_config(config_path("sft_shapes.yaml"), output_dir=str(stage), max_steps=preset.sft_steps)
        cfg.data.shapes = ShapesWorldConfig(**world(preset))
        cfg.train.seed = seed
        cfg.data.seed = seed
        t = time.perf_counter()
        final = train_sft(cfg)
        _mark(stage, {"final": str(final), "seconds": time.perf_counter() - t})
    return Path(json.loads((stage / ".done").read_text())["final"])


def run_grpo(out: Path, arm: str, start: Path, preset: Preset, seed: int) -> Path:
    """One GRPO arm from ``start``: ``saliency-r1`` (grpo_shapes.yaml) or a variant YAML."""
    from ..training.grpo import train_grpo
    from ..training.grpo_config import load_run_config

    stage = out / arm
    if not _done(stage):
        yaml = config_path("grpo_shapes.yaml" if arm == "saliency-r1" else f"variants/{arm}.yaml")
        overrides = {"output_dir": str(stage), "max_steps": preset.grpo_steps, "data.n": preset.grpo_n,
                     "data.seed": 1_000 + seed, "data.shapes": world(preset), "grpo.seed": seed,
                     "grpo.save_steps": preset.grpo_steps}
        # zero (paper Table 9): no cold start, GRPO from the model the demo's SFT started from (<sft>/base)
        overrides["model.path"] = str(start.parent / "base" if arm == "zero" else start)
        if arm == "vision-r1":
            overrides["rewards.log_zero_weight"] = True  # log alignment for the curves; it is not rewarded
        cfg = load_run_config(yaml, **overrides)
        t = time.perf_counter()
        merged = train_grpo(cfg) / "merged"
        if not (merged / "config.json").is_file():
            raise InputError(f"GRPO {arm} stopped before exporting {merged}; run the demo again to resume")
        _mark(stage, {"merged": str(merged), "seconds": time.perf_counter() - t})
    return Path(json.loads((stage / ".done").read_text())["merged"])


def evaluate(out: Path, arm: str, model_dir: Path, samples: list[dict]) -> dict[str, Any]:
    """Accuracy per family, format rate, energy-PG / PG, response length on the held-out split."""
    from ..evaluation.quick import accuracy_and_pointing

    path = out / "eval" / f"{arm}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        res = accuracy_and_pointing(model_dir, samples, max_new_tokens=64)
        atomic_write_text(path, json.dumps(res, indent=1, default=str))
    return json.loads(path.read_text())


def counterfactual(out: Path, arm: str, model_dir: Path, samples: list[dict]) -> dict[str, float]:
    """Accuracy with Gaussian noise on the evidence (foreground) vs elsewhere (background)."""
    from .. import load_model
    from ..attribution.inputs import prompt_inputs
    from ..evaluation.counterfactual import counterfactual_accuracy
    from ..grammar import answers_match, extract_answer

    path = out / "counterfactual" / f"{arm}.json"
    if not path.is_file():
        sm = load_model(model_dir)

        def answer(image, question):
            ids = sm.generate(prompt_inputs(sm.processor, [image], question), max_new_tokens=64, do_sample=False)
            return extract_answer(sm.processor.tokenizer.decode(ids, skip_special_tokens=True))

        res = counterfactual_accuracy(answer, samples, answers_match)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(res, indent=1))
    return json.loads(path.read_text())


def focus(out: Path, arm: str, model_dir: Path, preset: Preset, seed: int, variant: str = "full"
          ) -> dict[str, float]:
    """Saliency reward (``variant``: full, think, answer, attn) of focused vs distracted reasoning on the same
    held-out scenes (:func:`saliency_r1.evaluation.focus_gap`): can the reward tell them apart on this model?"""
    from .. import load_model
    from ..data import ShapesWorldConfig
    from ..evaluation.focus import focus_gap, paired_traces

    path = out / "focus" / (f"{arm}.json" if variant == "full" else f"{arm}-{variant}.json")
    if not path.is_file():
        pairs = paired_traces(ShapesWorldConfig(**world(preset)), preset.n_focus, seed=20_000 + seed)
        res = focus_gap(load_model(model_dir), pairs, variant=variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(res, indent=1))
    return json.loads(path.read_text())


def precondition(out: Path, model_dir: Path, preset: Preset, seed: int) -> dict[str, Any]:
    """The precondition diagnostic (:func:`saliency_r1.evaluation.precondition.shapes_precondition`) on
    ``preset.n_precondition`` scenes of the demo's world, validation split (seed ``30_000 + seed``): can the
    reward see the reasoning on this model? Also gives the focus gap by reward variant."""
    from .. import load_model
    from ..data import ShapesWorldConfig
    from ..evaluation.precondition import shapes_precondition, to_dict

    path = out / "precondition" / "sft.json"
    if not path.is_file():
        t = time.perf_counter()
        res = shapes_precondition(load_model(model_dir), ShapesWorldConfig(**world(preset)), preset.n_precondition,
                                  seed=30_000 + seed, split="validation")
        res.meta["seconds"] = round(time.perf_counter() - t, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(to_dict(res), indent=1))
    return json.loads(path.read_text())


def load_preset(name: str, overrides: dict | None = None) -> Preset:
    """A named preset, optionally with field overrides (YAML-style dict)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    if not overrides:
        return PRESETS[name]
    base = {k: getattr(PRESETS[name], k) for k in Preset.__dataclass_fields__}
    return from_dict(Preset, base | overrides)


__all__ = ["Preset", "PRESETS", "ARMS", "world", "held_out", "run_sft", "run_grpo", "evaluate", "counterfactual",
           "focus", "precondition", "load_preset", "config_path", "read_yaml"]
