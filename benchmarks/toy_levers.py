"""One row of BENCHMARKS.md's "A toy where the precondition holds" table (issue 13).

Trains the demo's SFT cold start with ShapesWorld / tiny-model overrides, then measures on the VALIDATION
split only (never the held-out test split): the precondition diagnostic on 100 focused/distracted pairs
(seed 30000, :mod:`saliency_r1.evaluation.precondition`) and greedy attribute accuracy on 150 validation
samples (seed 31000). ``--layer-sets`` adds the holistic map restricted to subsets of decoder layers (an
analysis of the diagnostic's (e) rows, not a reward option). Prints one ``ROW`` line, writes ``row.json``.

    python benchmarks/toy_levers.py --name grounded_L6 --steps 1800            # the shipped toy
    python benchmarks/toy_levers.py --name plain --steps 1200 --tiny '{"num_layers": 4}' \\
        --world '{"trace_style": "plain", "cell_layout": 0, "small_size": [36, 46], "large_size": [36, 46], "answer_share": 0}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--world", default="{}", help="JSON: ShapesWorldConfig overrides over the demo's world")
    p.add_argument("--tiny", default="{}", help="JSON: TinyConfig overrides over configs/sft_shapes.yaml's")
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/toy_levers")
    p.add_argument("--layer-sets", action="store_true")
    return p.parse_args()


def train(args, world: dict, out: Path) -> tuple[Path, float]:
    from saliency_r1.data import ShapesWorldConfig
    from saliency_r1.experiments.pipeline import config_path
    from saliency_r1.training.sft import load_config, train_sft

    cfg = load_config(config_path("sft_shapes.yaml"), output_dir=str(out / "sft"), max_steps=args.steps)
    cfg.data.shapes = ShapesWorldConfig(**world)
    cfg.data.n = max(cfg.data.n, args.steps * cfg.train.per_device_train_batch_size)
    cfg.train.torch_threads = args.threads
    cfg.model.tiny = dataclasses.replace(cfg.model.tiny, **json.loads(args.tiny))
    t = time.perf_counter()
    final = out / "sft" / "final"
    if not (final / "config.json").is_file():
        final = train_sft(cfg)
    return final, time.perf_counter() - t


def layer_sets(model, cfg, n: int = 100) -> dict:
    """Focus gap of the holistic map summed over subsets of layers (pre-ReLU per layer, then ReLU), on the
    diagnostic's own pairs and probes."""
    from saliency_r1.evaluation.focus import paired_stats
    from saliency_r1.evaluation.precondition import probe, shapes_pairs
    from saliency_r1.scoring import score_grid

    nl = model.hf.config.text_config.num_hidden_layers
    sets = {"all": list(range(nl)), "upper half": list(range(nl // 2, nl)), "last": [nl - 1]}
    scores = {k: ([], []) for k in sets}
    for pair in shapes_pairs(model.processor.tokenizer, cfg, n, seed=30000, split="validation"):
        for side, t in enumerate(pair):
            pr = probe(model, t)
            for k, layers in sets.items():
                m = np.maximum(pr.layers[layers].sum(0), 0.0).reshape(pr.grid)
                scores[k][side].append(score_grid(m, pr.image_size, t.evidence))
    return {k: paired_stats(*v) for k, v in scores.items()}


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    from saliency_r1 import load_model
    from saliency_r1.data import ShapesWorldConfig, generate
    from saliency_r1.evaluation.precondition import precondition_verdict, shapes_precondition, to_dict
    from saliency_r1.evaluation.quick import accuracy_and_pointing
    from saliency_r1.experiments.pipeline import PRESETS, world

    out = Path(args.out) / args.name
    w = world(PRESETS["quick"]) | json.loads(args.world)
    final, t_sft = train(args, w, out)
    m, cfg = load_model(final), ShapesWorldConfig(**w)
    r = shapes_precondition(m, cfg, 100, seed=30000, split="validation", variants=("full", "think", "attn"))
    acc = accuracy_and_pointing(m, generate(cfg, 150, seed=31000, split="validation"), max_new_tokens=96)
    has = ~np.isnan(r.best_other)
    row = {"name": args.name, "steps": args.steps, "world": json.loads(args.world), "tiny": json.loads(args.tiny),
           "sft_s": round(t_sft), "ratio": float(np.mean(r.own / r.chance)),
           "beats": float(np.mean(r.own[has] > r.best_other[has])), "entropy": float(r.entropy.mean()),
           "focus": r.focus, "attr_acc": acc["per_family"].get("attribute", {}).get("accuracy"),
           "holds": precondition_verdict(r)["holds"], "layer_mass": r.layer_mass}
    if args.layer_sets:
        row["layer_sets"] = layer_sets(m, cfg)
    (out / "row.json").write_text(json.dumps(row, indent=1))
    (out / "precondition.json").write_text(json.dumps(to_dict(r), indent=1))
    f, th = r.focus["full"], r.focus["think"]
    print(f"ROW {args.name} steps={args.steps} attr_acc={row['attr_acc']} ratio={row['ratio']:.2f} "
          f"beats={row['beats']:.2f} entropy={row['entropy']:.3f} full={100 * f['gap']:+.1f}±{100 * f['gap_se']:.1f} "
          f"wins={f['focused_wins']:.2f} zero={f['all_zero']:.2f} think={100 * th['gap']:+.1f} "
          f"wins={th['focused_wins']:.2f} sft={t_sft:.0f}s", flush=True)


if __name__ == "__main__":
    main()
