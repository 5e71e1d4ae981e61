"""`saliency-r1 train {sft,grpo} --config FILE.yaml [--section.field VALUE ...]`.

Like TRL's parser: every field of the run config can be set on the command line with its dotted name
(``--grpo.learning_rate 2e-5 --lora.r 8 --output_dir runs/x``); fields of the stage's own section
(``train`` for SFT, ``grpo`` for GRPO) also by their bare name (``--learning_rate``). Values are read as
YAML scalars (``2e-5``, ``true``, ``null``, ``[q_proj, v_proj]``, ``{k: v}``), then type- and range-checked
like the YAML file. Precedence: the config's defaults < the YAML file (``extends`` chain) < the command
line. The older ``--out``, ``--max-steps`` and ``--no-resume`` still work. ``--help`` lists every field.
"""

from __future__ import annotations

import argparse
import importlib

from ..config_io import section_class, help_text, leaf_fields, parse_override, type_name

STAGES = {
    "sft": ("saliency_r1.training.sft", "saliency_r1.training.sft_config", "SFTRunConfig"),
    "grpo": ("saliency_r1.training.grpo", "saliency_r1.training.grpo_config", "GRPORunConfig"),
}
ALIASES = {"output_dir": ("--out",), "max_steps": ("--max-steps",)}
PREFIX = "override:"


def config_class(stage: str) -> type:
    """The run-config dataclass of a stage.

    >>> config_class("grpo").__name__, config_class("sft").stage_section
    ('GRPORunConfig', 'train')
    """
    _, module, name = STAGES[stage]
    return getattr(importlib.import_module(module), name)


def _epilog(cls: type) -> str:
    stage = cls.stage_section
    return (f"config fields (set any with --<name> VALUE, a YAML scalar; `{stage}.` fields also by their bare "
            f"name; a whole section as a mapping, e.g. --lora '{{r: 8, alpha: 16}}'; precedence: defaults < "
            f"--config file < command line):\n{help_text(cls)}")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="SFT cold start or GRPO with the saliency reward")
    stages = p.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        cls = config_class(stage)
        s = stages.add_parser(stage, help=f"{stage.upper()} from a YAML config (see configs/)", allow_abbrev=False,
                              usage="%(prog)s --config FILE.yaml [--no-resume] [--<section.field> VALUE ...]",
                              description=__doc__.splitlines()[0], epilog=_epilog(cls),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--config", required=True,
                       help="YAML file of the run config, or a packaged one (e.g. configs/grpo_shapes.yaml)")
        s.add_argument("--no-resume", action="store_true", help="start over instead of resuming (= --resume false)")
        for path, typ, _ in leaf_fields(cls, sections=True):
            name = path.rsplit(".", 1)[-1]
            flags = [f"--{path}"]
            if (path.startswith(cls.stage_section + ".") or "." not in path) and section_class(typ) is None:
                flags += [f"--{name}"] if name != path else []
                flags += list(ALIASES.get(name, ()))
            s.add_argument(*flags, dest=PREFIX + path, default=argparse.SUPPRESS, metavar=type_name(typ).upper(),
                           help=argparse.SUPPRESS)
        s.set_defaults(func=run)


def overrides_of(args: argparse.Namespace) -> dict:
    """The typed overrides a parsed command line holds (``--no-resume`` last, so it wins).

    >>> from saliency_r1.cli.main import build_parser
    >>> args = build_parser().parse_args(["train", "grpo", "--config", "c.yaml", "--learning_rate", "2e-5",
    ...                                   "--lora.r", "8", "--no-resume"])
    >>> overrides_of(args)
    {'grpo.learning_rate': 2e-05, 'lora.r': 8, 'resume': False}
    """
    cls = config_class(args.stage)
    out = dict(parse_override(cls, key[len(PREFIX):], raw) for key, raw in vars(args).items()
               if key.startswith(PREFIX))
    if args.no_resume:
        out[parse_override(cls, "resume", "false")[0]] = False
    return out


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``saliency_r1.training.<stage>.run_from_config`` with the command line's overrides."""
    module = importlib.import_module(STAGES[args.stage][0])
    module.run_from_config(args.config, **overrides_of(args))
    return 0
