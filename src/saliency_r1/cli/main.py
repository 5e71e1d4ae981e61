"""`saliency-r1`: one entry point, one module per command.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int``. User errors
(:class:`~saliency_r1.errors.SaliencyR1Error`, missing files) print one line naming the problem and
the fix, exit with status 2, and show no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "explain": "saliency_r1.cli.explain",
    "train": "saliency_r1.cli.train",
    "eval": "saliency_r1.cli.evaluate",
    "demo": "saliency_r1.cli.demo",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line (``saliency-r1: error: ...; see ... --help``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"saliency-r1: error: {' '.join(str(message).split())}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="saliency-r1", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..errors import SaliencyR1Error

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SaliencyR1Error as e:
        if debug:
            raise
        print(f"saliency-r1: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if debug:
            raise
        print(f"saliency-r1: error: {e.strerror}: {e.filename}; check the path", file=sys.stderr)
        return 2
    except OSError as e:
        if debug:
            raise
        print(f"saliency-r1: error: {e}; free disk space or choose another --out", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saliency-r1: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
