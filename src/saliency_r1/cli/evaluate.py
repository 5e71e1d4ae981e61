"""`saliency-r1 eval {faithfulness,pointing} --model DIR --data PATH --out DIR [...]` and
`saliency-r1 eval precondition --model DIR --out DIR [--n 100] [--seed 30000] [--world demo|sft]`.


Both subcommands are resumable: per-example records are appended to ``OUT/records.jsonl`` as they
finish, a restart skips the ids already there, and the tables (``OUT/results.json``,
``OUT/results.md``) are always rebuilt from the records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .._io import atomic_write_text
from ._common import locked_out


def _common(p: argparse.ArgumentParser, default_methods: str) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory (or LoRA adapter directory)")
    p.add_argument("--data", required=True, help="data file or export folder (read with saliency_r1.data.load)")
    p.add_argument("--format", default="shapes", help="data format of --data (default: shapes)")
    p.add_argument("--out", required=True, help="output folder (records.jsonl, results.json, results.md)")
    p.add_argument("--methods", default=default_methods,
                   help=f"comma-separated saliency methods, or 'all' (default: {default_methods})")
    p.add_argument("--n", type=int, default=None, help="evaluate the first N samples (default: all)")
    p.add_argument("--response", choices=("generated", "reference"), default="generated",
                   help="explain the model's greedy response (default) or the sample's reference response")
    p.add_argument("--target", choices=("answer", "response"), default="answer",
                   help="tokens the baselines explain: the answer (falls back to the whole response) or all")
    p.add_argument("--max-new-tokens", type=int, default=128, help="generation length limit")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate saliency maps: faithfulness (deletion/insertion) or pointing")
    kinds = p.add_subparsers(dest="kind", required=True)
    f = kinds.add_parser("faithfulness", help="deletion/insertion of each method's map (paper Table 1)")
    _common(f, "ours,attention,rollout,cam,gradcam,ixg,ig,tam,attnlrp,random")  # = DEFAULT_METHODS
    f.add_argument("--levels", default="5,15,30", help="reported perturbation levels, %% of pixels")
    f.add_argument("--steps", type=int, default=10, help="sweep 0..100%% in this many steps for the AUC (0: none)")
    f.add_argument("--blank", choices=("black", "mean", "blur"), default="black", help="blank reference image")
    f.add_argument("--blur-radius", type=float, default=None, help="blur blank radius in pixels")
    f.add_argument("--batch-size", type=int, default=8, help="perturbed images per forward")
    f.set_defaults(func=run)
    g = kinds.add_parser("pointing", help="energy-PG / PG against the evidence boxes (paper Table 3)")
    _common(g, "ours")
    g.set_defaults(func=run)
    c = kinds.add_parser("precondition", help="can the saliency reward see the reasoning on this model? "
                         "(object-specific attention, entropy, focus gap by variant, decomposition; issue 13)")
    c.add_argument("--model", required=True, help="checkpoint directory (or a demo/training run folder)")
    c.add_argument("--out", required=True, help="output folder (precondition.json, precondition.md)")
    c.add_argument("--n", type=int, default=100, help="ShapesWorld scenes (focused/distracted pairs)")
    c.add_argument("--seed", type=int, default=30_000, help="seed of the scenes (the demo uses 30000 + its seed)")
    c.add_argument("--split", default="validation", choices=("validation", "train"),
                   help="ShapesWorld split the scenes come from (never the held-out test split)")
    c.add_argument("--world", default="demo", choices=("demo", "sft"),
                   help="demo: the demo's ShapesWorld (sft_shapes.yaml + the quick preset's overrides); "
                        "sft: configs/sft_shapes.yaml's")
    c.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")
    c.set_defaults(func=run_precondition)


@locked_out("eval")
def run_precondition(args: argparse.Namespace) -> int:
    """The precondition diagnostic (:mod:`saliency_r1.evaluation.precondition`) on ShapesWorld scenes."""
    import time

    from .. import load_model
    from ..data import ShapesWorldConfig
    from ..evaluation.precondition import precondition_markdown, shapes_precondition, to_dict
    from ..experiments.pipeline import PRESETS, world

    if args.n < 2:
        raise InputError(f"--n must be >= 2 (a paired standard error needs two pairs), got {args.n}")
    t0 = time.perf_counter()
    cfg = ShapesWorldConfig(**world(PRESETS["quick"] if args.world == "demo" else None))
    res = shapes_precondition(load_model(args.model, device=args.device), cfg, args.n, seed=args.seed,
                              split=args.split)
    res.meta.update(world=args.world, seconds=round(time.perf_counter() - t0, 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "precondition.json", json.dumps(to_dict(res), indent=1))
    md = (f"Precondition diagnostic ({args.model}; {res.n_pairs} pairs, ShapesWorld `{args.world}` world, "
          f"split {args.split}, seed {args.seed})\n\n{precondition_markdown(res)}\n")
    atomic_write_text(out / "precondition.md", md)
    print(md + f"\n{res.meta['seconds']} s")
    return 0


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--levels {text!r} is not a comma-separated list of numbers (e.g. 5,15,30)") from None
    if not levels:
        raise InputError("--levels is empty; pass e.g. 5,15,30")
    return levels


def _samples(args) -> list[dict]:
    from ..data import load

    if not Path(args.data).exists():
        raise InputError(f"--data {args.data} does not exist; pass a data file or a ShapesWorld export folder")
    loaded = load(args.data, format=args.format)
    if not loaded.samples:
        raise InputError(f"no usable samples in {args.data} ({loaded.summary()})")
    ids = [str(s["id"]) for s in loaded.samples]
    if len(set(ids)) != len(ids):
        raise InputError(f"{args.data} has duplicate sample ids; resuming needs unique ids")
    return loaded.samples


@locked_out("eval")
def run(args: argparse.Namespace) -> int:
    """Evaluate, append the records, and write ``results.json`` / ``results.md`` from all records."""
    from .. import load_model
    from ..evaluation import tables
    from ..evaluation.faithfulness import FaithfulnessConfig
    from ..evaluation.methods import parse_methods
    from ..evaluation.records import check_settings, write_json
    from ..evaluation.runner import faithfulness_record, pointing_record, run_loop

    methods = parse_methods(args.methods)
    if args.n is not None and args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    out = Path(args.out)
    settings = {"kind": args.kind, "model": str(args.model), "data": str(args.data), "format": args.format,
                "methods": methods, "response": args.response, "target": args.target,
                "max_new_tokens": args.max_new_tokens, "n": args.n, "dtype": args.dtype}
    gen = {"max_new_tokens": args.max_new_tokens, "do_sample": False}
    if args.kind == "faithfulness":
        config = FaithfulnessConfig(levels=_levels(args.levels), steps=args.steps, blank=args.blank,
                                    blur_radius=args.blur_radius, batch_size=args.batch_size)
        settings.update(levels=list(config.levels), steps=config.steps, blank=config.blank,
                        blur_radius=config.blur_radius)
    samples = _samples(args)
    check_settings(out, settings)
    smodel = load_model(args.model, device=args.device, dtype=args.dtype)
    if args.kind == "faithfulness":
        make = (lambda s: faithfulness_record(smodel, s, methods, config, args.response, args.target, **gen))  # noqa: E731
    else:
        make = (lambda s: pointing_record(smodel, s, methods, args.response, args.target, **gen))  # noqa: E731
    records = run_loop(samples, out, args.n, make, progress=not args.no_progress, desc=args.kind)
    if args.kind == "faithfulness":
        table = tables.faithfulness_table(records, methods, [f"{lv:g}" for lv in config.levels])
        md = tables.faithfulness_markdown(table, f"Faithfulness ({args.model})")
    else:
        table = tables.pointing_table(records, methods)
        md = tables.pointing_markdown(table, f"Pointing ({args.model})")
    write_json(out / "results.json", {"settings": settings, **table})
    atomic_write_text(out / "results.md", md + f"\nSettings: `{json.dumps(settings)}`\n")
    print(md)
    return 0
