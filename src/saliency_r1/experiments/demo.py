"""The whole demo run: ShapesWorld -> SFT cold start -> GRPO with the saliency reward and, from the same start,
without it (Vision-R1) -> evaluation on a held-out split -> counterfactual test -> ``report.html``,
``summary.json``, ``summary.md``. Re-running with the same output folder resumes: finished stages are skipped.

The command line (``saliency-r1 demo``, :mod:`saliency_r1.cli.demo`) only parses arguments and calls
:func:`run_demo`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..evaluation.precondition import from_dict, precondition_markdown, precondition_verdict
from ..scoring import score_result
from . import pipeline as dp
from . import report as rep


def arms(preset: dp.Preset) -> list[str]:
    """The arms one seed trains and evaluates: the SFT start, both GRPO arms, then the preset's variants.

    >>> arms(dp.PRESETS["quick"])
    ['sft', 'vision-r1', 'saliency-r1']
    """
    return ["sft", "vision-r1", "saliency-r1", *preset.variants]


def run_seed(out: Path, preset: dp.Preset, seed: int, bar) -> dict:
    """All stages of one seed; returns per-arm metrics, counterfactual results and model dirs."""
    test = dp.held_out(preset, seed, preset.n_test)
    bar.set_description(f"seed {seed}: SFT cold start")
    models = {"sft": dp.run_sft(out, preset, seed)}
    bar.update()
    for arm in arms(preset)[1:]:
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
    bar.update()
    bar.set_description(f"seed {seed}: precondition diagnostic")
    diag = dp.precondition(out, models["sft"], preset, seed)  # also the focus gap by reward variant
    bar.update()
    return {"metrics": metrics, "counterfactual": cf, "focus": focus, "focus_variants": diag["focus"],
            "precondition": diag, "models": {k: str(v) for k, v in models.items()}}


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


def link_models(root: Path, seed: int, names: list[str]) -> None:
    """``root/<arm>`` -> ``seed<seed>/<arm>`` (relative symlinks), so that ``saliency-r1 explain --model
    runs/demo/saliency-r1`` loads the last seed's model (the loader follows a run dir to ``merged/`` or
    ``final/``). Where symlinks are not allowed, nothing is linked."""
    for arm in names:
        link = root / arm
        try:
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                link.symlink_to(Path(f"seed{seed}") / arm, target_is_directory=True)
        except OSError:
            return


def precondition_summary(per_seed: dict[int, dict]) -> dict[str, Any]:
    """Per seed, the diagnostic's table and verdict (the data stays in ``seed<N>/precondition/sft.json``)."""
    out = {}
    for seed, d in per_seed.items():
        r = from_dict(d)
        out[str(seed)] = {"table": precondition_markdown(r), "verdict": precondition_verdict(r), "n_pairs": r.n_pairs,
                          "seconds": r.meta.get("seconds")}
    return out


def precondition_section(summary: dict[str, Any]) -> str:
    """The report's opening: can the reward see the reasoning on the SFT start (last seed's diagnostic)?"""
    seed, p = list(summary["precondition"].items())[-1]
    return (f"## Can the reward see the reasoning on this model?\n\nPrecondition diagnostic on the SFT start "
            f"(seed {seed}, {p['n_pairs']} focused/distracted pairs of validation scenes, "
            f"saliency_r1.evaluation.precondition; EVALUATION.md explains each row):\n\n{p['table']}\n\n"
            f"**{p['verdict']['text']}**\n\n")


def summary_markdown(summary: dict[str, Any], preset: dp.Preset) -> str:
    """``summary.md``: the precondition diagnostic, the tables and the verdict of one demo run."""
    seeds = summary["seeds"]
    return (f"# saliency-r1 demo ({summary['preset']}, seeds {seeds}, {preset.n_test} held-out questions)\n\n"
            f"{precondition_section(summary)}## Table 3 analogue\n\n{rep.markdown_table(summary['arms'])}\n\n"
            f"## Counterfactual (accuracy %, Gaussian noise; seed "
            f"{seeds[-1]})\n\n{rep.counterfactual_table(summary['counterfactual'])}\n\n"
            f"## Does the saliency reward prefer focused reasoning?\n\n{rep.focus_table(summary['focus'])}\n\n"
            f"On the SFT start, by reward variant (the diagnostic's validation scenes):\n\n"
            f"{rep.focus_table(summary['focus_variants'])}\n\n"
            f"**Verdict.** {summary['verdict']['text']}\n")


def run_demo(root: Path, preset: dp.Preset, preset_name: str, seeds: tuple[int, ...]) -> tuple[dict, str, Path]:
    """Every stage of every seed, then the summary, the curves, the explanations and the report.

    Returns ``(summary, summary_markdown, report_path)``; ``summary.json`` and ``summary.md`` are written
    next to ``report.html`` in ``root``.
    """
    t0 = time.perf_counter()
    per_seed, cf, focus, by_variant, diag, last = [], {}, [], [], {}, None
    n_stages = 1 + (len(arms(preset)) - 1) + len(arms(preset)) + 3
    with tqdm(total=n_stages * len(seeds), unit="stage", desc="demo") as bar:
        for seed in seeds:
            last = run_seed(root / f"seed{seed}", preset, seed, bar)
            per_seed.append(last["metrics"])
            cf = last["counterfactual"]
            focus.append(last["focus"])
            by_variant.append(last["focus_variants"])
            diag[seed] = last["precondition"]
    table = {arm: rep.aggregate([m[arm] for m in per_seed]) for arm in arms(preset)}
    summary = {"preset": preset_name, "seeds": list(seeds), "n_test": preset.n_test, "arms": table,
               "per_seed": per_seed, "counterfactual": cf, "focus": rep.aggregate_focus(focus),
               "focus_variants": rep.aggregate_focus(by_variant), "precondition": precondition_summary(diag),
               "verdict": rep.verdict(table),
               "timings": {"total_s": round(time.perf_counter() - t0, 1)}}
    pre = list(summary["precondition"].values())[-1]["verdict"]
    if not pre["holds"]:
        summary["verdict"]["text"] += (" The precondition diagnostic (first section) finds that the reward cannot "
                                       "see the reasoning on the SFT start, which explains a null result here.")
    seed_dir = root / f"seed{seeds[-1]}"
    link_models(root, seeds[-1], arms(preset))
    expl = explanations(root, last["models"], dp.held_out(preset, seeds[-1], preset.n_test))
    curves = rep.training_curves({a: seed_dir / a for a in arms(preset)[1:]}, root / "training_curves.png")
    summary["timings"]["total_s"] = round(time.perf_counter() - t0, 1)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=1))
    md = summary_markdown(summary, preset)
    atomic_write_text(root / "summary.md", md)
    return summary, md, rep.write_report(root, summary, curves, expl)


__all__ = ["arms", "run_seed", "explanations", "link_models", "precondition_summary", "precondition_section",
           "summary_markdown", "run_demo"]

