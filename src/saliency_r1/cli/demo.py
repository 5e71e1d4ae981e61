"""`saliency-r1 demo [--out runs/demo] [--preset quick|full] [--seed N]`: the whole system on this machine.

ShapesWorld -> SFT cold start -> GRPO with the saliency reward and, from the same start, without it
(Vision-R1) -> evaluation on a held-out split -> counterfactual test -> ``report.html``, ``summary.json``,
``summary.md``. Re-running the same command resumes: finished stages are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..attribution.maps import VARIANTS
from ..scoring import score_result
from . import demo_pipeline as dp
from . import demo_report as rep
from ._common import locked_out


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="ShapesWorld -> SFT -> GRPO (with/without saliency) -> evaluation -> report")
    p.add_argument("--out", default="runs/demo", help="output directory (re-run to resume)")
    p.add_argument("--preset", default="quick", choices=sorted(dp.PRESETS), help="quick: ~5 min; full: seeds + ablations")
    p.add_argument("--seed", type=int, default=None, help="run one seed (default: the preset's seeds)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field, e.g. --set sft_steps=20 (fields: demo_pipeline.Preset)")
    p.set_defaults(func=run)


def _arms(preset: dp.Preset) -> list[str]:
    return ["sft", "vision-r1", "saliency-r1", *preset.variants]


def run_seed(out: Path, preset: dp.Preset, seed: int, bar) -> dict:
    """All stages of one seed; returns per-arm metrics, counterfactual results and model dirs."""
    test = dp.held_out(preset, seed, preset.n_test)
    bar.set_description(f"seed {seed}: SFT cold start")
    models = {"sft": dp.run_sft(out, preset, seed)}
    bar.update()
    for arm in _arms(preset)[1:]:
        bar.set_description(f"seed {seed}: GRPO {arm}")
        models[arm] = dp.run_grpo(out, arm, models["sft"], preset, seed)
        bar.update()
    metrics = {}
    for arm, model_dir in models.items():
        bar.set_description(f"seed {seed}: evaluate {arm}")
        metrics[arm] = rep.flat_metrics(dp.evaluate(out, arm, model_dir, test))
        bar.update()
    bar.set_description(f"seed {seed}: counterfactual test")
    cf = {arm: dp.counterfactual(out, arm, models[arm], test[:preset.n_counterfactual]) for arm in dp.ARMS}
    bar.update()
    bar.set_description(f"seed {seed}: focused vs distracted reasoning")
    focus = {arm: dp.focus(out, arm, models[arm], preset, seed) for arm in dp.ARMS}
    by_variant = {v: dp.focus(out, "sft", models["sft"], preset, seed, variant=v) for v in VARIANTS}
    bar.update()
    return {"metrics": metrics, "counterfactual": cf, "focus": focus, "focus_variants": by_variant,
            "models": {k: str(v) for k, v in models.items()}}


def explanations(out: Path, models: dict[str, str], samples: list[dict], n: int = 3) -> Path:
    """Before / after explanations of the same held-out questions, side by side (interactive)."""
    from .. import load_model
    from ..viz import comparison_html

    picked = [s for s in samples if s["source"].startswith("shapes/attribute") and s["boxes"]][:n]
    loaded = {arm: load_model(models[arm]) for arm in dp.ARMS}
    sections = []
    for s in picked:
        for arm in dp.ARMS:
            res = loaded[arm].explain(s["image"], s["question"], max_new_tokens=64, do_sample=False)
            scores = score_result(res, boxes=s["boxes"]) if res.holistic is not None else {}
            label = f"{rep.LABELS[arm]} — {s['question']} (truth: {s['answer']})"
            sections.append((label, res, s["boxes"], dict(scores)))
    return comparison_html(sections, out / "explanations.html", title="Before / after: the same questions")


def link_models(root: Path, seed: int, arms: list[str]) -> None:
    """``root/<arm>`` -> ``seed<seed>/<arm>`` (relative symlinks), so that ``saliency-r1 explain --model
    runs/demo/saliency-r1`` loads the last seed's model (the loader follows a run dir to ``merged/`` or
    ``final/``). Where symlinks are not allowed, nothing is linked."""
    for arm in arms:
        link = root / arm
        try:
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                link.symlink_to(Path(f"seed{seed}") / arm, target_is_directory=True)
        except OSError:
            return


def _parse_sets(items: list[str]) -> dict:
    import yaml

    from ..errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r} is not FIELD=VALUE; e.g. --set sft_steps=20")
        v = yaml.safe_load(value)
        out[key.strip()] = tuple(v) if isinstance(v, list) else v
    return out


@locked_out("demo")  # one run per output folder
def run(args: argparse.Namespace) -> int:
    preset = dp.load_preset(args.preset, _parse_sets(args.set))
    seeds = (args.seed,) if args.seed is not None else preset.seeds
    root = Path(args.out)
    t0 = time.perf_counter()
    per_seed, cf, focus, by_variant, last = [], {}, [], [], None
    n_stages = 1 + (len(_arms(preset)) - 1) + len(_arms(preset)) + 2
    with tqdm(total=n_stages * len(seeds), unit="stage", desc="demo") as bar:
        for seed in seeds:
            last = run_seed(root / f"seed{seed}", preset, seed, bar)
            per_seed.append(last["metrics"])
            cf = last["counterfactual"]
            focus.append(last["focus"])
            by_variant.append(last["focus_variants"])
    arms = {arm: rep.aggregate([m[arm] for m in per_seed]) for arm in _arms(preset)}
    summary = {"preset": args.preset, "seeds": list(seeds), "n_test": preset.n_test, "arms": arms,
               "per_seed": per_seed, "counterfactual": cf, "focus": rep.aggregate_focus(focus),
               "focus_variants": rep.aggregate_focus(by_variant),
               "verdict": rep.verdict(arms),
               "timings": {"total_s": round(time.perf_counter() - t0, 1)}}
    seed_dir = root / f"seed{seeds[-1]}"
    link_models(root, seeds[-1], _arms(preset))
    expl = explanations(root, last["models"], dp.held_out(preset, seeds[-1], preset.n_test))
    curves = rep.training_curves({a: seed_dir / a for a in _arms(preset)[1:]}, root / "training_curves.png")
    summary["timings"]["total_s"] = round(time.perf_counter() - t0, 1)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=1))
    md = (f"# saliency-r1 demo ({args.preset}, seeds {list(seeds)}, {preset.n_test} held-out questions)\n\n"
          f"{rep.markdown_table(arms)}\n\n## Counterfactual (accuracy %, Gaussian noise; seed {seeds[-1]})\n\n"
          f"{rep.counterfactual_table(cf)}\n\n## Does the saliency reward prefer focused reasoning?\n\n"
          f"{rep.focus_table(summary['focus'])}\n\nOn the SFT start, by reward variant:\n\n"
          f"{rep.focus_table(summary['focus_variants'])}\n\n**Verdict.** {summary['verdict']['text']}\n")
    atomic_write_text(root / "summary.md", md)
    report = rep.write_report(root, summary, curves, expl)
    print(md)
    print(f"report: {report}\nsummary: {root / 'summary.json'}\ntotal: {summary['timings']['total_s']} s")
    return 0
