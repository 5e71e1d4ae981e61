"""``python -m saliency_r1`` is the ``saliency-r1`` command: help lists every command; a bad one is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "saliency_r1", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_module_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    for command in ("explain", "train", "eval", "demo"):
        assert command in out.stdout


def test_unknown_command_is_one_line_exit_2():
    out = _run("explian")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saliency-r1: error:") and "Traceback" not in out.stderr
