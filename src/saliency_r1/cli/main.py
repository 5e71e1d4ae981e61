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


def _end_progress_bars() -> None:
    """Close live tqdm bars (a training loop cut short leaves one), so the error starts on its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or []):
        try:
            bar.close()
        except Exception:  # a bar that cannot close is no reason to hide the error
            pass


def _error(message: str) -> int:
    """Print one error line on stderr; exit status 2."""
    _end_progress_bars()
    print(f"saliency-r1: error: {message}", file=sys.stderr)
    return 2


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
        return _error(str(e))
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if debug:
            raise
        return _error(f"{e.strerror}: {e.filename}; check the path")
    except OSError as e:
        if debug:
            raise
        from .._io import write_error_line

        return _error(write_error_line(e.filename or "a file", e))
    except KeyboardInterrupt:
        print("saliency-r1: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
