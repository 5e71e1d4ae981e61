"""`saliency-r1 train {sft,grpo} --config FILE.yaml [--out DIR] [--max-steps N] [--no-resume]`."""

from __future__ import annotations

import argparse
import importlib

STAGES = {"sft": "saliency_r1.training.sft", "grpo": "saliency_r1.training.grpo"}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="SFT cold start or GRPO with the saliency reward")
    stages = p.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        s = stages.add_parser(stage, help=f"{stage.upper()} from a YAML config (see configs/)")
        s.add_argument("--config", required=True, help="YAML file of the run's dataclass configs")
        s.add_argument("--out", default=None, help="output directory (overrides the config's)")
        s.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
        s.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
        s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``saliency_r1.training.<stage>.run_from_config``."""
    module = importlib.import_module(STAGES[args.stage])
    overrides = {"output_dir": args.out, "max_steps": args.max_steps, "resume": not args.no_resume}
    module.run_from_config(args.config, **{k: v for k, v in overrides.items() if v is not None})
    return 0
