"""`saliency-r1 demo [--out runs/demo] [--preset quick|full] [--seed N] [--set FIELD=VALUE]`: the whole system
on this machine (:mod:`saliency_r1.experiments.demo`). This module only parses the arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments import pipeline as dp
from ._common import locked_out


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="ShapesWorld -> SFT -> GRPO (with/without saliency) -> evaluation -> report")
    p.add_argument("--out", default="runs/demo", help="output directory (re-run to resume)")
    p.add_argument("--preset", default="quick", choices=sorted(dp.PRESETS), help="quick: ~5 min; full: seeds + ablations")
    p.add_argument("--seed", type=int, default=None, help="run one seed (default: the preset's seeds)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field, e.g. --set sft_steps=20 (fields: experiments.pipeline.Preset)")
    p.set_defaults(func=run)


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
    from ..experiments.demo import run_demo

    preset = dp.load_preset(args.preset, _parse_sets(args.set))
    seeds = (args.seed,) if args.seed is not None else preset.seeds
    root = Path(args.out)
    summary, md, report = run_demo(root, preset, args.preset, seeds)
    print(md)
    print(f"report: {report}\nsummary: {root / 'summary.json'}\ntotal: {summary['timings']['total_s']} s")
    return 0
